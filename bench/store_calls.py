"""How long the event loop is held by one job-store call, and what one job's life costs the
store (not a test: nothing here asserts).

The store is async: SQLite runs on a thread of its own, PostgreSQL on a pool of async
connections. Prints the median and 99th percentile of the calls a job makes most (create,
progress line, lease renewal: one heartbeat, read, finish), 20 at a time, on SQLite and on a
local PostgreSQL (unix socket), with the event loop's lag meanwhile (a 1 ms timer's lateness:
what any other request waits).

The life of one job: a `lyria2_music` call through the MCP client to a server on SQLite and
the in-process fal fake, waited on to the end; every statement on the jobs table is counted
(SQLite's trace hook) by verb, with the job rows decoded.

    .venv/bin/python bench/store_calls.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio

from mcp_audio.core.results import JobResult
from mcp_audio.store import JobStore
from mcp_audio.store.sqlite import SqliteJobStore
from tests.pg_harness import find_bin_dir, pg_server

OWNER = "bench:1:feedbeef"


async def timed(call: Callable[[int], Awaitable[object]], count: int, lag: list[float]) -> tuple[float, float, float]:
    """(median, p99) in milliseconds of `count` calls, 20 at a time, and the event loop's lag p99
    meanwhile (how late a 1 ms timer fires: what every other request on the loop waits)."""
    took: list[float] = []
    lag.clear()

    async def one(n: int) -> None:
        started = time.perf_counter()
        await call(n)
        took.append((time.perf_counter() - started) * 1000)

    for batch in range(0, count, 20):
        async with anyio.create_task_group() as tg:
            for n in range(batch, min(count, batch + 20)):
                tg.start_soon(one, n)
    took.sort()
    lags = sorted(lag) or [0.0]
    return statistics.median(took), took[int(len(took) * 0.99) - 1], lags[int(len(lags) * 0.99) - 1]


async def ticker(lag: list[float]) -> None:
    while True:
        started = time.perf_counter()
        await anyio.sleep(0.001)
        lag.append(max(0.0, (time.perf_counter() - started - 0.001) * 1000))


async def bench(name: str, store: JobStore, count: int) -> None:
    ids: list[str] = []

    async def create(n: int) -> None:
        job = await store.create_job(
            tool="lyria2_music", provider="fal", endpoint="fal-ai/lyria2", body={"prompt": f"take {n}"},
            options={}, owner=OWNER,
        )  # fmt: skip
        ids.append(job.id)

    lag: list[float] = []
    result = JobResult(files=[], output={"ok": True})
    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker, lag)
        rows = {"create_job": await timed(create, count, lag)}
        rows["record_progress"] = await timed(
            lambda n: store.record_progress(ids[n], "running", None, [f"line {n}"]), count, lag
        )
        rows["get_job"] = await timed(lambda n: store.get_job(ids[n]), count, lag)
        rows["lease renewal"] = await timed(lambda n: store.heartbeat(OWNER, "bench", 1, 60), max(1, count // 20), lag)
        rows["complete"] = await timed(lambda n: store.complete(ids[n], result, owner=OWNER), count, lag)
        tg.cancel_scope.cancel()
    for call, (median, p99, lag_p99) in rows.items():
        print(f"  {name:10s} {call:16s} median {median:6.3f} ms   p99 {p99:6.3f} ms   loop lag p99 {lag_p99:6.3f} ms")


def job_life() -> None:
    """Statements on the jobs table, and job rows decoded, in one job's life."""
    import collections
    import logging

    import anyio
    from mcp import Client

    import mcp_audio.jobs.engine as engine
    import mcp_audio.store.base as base
    from mcp_audio.config import Settings
    from mcp_audio.sandbox.fal_queue import FakeFal
    from mcp_audio.sandbox.serve import serve_in_thread
    from mcp_audio.server import build_server
    from tests.helpers import FAL_KEY, FAST

    logging.disable(logging.WARNING)
    counts: collections.Counter[str] = collections.Counter()
    counting = False

    def trace(sql: str) -> None:
        words = sql.split()
        if counting and " jobs " in f" {sql} " and words:
            counts[words[0].upper()] += 1

    opened = engine.open_store

    async def traced_store(settings: Settings) -> JobStore:
        store = await opened(settings)
        store._db.set_trace_callback(trace)  # type: ignore[attr-defined]
        return store

    decode = base._job

    def counted_decode(row: object) -> object:
        if counting:
            counts["decodes"] += 1
        return decode(row)  # type: ignore[arg-type]

    engine.open_store = traced_store  # type: ignore[assignment]
    base._job = counted_decode  # type: ignore[assignment]
    fake = FakeFal(valid_key=FAL_KEY)
    with serve_in_thread(fake.app) as url, tempfile.TemporaryDirectory() as tmp:
        fake.base_url = url
        settings = Settings(
            fal_key=FAL_KEY, fal_queue_url=url, fal_run_url=url + "/run", fal_rest_url=url, fal_cdn_url=url,
            data_dir=Path(tmp), output_dir=Path(tmp) / "out", download="never", wait_s=30,
        )  # fmt: skip

        async def one() -> None:
            nonlocal counting
            async with Client(build_server(settings, pacing=FAST)) as client:
                counting = True
                result = await client.call_tool("make_music", {"model": "lyria2", "prompt": "calm"})
                counting = False
                assert (result.structured_content or {}).get("status") == "completed", result

        anyio.run(one)
    engine.open_store, base._job = opened, decode  # type: ignore[assignment]
    statements = {verb: n for verb, n in counts.items() if verb != "decodes"}
    print(
        f"  one job's life (SQLite): {sum(statements.values())} statements on jobs "
        f"({', '.join(f'{n} {verb}' for verb, n in sorted(statements.items()))}), {counts['decodes']} row decodes"
    )


async def on_store(name: str, store: JobStore, count: int) -> None:
    await store.open()
    try:
        await bench(name, store, count)
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    job_life()
    with tempfile.TemporaryDirectory() as tmp:
        anyio.run(on_store, "SQLite", SqliteJobStore(Path(tmp) / "jobs.db"), args.calls)
    bin_dir = find_bin_dir()
    if bin_dir is None:
        print("  PostgreSQL skipped: apt-get install -y postgresql")
        return
    from mcp_audio.store.postgres import PostgresJobStore

    with pg_server(bin_dir) as pg:
        anyio.run(on_store, "PostgreSQL", PostgresJobStore(pg.fresh_database()), args.calls)


if __name__ == "__main__":
    main()
