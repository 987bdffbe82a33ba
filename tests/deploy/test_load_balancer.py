"""Behind a load balancer: with MCP_AUDIO_HTTP_STATELESS every replica answers every request of
either protocol era (a round-robin client proves it), without it a 2025-era session is bound to
its replica (sticky sessions needed), and /healthz says whether a replica can serve."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_audio.config import ServerSettings
from mcp_audio.deploy.health import FRESH_S
from mcp_audio.sandbox.fal_queue import FakeFal
from tests.conftest import on_backend
from tests.helpers import body_of, text_of
from tests.http_harness import Served, http_server
from tests.pg_harness import PgServer

pytestmark = pytest.mark.anyio


class RoundRobin(httpx2.AsyncBaseTransport):
    """A load balancer without sticky sessions: each request goes to the next replica."""

    def __init__(self, ports: list[int]) -> None:
        self._ports = itertools.cycle(ports)
        self._inner = httpx2.AsyncHTTPTransport()
        self.sent: list[int] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        port = next(self._ports)
        self.sent.append(port)
        request.url = request.url.copy_with(port=port)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@contextmanager
def replicas(
    settings: ServerSettings, count: int, *, stateless: bool, env: dict[str, str] | None = None
) -> Iterator[list[Served]]:
    env = {"MCP_AUDIO_HTTP_STATELESS": "true" if stateless else "false", **(env or {})}
    with ExitStack() as stack:
        yield [stack.enter_context(http_server(settings, extra_env=env)) for _ in range(count)]


@asynccontextmanager
async def balanced(group: list[Served], mode: str) -> AsyncIterator[tuple[Client, RoundRobin]]:
    transport = RoundRobin([int(served.url.rsplit(":", 1)[1]) for served in group])
    http = httpx2.AsyncClient(transport=transport, timeout=httpx2.Timeout(30.0, read=60.0))
    async with http, Client(streamable_http_client(group[0].mcp, http_client=http), mode=mode) as client:
        yield client, transport


@pytest.fixture
def shared(settings: ServerSettings, pg_url: str) -> ServerSettings:
    return on_backend(settings, pg_url)


@pytest.mark.parametrize("mode", ["auto", "legacy"], ids=["2026-era", "2025-era"])
async def test_stateless_replicas_answer_every_request_of_either_era(
    shared: ServerSettings, fake_fal: FakeFal, mode: str
) -> None:
    fake_fal.script("fal-ai/lyria2", run_s=0.5)
    quick = shared.model_copy(update={"wait_s": 0.1})
    with replicas(quick, 2, stateless=True) as group:
        async with balanced(group, mode) as (client, transport):
            tools = (await client.list_tools()).tools
            # A family tool: every replica routes its `model` alike (listed names are what agents call).
            started = await client.call_tool("make_music", {"model": "lyria2", "prompt": "calm"})
            done = await client.call_tool("get_job", {"job_id": body_of(started)["job_id"], "wait_s": 20})
            listed = await client.call_tool("list_jobs", {})
    assert "make_music" in [tool.name for tool in tools]
    assert not done.is_error and body_of(done)["status"] == "completed", text_of(done)
    assert body_of(done)["tool"] == "lyria2_music" and fake_fal.requests_of("submit")[0].path == "/fal-ai/lyria2"
    assert [job["job_id"] for job in body_of(listed)["jobs"]] == [body_of(started)["job_id"]]
    assert len(set(transport.sent)) == 2  # both replicas answered


async def test_without_stateless_a_2025_era_session_lives_on_one_replica(shared: ServerSettings) -> None:
    # The SDK raises it inside its task groups.
    with replicas(shared, 2, stateless=False) as group, pytest.raises(BaseException) as raised:
        async with balanced(group, "legacy") as (client, _):
            await client.list_tools()
            await client.list_tools()
    assert "Session not found" in repr(raised.value), repr(raised.value)  # the other replica has no such session


@asynccontextmanager
async def on_fresh_database(
    settings: ServerSettings, pg_server: PgServer
) -> AsyncIterator[tuple[Served, httpx.AsyncClient, str]]:
    """A replica on a database of its own, an HTTP client to it, and the database's URL."""
    url = pg_server.fresh_database()
    with http_server(on_backend(settings, url)) as served:
        async with httpx.AsyncClient(trust_env=False) as http:
            yield served, http, url


async def test_healthz_answers_any_host_and_says_when_the_database_is_gone(
    settings: ServerSettings, pg_server: PgServer
) -> None:
    import psycopg

    async with on_fresh_database(settings, pg_server) as (served, http, url):
        # A load balancer names the replica by its address, which no Host setting lists.
        ok = await http.get(served.url + "/healthz", headers={"Host": "10.1.2.3:8000"})
        refused = await http.get(served.url + "/mcp", headers={"Host": "10.1.2.3:8000"})
        with psycopg.connect(pg_server.url("postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{url.split("/")[3].split("?")[0]}" WITH (FORCE)')
        await anyio.sleep(FRESH_S)  # the last good write answers for the database this long
        gone = await http.get(served.url + "/healthz")
        # Its database gone for good, the replica is killed: a graceful stop then outlasts the
        # harness's 10 s wait, and how it stops is not what this test checks.
        served.proc.kill()
        served.proc.wait(timeout=10)
    assert ok.status_code == 200 and ok.json() == {"status": "ok", "database": "postgresql"}
    assert refused.status_code == 421  # the guard still covers everything else
    assert gone.status_code == 503 and gone.json()["status"] == "unavailable"


async def test_healthz_writes_at_most_about_once_a_second_however_often_it_is_asked(
    settings: ServerSettings, pg_server: PgServer
) -> None:
    import psycopg

    async with on_fresh_database(settings, pg_server) as (served, http, url):

        async def check() -> None:
            assert (await http.get(served.url + "/healthz")).status_code == 200

        def written() -> list[float]:
            with psycopg.connect(url, autocommit=True) as db:
                return [row[0] for row in db.execute("SELECT checked_at FROM health")]

        await check()
        [first] = written()
        async with anyio.create_task_group() as tg:  # checks arriving together share one write
            for _ in range(20):
                tg.start_soon(check)
        assert written() == [first]
        await anyio.sleep(FRESH_S)
        await check()
        [second] = written()
    assert second >= first + FRESH_S


async def test_the_rate_limit_counts_a_callers_calls_on_every_replica(shared: ServerSettings) -> None:
    with replicas(shared, 2, stateless=True, env={"MCP_AUDIO_RATE_LIMIT_PER_MINUTE": "3"}) as group:
        async with balanced(group, "auto") as (client, transport):
            allowed = [await client.call_tool("list_jobs", {}) for _ in range(3)]
            refused = await client.call_tool("list_jobs", {})
    assert not any(result.is_error for result in allowed)
    assert refused.is_error, text_of(refused)
    assert "allows 3 tool calls per minute per caller (MCP_AUDIO_RATE_LIMIT_PER_MINUTE)" in text_of(refused)
    assert len(set(transport.sent)) == 2  # the four calls went to both replicas
