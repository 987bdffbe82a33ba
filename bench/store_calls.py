"""How long the event loop is held by one job-store call (not a test: nothing here asserts).

The store is synchronous and is called on the server's event loop, so each call's latency is
time no other request is served. Prints the median and 99th percentile of the calls a job
makes most (create, progress line, lease renewal of 500 jobs, read, finish), on SQLite and on
a local PostgreSQL (unix socket; a database across a network adds its round trip per
statement, two to four per call).

    .venv/bin/python bench/store_calls.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mcp_audio.core.results import JobResult
from mcp_audio.store import JobStore
from mcp_audio.store.sqlite import SqliteJobStore
from tests.pg_harness import find_bin_dir, pg_server

OWNER = "bench:1:feedbeef"


def timed(call: Callable[[int], object], count: int) -> tuple[float, float]:
    """(median, p99) in milliseconds of `count` calls."""
    took = []
    for n in range(count):
        started = time.perf_counter()
        call(n)
        took.append((time.perf_counter() - started) * 1000)
    took.sort()
    return statistics.median(took), took[int(len(took) * 0.99) - 1]


def bench(name: str, store: JobStore, count: int) -> None:
    ids: list[str] = []

    def create(n: int) -> None:
        job = store.create_job(
            tool="lyria2_music", provider="fal", endpoint="fal-ai/lyria2", body={"prompt": f"take {n}"},
            options={}, owner=OWNER, lease_s=60,
        )  # fmt: skip
        ids.append(job.id)

    rows = {"create_job": timed(create, count)}
    rows["record_progress"] = timed(lambda n: store.record_progress(ids[n], "running", None, [f"line {n}"]), count)
    rows["get_job"] = timed(lambda n: store.get_job(ids[n]), count)
    held = ids[:500]
    rows["renew (500 jobs)"] = timed(lambda n: store.renew(OWNER, held, 60), max(1, count // 20))
    result = JobResult(files=[], output={"ok": True})
    rows["complete"] = timed(lambda n: store.complete(ids[n], result, owner=OWNER), count)
    for call, (median, p99) in rows.items():
        print(f"  {name:10s} {call:18s} median {median:6.3f} ms   p99 {p99:6.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = SqliteJobStore(Path(tmp) / "jobs.db")
        bench("SQLite", sqlite, args.calls)
        sqlite.close()
    bin_dir = find_bin_dir()
    if bin_dir is None:
        print("  PostgreSQL skipped: apt-get install -y postgresql")
        return
    from mcp_audio.store.postgres import PostgresJobStore

    with pg_server(bin_dir) as pg:
        postgres = PostgresJobStore(pg.fresh_database())
        bench("PostgreSQL", postgres, args.calls)
        postgres.close()


if __name__ == "__main__":
    main()
