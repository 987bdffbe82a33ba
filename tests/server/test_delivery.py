"""The delivery guarantees (README): a paid job is submitted once, followed by one process at a
time, never given up while the upstream keeps its result, and never failed by a process that
cannot follow it. Faults are injected at the fal fake; what the agent sees is read through a
real MCP client, what upstream saw from the fake's request log."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest
from mcp import Client

from mcp_audio.config import ServerSettings
from mcp_audio.sandbox._base import CUT
from mcp_audio.sandbox.fal_queue import FakeFal
from mcp_audio.sandbox.voice_api import FakeVoiceApi
from mcp_audio.store import open_store
from tests.conftest import on_backend
from tests.helpers import body_of, env_for, server, start_tool_call, stop, text_of

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(settings: ServerSettings, database_url: str | None) -> ServerSettings:
    """Every delivery guarantee holds on both stores: the data dir's SQLite file and PostgreSQL."""
    return on_backend(settings, database_url)


FAL_CHECK = (
    "To see whether it ran, check fal's request history at https://fal.ai/dashboard/requests; if it is not there, "
    "call the tool again."
)


def submits(fake: FakeFal) -> int:
    return len(fake.requests_of("submit"))


async def row_of(settings: ServerSettings, job_id: str) -> dict[str, object]:
    store = await open_store(settings)
    try:
        job = await store.get_job(job_id)
        assert job is not None
        return {"state": job.state, "logs": job.logs, "error": job.error, "lease_owner": job.lease_owner}
    finally:
        await store.close()


# --- submit exactly once ------------------------------------------------------------------


async def test_a_submit_whose_answer_is_cut_after_fal_created_the_job_ends_unknown(
    client: Client, fake_fal: FakeFal
) -> None:
    fake_fal.inject("submit", CUT)
    result = await client.call_tool("lyria2_music", {"prompt": "calm"})
    body = body_of(result)
    assert result.is_error and body["status"] == "unknown"
    assert text_of(result) == (
        f"lyria2_music has an unknown outcome (job {body['job_id']}): fal's response broke off "
        "(RemoteProtocolError) before it was complete, so nothing was saved; it was not resent, since the request "
        f"may have run (and been billed). {FAL_CHECK}"
    )
    assert "network" not in text_of(result)
    assert submits(fake_fal) == 1 and len(fake_fal.jobs) == 1  # fal has the job; it was never sent again


async def test_a_submit_answered_500_without_a_request_id_ends_unknown(client: Client, fake_fal: FakeFal) -> None:
    fake_fal.inject("submit", 500, body={"detail": "internal server error"})
    result = await client.call_tool("lyria2_music", {"prompt": "calm"})
    body = body_of(result)
    assert body["status"] == "unknown"
    assert text_of(result) == (
        f"lyria2_music has an unknown outcome (job {body['job_id']}): fal failed (HTTP 500): internal server "
        f"error. It was not resent, since the request may have run (and been billed). {FAL_CHECK}"
    )
    assert submits(fake_fal) == 1


async def test_kill_9_during_the_submit_ends_unknown_at_the_next_start(
    settings: ServerSettings, fake_fal: FakeFal
) -> None:
    fake_fal.inject("submit", 0, delay_s=5)  # the submit is on its way when the process dies
    proc = start_tool_call(env_for(settings), "lyria2_music", {"prompt": "calm"})
    try:
        with anyio.fail_after(30):
            while not fake_fal.requests_of("submit"):
                await anyio.sleep(0.05)
    finally:
        stop(proc)  # SIGKILL: no clean-up runs, the lease stays on the dead process
    async with Client(server(settings)) as client:
        listed = body_of(await client.call_tool("list_jobs", {}))
        [job] = listed["jobs"]
        started = time.monotonic()
        answer = await client.call_tool("get_job", {"job_id": job["job_id"], "wait_s": 30})
    assert time.monotonic() - started < 10  # the dead owner is seen at once, not after the lease
    assert body_of(answer)["status"] == "unknown"
    assert text_of(answer) == (
        f"lyria2_music has an unknown outcome (job {job['job_id']}): The server stopped while sending this request "
        f"to fal, so whether it arrived (and was billed) is unknown. {FAL_CHECK}"
    )
    assert submits(fake_fal) == 1


# --- never give up on a paid result while fal keeps it -------------------------------------


async def test_status_and_result_outages_longer_than_the_retries_are_waited_out(
    client: Client, fake_fal: FakeFal, settings: ServerSettings
) -> None:
    fake_fal.script("fal-ai/lyria2", run_s=0.2)
    fake_fal.inject("stream", 503, times=3)
    fake_fal.inject("status", 503, times=12, body={"detail": "no runner"})
    fake_fal.inject("result", 502, times=12, body={"detail": "bad gateway"})  # each call retries 5 times
    result = await client.call_tool("lyria2_music", {"prompt": "calm"})
    body = body_of(result)
    assert not result.is_error, text_of(result)
    assert body["status"] == "completed" and body["files"]
    assert submits(fake_fal) == 1
    logs = (await row_of(settings, body["job_id"]))["logs"]
    assert any(str(line).startswith("fal did not answer while following the job") for line in logs), logs  # type: ignore[attr-defined]


