"""Several `mcp-audio serve --http` replicas on one PostgreSQL database, against the fal fake:
a job started on one is finished by another when its follower dies or stops answering, no job
is followed by two replicas at once, each result and output is fetched once, and get_job on
any replica returns as soon as the job finishes elsewhere."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_audio.config import ServerSettings
from mcp_audio.sandbox.fal_queue import FakeFal
from mcp_audio.store import open_store
from mcp_audio.store.tokens import TokenTable
from tests.conftest import on_backend
from tests.helpers import body_of, text_of
from tests.http_harness import INITIALIZE, MCP_HEADERS, Served, add_token_by_cli, call_ok, http_server, run_cli
from tests.server.test_tasks import HttpPeer, modern, task_call

pytestmark = pytest.mark.anyio

LEASE_S = 3.0  # MCP_AUDIO_LEASE_S: renewed every 0.75 s, lost 3 s after its holder stopped


@pytest.fixture
def shared(settings: ServerSettings, pg_url: str) -> ServerSettings:
    """What every replica is given: one PostgreSQL database, a short wait, outputs saved."""
    return on_backend(settings, pg_url).model_copy(update={"wait_s": 0.5, "download": "always"})


@contextmanager
def replicas(settings: ServerSettings, count: int) -> Iterator[list[Served]]:
    with ExitStack() as stack:
        yield [
            stack.enter_context(http_server(settings, extra_env={"MCP_AUDIO_LEASE_S": str(LEASE_S)}))
            for _ in range(count)
        ]


def fetches(fake: FakeFal, request_id: str) -> list[str]:
    """What fal saw for one request, by kind (submit, stream, status, result, file)."""
    return [r.kind for r in fake.requests_for(request_id)]


def request_ids(fake: FakeFal) -> list[str]:
    return [r.request_id for r in fake.requests_of("submit") if r.request_id]


def assert_followed_once(fake: FakeFal, settings: ServerSettings) -> None:
    """Each job submitted once, its status stream opened once, its result and file fetched once."""
    ids = request_ids(fake)
    for request_id in ids:
        seen = fetches(fake, request_id)
        assert seen.count("stream") == 1 and seen.count("result") == 1 and seen.count("file") == 1, seen
    assert_stored_once(fake, settings)


def assert_stored_once(fake: FakeFal, settings: ServerSettings) -> None:
    ids = request_ids(fake)
    for request_id in ids:
        assert fetches(fake, request_id).count("file") == 1
    assert len(list(settings.output_dir.iterdir())) == len(ids)  # each output stored once


async def test_a_job_started_on_one_replica_finishes_on_another_after_kill_9(
    shared: ServerSettings, fake_fal: FakeFal
) -> None:
    fake_fal.script("fal-ai/lyria2", run_s=3.0)
    with replicas(shared, 2) as (first, second):
        started = await call_ok(first, "lyria2_music", {"prompt": "calm"})
        assert started["status"] in ("queued", "running")
        os.kill(first.proc.pid, signal.SIGKILL)  # no clean-up: its lease stays on the dead process
        killed = time.monotonic()
        done = await call_ok(second, "get_job", {"job_id": started["job_id"], "wait_s": 30})
        took = time.monotonic() - killed
    assert done["status"] == "completed" and done["files"], done
    assert took < LEASE_S + 5, took  # taken over on its own, well within the lease
    assert len(request_ids(fake_fal)) == 1  # never resubmitted
    seen = fetches(fake_fal, request_ids(fake_fal)[0])
    assert seen.count("result") == 1 and seen.count("file") == 1, seen
    assert len(list(shared.output_dir.iterdir())) == 1


async def test_a_replica_that_stopped_answering_loses_its_job_when_the_lease_expires(
    shared: ServerSettings, fake_fal: FakeFal
) -> None:
    # SIGSTOP: the process still exists, so only the lease's expiry frees its job, as for a
    # replica on another host, whose pid cannot be probed.
    fake_fal.script("fal-ai/lyria2", run_s=1.0)
    with replicas(shared, 3) as (first, _second, third):
        started = await call_ok(first, "lyria2_music", {"prompt": "calm"})
        os.kill(first.proc.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            done = await call_ok(third, "get_job", {"job_id": started["job_id"], "wait_s": 30})
            took = time.monotonic() - stopped
            store = await open_store(shared)
            row = await store.get_job(started["job_id"])
            await store.close()
        finally:
            os.kill(first.proc.pid, signal.SIGCONT)
        await anyio.sleep(LEASE_S / 2)  # the first replica wakes, finds its lease gone, lets the job be
        again = await call_ok(first, "get_job", {"job_id": started["job_id"], "wait_s": 5})
    assert done["status"] == "completed" and again["status"] == "completed" and again["files"] == done["files"]
    assert took >= LEASE_S - 1.0, took  # not taken from a live lease
    assert row is not None and row.lease_owner is None
    # The stopped replica's stream was open when it stopped; the job's output is still saved once.
    assert_stored_once(fake_fal, shared)


async def test_jobs_across_three_replicas_are_each_followed_once_and_waited_for_anywhere(
    shared: ServerSettings, fake_fal: FakeFal
) -> None:
    fake_fal.script("fal-ai/lyria2", run_s=4.0)  # still running when the last is started and all are waited on
    with replicas(shared, 3) as group:
        started = [await call_ok(group[n % 3], "lyria2_music", {"prompt": f"calm {n}"}) for n in range(6)]
        returned: dict[tuple[str, int], float] = {}

        async def wait_on(job_id: str, n: int) -> None:
            done = await call_ok(group[n], "get_job", {"job_id": job_id, "wait_s": 30})
            assert done["status"] == "completed", done
            returned[(job_id, n)] = time.monotonic()

        async with anyio.create_task_group() as tg:
            for job in started:
                for n in range(3):
                    tg.start_soon(wait_on, job["job_id"], n)
    # A replica that does not follow a job is woken by the database's push, not by its fallback
    # poll (every 5 s): it answers about when the follower's own waiter does. Compared with that
    # waiter rather than with the clock, since a loaded machine delays every answer alike.
    behind = []
    for n, job in enumerate(started):  # job n was started on, and is followed by, replica n % 3
        follower = returned[(job["job_id"], n % 3)]
        behind += [returned[(job["job_id"], other)] - follower for other in range(3) if other != n % 3]
    assert max(behind) < 2.5, sorted(behind)
    assert len(request_ids(fake_fal)) == 6
    assert_followed_once(fake_fal, shared)


async def test_a_token_added_once_is_accepted_by_every_replica_until_it_is_revoked(
    shared: ServerSettings, tmp_path: Path
) -> None:
    token = add_token_by_cli(shared, "team")  # `mcp-audio tokens add` with MCP_AUDIO_DATABASE_URL: into the database
    add_token_by_cli(shared, "other")  # (with no token left, a loopback server would need none)
    elsewhere = shared.model_copy(update={"data_dir": tmp_path / "another-machine"})  # no shared data dir

    async def status(replica: Served, bearer: str | None) -> int:
        headers = MCP_HEADERS | ({"Authorization": f"Bearer {bearer}"} if bearer else {})
        async with httpx.AsyncClient(trust_env=False) as http:
            return (await http.post(replica.mcp, json=INITIALIZE, headers=headers)).status_code

    with replicas(shared, 1) as (one,), replicas(elsewhere, 1) as (two,):
        accepted = [await status(one, token), await status(two, token)]
        anonymous = [await status(one, None), await status(two, None)]
        assert run_cli(shared, "tokens", "revoke", "team").returncode == 0
        await anyio.sleep(TokenTable.REREAD_S + 0.5)
        revoked = [await status(one, token), await status(two, token)]
    assert accepted == [200, 200] and anonymous == [401, 401] and revoked == [401, 401]
    assert not (shared.data_dir / "tokens.json").exists() and not (elsewhere.data_dir / "tokens.json").exists()


# --- calls sent again, and tasks, across replicas --------------------------------------------


async def keyed_call(
    replica: Served, key: str, tool: str, arguments: dict[str, object]
) -> tuple[bool, dict[str, object] | str]:
    """One tool call with an `Idempotency-Key` header: (is_error, structured result or error text)."""
    http = httpx2.AsyncClient(headers={"Idempotency-Key": key}, timeout=httpx2.Timeout(30.0, read=120.0))
    async with http, Client(streamable_http_client(replica.mcp, http_client=http)) as client:
        result = await client.call_tool(tool, arguments)
    return (True, text_of(result)) if result.is_error else (False, body_of(result))


async def test_a_call_sent_again_to_another_replica_gets_the_same_job(
    shared: ServerSettings, fake_fal: FakeFal
) -> None:
    fake_fal.script("fal-ai/lyria2", run_s=1.0)
    with replicas(shared, 2) as (first, second):
        started = await keyed_call(first, "order-1", "lyria2_music", {"prompt": "calm"})
        again = await keyed_call(second, "order-1", "lyria2_music", {"prompt": "calm"})
        changed = await keyed_call(second, "order-1", "lyria2_music", {"prompt": "loud"})
        done = await call_ok(second, "get_job", {"job_id": str(dict(started[1])["job_id"]), "wait_s": 30})
    assert not started[0] and not again[0], (started, again)
    assert dict(again[1])["job_id"] == dict(started[1])["job_id"]
    assert changed[0] and "'order-1'" in str(changed[1]), changed
    assert done["status"] == "completed"
    assert len(request_ids(fake_fal)) == 1  # submitted once, by the first replica
    assert_followed_once(fake_fal, shared)


async def test_a_task_made_on_one_replica_is_known_at_once_to_another(
    shared: ServerSettings, fake_fal: FakeFal
) -> None:
    fake_fal.script("fal-ai/lyria2", queue_s=30)
    token = add_token_by_cli(shared, "team")
    with replicas(shared, 2) as (first, second):
        # 2025-11-25: the call answers a task at once; the other replica's tasks/get knows it.
        on_first, on_second = HttpPeer(first.mcp, token), HttpPeer(second.mcp, token)
        on_first.start()
        on_second.start()
        legacy = on_first.request("tools/call", task_call("lyria2_music", {"prompt": "calm"}))["result"]["task"]
        legacy_seen = on_second.request("tasks/get", {"taskId": legacy["taskId"]})
        # 2026-07-28: a call unfinished after MCP_AUDIO_WAIT_S answers a task; likewise.
        headers = MCP_HEADERS | {"Authorization": f"Bearer {token}", "MCP-Protocol-Version": "2026-07-28"}

        async def post(replica: Served, method: str, params: dict[str, object]) -> dict[str, object]:
            async with httpx.AsyncClient(trust_env=False, timeout=30) as http:
                message = {"jsonrpc": "2.0", "id": 1, "method": method, "params": modern(params)}
                routed = (
                    headers | {"Mcp-Method": method} | ({"Mcp-Name": str(params["name"])} if "name" in params else {})
                )
                answer = (await http.post(replica.mcp, json=message, headers=routed)).json()
            assert "result" in answer, answer
            return dict(answer["result"])

        created = await post(first, "tools/call", {"name": "lyria2_music", "arguments": {"prompt": "calm"}})
        modern_seen = await post(second, "tasks/get", {"taskId": created["taskId"]})
        on_second.request("tasks/cancel", {"taskId": legacy["taskId"]})
        await post(second, "tasks/cancel", {"taskId": created["taskId"]})
    assert legacy_seen["result"]["taskId"] == legacy["taskId"] and legacy_seen["result"]["status"] == "working"
    assert created["resultType"] == "task" and modern_seen["taskId"] == created["taskId"]
    assert modern_seen["status"] == "working"
