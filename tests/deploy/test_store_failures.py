"""Failures are local: a job whose end cannot be written (a full data dir on a real tmpfs, or
PostgreSQL stopped while the job runs) keeps its outcome and retries the write; /mcp keeps
answering meanwhile, /healthz answers 503 while the store takes no writes and 200 once it does,
and the job ends as completed, all without a restart (a real `serve --http` process). A SIGTERM
while PostgreSQL is away ends the process within seconds, and the next start resumes its job."""

from __future__ import annotations

import errno
import time
from pathlib import Path

import anyio
import httpx
import pytest
from mcp.shared.exceptions import MCPError

from mcp_audio.config import ServerSettings
from mcp_audio.sandbox.fal_queue import FakeFal
from tests.conftest import on_backend
from tests.helpers import body_of, text_of
from tests.http_harness import Served, http_server, mcp_client
from tests.pg_harness import PgServer

pytestmark = pytest.mark.anyio
RUN_S = 3.0  # how long the fake fal job runs: the store breaks while it does
STOP_S = 8.0  # a SIGTERM ends the process within this, database or not (a supervisor waits about 10 s)


def fill(folder: Path) -> Path:
    """Write until the file system is full (ENOSPC); the filler file."""
    filler = folder / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(bytes(64 * 1024))
                out.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


async def health(served: Served) -> int:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        return (await http.get(served.url + "/healthz")).status_code


async def until_health(served: Served, status: int, within_s: float) -> float:
    began = time.monotonic()
    while (seen := await health(served)) != status:
        assert time.monotonic() - began < within_s, f"/healthz stayed {seen}, expected {status}"
        await anyio.sleep(0.25)
    return time.monotonic() - began


async def test_a_full_data_dir_at_a_jobs_end_fails_nothing_for_good(
    settings: ServerSettings, fake_fal: FakeFal, small_disk: Path
) -> None:
    settings = settings.model_copy(update={"data_dir": small_disk / "data", "wait_s": 0})
    fake_fal.script("fal-ai/lyria2", run_s=RUN_S)
    with http_server(settings) as served:
        assert await health(served) == 200
        async with mcp_client(served.mcp) as client:
            started = body_of(await client.call_tool("lyria2_music", {"prompt": "calm"}))
            await anyio.sleep(1.0)  # submitted and recorded; running upstream
            filler = fill(small_disk)
            await anyio.sleep(RUN_S)  # the job ended upstream; its end cannot be written
            assert await until_health(served, 503, within_s=10) >= 0
            listed = await client.call_tool("list_jobs", {})  # /mcp still answers
            assert not listed.is_error, text_of(listed)
            filler.unlink()  # space again: no restart
            await until_health(served, 200, within_s=30)
            done = await client.call_tool("get_job", {"job_id": started["job_id"], "wait_s": 30})
        async with mcp_client(served.mcp) as fresh:  # a new session too
            again = await fresh.call_tool("get_job", {"job_id": started["job_id"]})
    assert body_of(done)["status"] == "completed", text_of(done)
    assert body_of(again)["status"] == "completed"
    assert "to the job database (OperationalError: database or disk is full); retrying" in served.stderr


def _music_on_postgresql(settings: ServerSettings, fake_fal: FakeFal, pg_server: PgServer) -> ServerSettings:
    """A server on a fresh PostgreSQL database whose music jobs run RUN_S upstream."""
    fake_fal.script("fal-ai/lyria2", run_s=RUN_S)
    return on_backend(settings, pg_server.fresh_database()).model_copy(update={"wait_s": 0})


async def test_postgresql_stopped_across_a_jobs_end_fails_nothing_for_good(
    settings: ServerSettings, fake_fal: FakeFal, pg_server: PgServer
) -> None:
    settings = _music_on_postgresql(settings, fake_fal, pg_server)
    with http_server(settings) as served:
        assert await health(served) == 200
        async with mcp_client(served.mcp) as client:
            started = body_of(await client.call_tool("lyria2_music", {"prompt": "calm"}))
            await anyio.sleep(1.0)  # submitted and recorded; running upstream
            with pg_server.stopped():
                await anyio.sleep(RUN_S)  # the job ended upstream while the database was away
                await until_health(served, 503, within_s=10)
                try:  # /mcp answers, with an error while there is no database to read
                    await client.call_tool("list_jobs", {})
                except MCPError as exc:
                    assert exc.error.code < 0
            await until_health(served, 200, within_s=60)
            done = await client.call_tool("get_job", {"job_id": started["job_id"], "wait_s": 60})
        async with mcp_client(served.mcp) as fresh:
            again = await fresh.call_tool("get_job", {"job_id": started["job_id"]})
            more = await fresh.call_tool("list_jobs", {})
    assert body_of(done)["status"] == "completed", text_of(done)
    assert body_of(again)["status"] == "completed" and not more.is_error


async def test_a_stop_while_postgresql_is_away_is_quick_and_the_next_start_resumes_the_job(
    settings: ServerSettings, fake_fal: FakeFal, pg_server: PgServer
) -> None:
    settings = _music_on_postgresql(settings, fake_fal, pg_server)
    with http_server(settings) as served:
        async with mcp_client(served.mcp) as client:
            started = body_of(await client.call_tool("lyria2_music", {"prompt": "calm"}))
        await anyio.sleep(1.0)  # submitted and recorded; running upstream
        with pg_server.stopped():
            await until_health(served, 503, within_s=10)  # the server has seen the database go
            began = time.monotonic()
            served.proc.terminate()  # SIGTERM, as a supervisor stops a replica
            await anyio.to_thread.run_sync(served.proc.wait, 60)
            stop_s = time.monotonic() - began
    # PostgreSQL is back: the next start on this host resumes the job, without a second submit.
    with http_server(settings) as again:
        async with mcp_client(again.mcp) as client:
            done = await client.call_tool("get_job", {"job_id": started["job_id"], "wait_s": 60})
    assert stop_s < STOP_S, f"the stop took {stop_s:.1f} s"
    assert "stopping without handing on this process's jobs (the job database did not answer in 3 s)" in served.stderr
    assert body_of(done)["status"] == "completed", text_of(done)
    assert len(fake_fal.jobs) == 1  # submitted once