async def test_a_result_that_is_not_json_is_fetched_again(client: Client, fake_fal: FakeFal) -> None:
    fake_fal.script("fal-ai/lyria2", run_s=0.1)
    fake_fal.inject("result", CUT, times=6)  # truncated JSON, more often than one call retries
    result = await client.call_tool("lyria2_music", {"prompt": "calm"})
    assert body_of(result)["status"] == "completed", text_of(result)
    assert submits(fake_fal) == 1


async def test_an_outage_past_the_retention_window_fails_naming_the_setting(
    settings: ServerSettings, fake_fal: FakeFal
) -> None:
    fake_fal.script("fal-ai/lyria2", run_s=0.1)
    fake_fal.inject("result", 503, times=10_000, body={"detail": "down"})
    async with Client(server(settings.model_copy(update={"result_retention_s": 1.0}))) as client:
        result = await client.call_tool("lyria2_music", {"prompt": "calm"})
    fake_fal.clear_injections()
    body = body_of(result)
    assert body["status"] == "failed"
    assert "It kept failing until the end of the window in which fal keeps results" in text_of(result)
    assert "MCP_AUDIO_RESULT_RETENTION_S" in text_of(result)
    assert submits(fake_fal) == 1


async def test_an_outage_is_waited_out_across_a_restart(settings: ServerSettings, fake_fal: FakeFal) -> None:
    fake_fal.script("fal-ai/lyria2", run_s=0.1)
    fake_fal.inject("result", 503, times=10_000, body={"detail": "down"})
    quick = settings.model_copy(update={"wait_s": 0.5})
    async with Client(server(quick)) as client:
        first = body_of(await client.call_tool("lyria2_music", {"prompt": "calm"}))
    assert first["status"] in ("queued", "running")
    assert (await row_of(settings, first["job_id"]))["lease_owner"] is None  # a clean stop hands the job on
    fake_fal.clear_injections()  # the outage ends while no server runs
    async with Client(server(settings)) as client:
        done = body_of(await client.call_tool("get_job", {"job_id": first["job_id"], "wait_s": 20}))
    assert done["status"] == "completed" and done["files"]
    assert submits(fake_fal) == 1


# --- one follower per job across processes -------------------------------------------------


async def test_two_servers_on_one_data_dir_follow_and_download_each_job_once(
    settings: ServerSettings, fake_fal: FakeFal
) -> None:
    fake_fal.script("fal-ai/lyria2", run_s=1.0)
    saving = settings.model_copy(update={"download": "always"})
    async with Client(server(saving)) as first, Client(server(saving)) as second:
        started = body_of(await first.call_tool("lyria2_music", {"prompt": "calm"}))
        waited = body_of(await second.call_tool("get_job", {"job_id": started["job_id"], "wait_s": 10}))
    request_id = fake_fal.requests_of("submit")[0].request_id
    seen = [r.kind for r in fake_fal.requests if r.request_id == request_id]
    assert started["status"] == waited["status"] == "completed"
    assert waited["files"] == started["files"]
    assert seen.count("result") == 1 and seen.count("file") == 1 and seen.count("stream") == 1, seen
    assert [p.name for p in saving.output_dir.iterdir()] == [Path(started["files"][0]["path"]).name]


async def test_a_job_whose_owner_stopped_answering_is_taken_over_when_its_lease_expires(
    settings: ServerSettings, fake_fal: FakeFal
) -> None:
    fake_fal.script("fal-ai/lyria2", run_s=2.0)
    quick = settings.model_copy(update={"wait_s": 0.3})
    async with Client(server(quick)) as client:
        job_id = body_of(await client.call_tool("lyria2_music", {"prompt": "calm"}))["job_id"]
        # A process on another host takes the lease over, then dies: nobody renews it.
        store = await open_store(settings)
        row = await store.get_job(job_id)
        assert row is not None
        await store.heartbeat("another-host:4242:deadbeef", "another-host", 4242, 1.5)
        assert await store.claim(job_id, "another-host:4242:deadbeef", taking_over=row.lease_owner)
        expires = time.time() + 1.5
        await store.close()
    async with Client(server(settings)) as client:
        done = body_of(await client.call_tool("get_job", {"job_id": job_id, "wait_s": 20}))
        finished_at = time.time()
    assert done["status"] == "completed" and done["files"]
    assert finished_at >= expires  # not taken from a live lease
    assert submits(fake_fal) == 1


# --- a process without the key leaves jobs alone ----------------------------------------------


async def test_a_process_without_the_key_leaves_the_job_for_one_with_it(
    settings: ServerSettings, fake_fal: FakeFal
) -> None:
    fake_fal.script("fal-ai/lyria2", run_s=1.5)
    async with Client(server(settings.model_copy(update={"wait_s": 0.2}))) as client:
        job_id = body_of(await client.call_tool("lyria2_music", {"prompt": "calm"}))["job_id"]
    async with Client(server(settings.model_copy(update={"fal_key": None}))) as keyless:
        waiting = await keyless.call_tool("get_job", {"job_id": job_id, "wait_s": 2.5})
        unfinished = body_of(await keyless.call_tool("list_jobs", {"status": "unfinished"}))
    body = body_of(waiting)
    assert body["status"] in ("queued", "running") and not waiting.is_error
    assert body["note"] == (
        "This server process has no FAL_KEY, so it leaves the job as it is: the job keeps running upstream and a "
        "server process with FAL_KEY set follows it to the end."
    )
    assert [job["job_id"] for job in unfinished["jobs"]] == [job_id]
    assert (await row_of(settings, job_id))["state"] in ("queued", "running")
    async with Client(server(settings)) as client:
        done = body_of(await client.call_tool("get_job", {"job_id": job_id, "wait_s": 20}))
    assert done["status"] == "completed"
    assert submits(fake_fal) == 1


# --- the same for the Voice API --------------------------------------------------------------


async def test_a_voice_api_polling_outage_is_waited_out(
    voice_settings: ServerSettings, fake_voice: FakeVoiceApi
) -> None:
    fake_voice.inject("tts_status", 503, times=12, body={"message": "maintenance"})  # each poll retries 5 times
    async with Client(server(voice_settings)) as client:
        result = await client.call_tool("voice_api_tts", {"text": "Hi."})
    assert body_of(result)["status"] == "completed", text_of(result)
    assert len(fake_voice.requests_of("tts_submit")) == 1 and len(fake_voice.tasks) == 1


async def test_a_voice_api_submit_cut_after_the_task_was_created_ends_unknown(
    voice_settings: ServerSettings, fake_voice: FakeVoiceApi
) -> None:
    fake_voice.inject("tts_submit", CUT)
    async with Client(server(voice_settings)) as client:
        result = await client.call_tool("voice_api_tts", {"text": "Hi."})
    assert body_of(result)["status"] == "unknown", text_of(result)
    assert text_of(result).endswith(
        "To see whether it ran, check the usage page of your Voice API subscription; if it is not there, call the "
        "tool again."
    )
    assert len(fake_voice.requests_of("tts_submit")) == 1 and len(fake_voice.tasks) == 1


async def test_an_interrupted_local_job_fails_plainly_and_a_paid_one_ends_unknown(settings: ServerSettings) -> None:
    store = await open_store(settings)
    rows = {
        provider: (
            await store.create_job(
                tool=tool, provider=provider, endpoint=endpoint, body={}, options={}, owner="gone:1:x"
            )
        ).id
        for provider, tool, endpoint in (("local", "audio_info", "info"), ("fal", "lyria2_music", "fal-ai/lyria2"))
    }
    await store.close()
    async with Client(server(settings)) as client:
        local = body_of(await client.call_tool("get_job", {"job_id": rows["local"]}))
        paid = body_of(await client.call_tool("get_job", {"job_id": rows["fal"]}))
    assert local["status"] == "failed"
    assert local["error"] == "The server stopped during this local job; nothing was saved. Call the tool again."
    assert paid["status"] == "unknown" and paid["error"].endswith(FAL_CHECK)


async def test_a_cancel_fal_does_not_answer_leaves_the_job_running_and_says_so(
    settings: ServerSettings, fake_fal: FakeFal
) -> None:
    fake_fal.script("fal-ai/lyria2", run_s=1.5)
    async with Client(server(settings.model_copy(update={"wait_s": 0.2}))) as client:
        job_id = body_of(await client.call_tool("lyria2_music", {"prompt": "calm"}))["job_id"]
        fake_fal.inject("cancel", 503, times=2, body={"detail": "unavailable"})
        refused = await client.call_tool("cancel_job", {"job_id": job_id})
        done = body_of(await client.call_tool("get_job", {"job_id": job_id, "wait_s": 20}))
    assert refused.is_error
    assert text_of(refused).endswith(
        f"Job {job_id} was not cancelled: fal is unavailable (HTTP 503): unavailable. Retries were exhausted; try "
        "again later. It keeps running upstream: call cancel_job again later, or get_job to wait for its result."
    )
    assert done["status"] == "completed"  # not recorded as cancelled: it ran on, and its result is kept
    assert submits(fake_fal) == 1
