"""Replica figures (not a test: nothing here asserts).

1. Throughput: N concurrent jobs through two `serve --http` replicas on one PostgreSQL database
   (half the calls to each) against the same N through one replica on SQLite, in the same run,
   against one loopback fal fake in its own process. Prints both wall times and their ratio
   (goal <= 1.3).
2. Takeover: jobs started on one replica of two (default lease, MCP_AUDIO_LEASE_S=20), then that
   replica is killed with SIGKILL: seconds until the other follows every job (goal <= 35 s).
   On one host a dead pid is seen at once; a replica on another host cannot be probed, so the
   same is measured with SIGSTOP (the process lives on, only the lease's expiry frees its jobs).
3. Scale (`--scale N`, alone with `--only-scale`): three replicas on one PostgreSQL, N jobs at
   once against the fal fake (a third to each), while another process GETs /healthz on each
   replica every 50 ms. Prints: jobs completed and fal submits (each once), the health check's
   p50/p99 (goal p99 <= 50 ms), each replica's event-loop lag p99 during the load from its
   /metrics (goal <= 20 ms), the wall time against the same N jobs driven directly against the
   fake (goal <= 1.3x), and lease upkeep: statements that write leases per renewal, counted by
   pg_stat_statements (goal 1 per replica per renewal, whatever the number of jobs).

Needs PostgreSQL's server binaries (`apt-get install -y postgresql`) and psycopg.
Usage: python bench/replicas.py [--jobs 500] [--job-s 5] [--takeover-jobs 20] [--scale 2000] [--only-scale]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from delivery import (
    ENDPOINT,
    FAKE_PROCESS,
    KEY,
    direct_jobs,
    free_port,
    server_env,
    uncapped_client,
    wait_for_port,
)

from tests.pg_harness import find_bin_dir, pg_server

# The fal fake, plus GET /_bench/submits: how many submits it received.
COUNTING_FAKE = FAKE_PROCESS.replace(
    "with serve_in_thread",
    """from starlette.responses import JSONResponse
from starlette.routing import Route
async def submits(request):
    return JSONResponse({"submits": len(fake.requests_of("submit"))})
fake.app.router.routes.insert(0, Route("/_bench/submits", submits))
with serve_in_thread""",
)

# GETs /healthz on each URL every 50 ms, on a thread per URL (its own process: the load's
# client does not delay it), until stdin closes; prints the latencies in ms, as JSON.
PINGER = """
import http.client, json, sys, threading, time
from urllib.parse import urlsplit
stop, seen = threading.Event(), []
def ping(url):
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    due = time.perf_counter()
    while not stop.is_set():
        started = time.perf_counter()
        try:
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            seen.append((time.perf_counter() - started) * 1000)
        except OSError:
            conn.close()
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        due += 0.05
        time.sleep(max(0.0, due - time.perf_counter()))
threads = [threading.Thread(target=ping, args=(url,)) for url in sys.argv[1:]]
for t in threads:
    t.start()
print("ready", flush=True)
sys.stdin.read()
stop.set()
for t in threads:
    t.join()
print(json.dumps(seen), flush=True)
"""


def start_fake(job_s: float) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    fake = subprocess.Popen(
        [sys.executable, "-c", COUNTING_FAKE, KEY, ENDPOINT, str(job_s), str(port)], stdout=subprocess.PIPE, text=True
    )
    assert fake.stdout is not None
    fake.stdout.readline()
    return fake, f"http://127.0.0.1:{port}"


def start_replica(fake_url: str, data_dir: str, **env: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcp_audio", "serve", "--http", "--port", str(port)],
        env=server_env(fake_url, data_dir) | env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, proc)
    return proc, f"http://127.0.0.1:{port}/mcp"


def stop(*procs: subprocess.Popen[Any]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def run_jobs(urls: list[str], n: int, report: bool = True) -> tuple[float, int, list[str]]:
    """n calls spread over the replicas, all at once; (wall time, completed, job ids). With
    `report`, a call that did not complete is printed with what it answered."""
    completed, ids = 0, []
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for index, url in enumerate(urls):
            share = range(index, n, len(urls))

            async def drive(url: str = url, share: range = share) -> None:
                nonlocal completed
                async with uncapped_client(url) as client, anyio.create_task_group() as jobs:

                    async def one(i: int) -> None:
                        nonlocal completed
                        result = await client.call_tool("lyria2_music", {"prompt": f"job {i}"})
                        body = result.structured_content or {}
                        ids.append(str(body.get("job_id")))
                        completed += body.get("status") == "completed"
                        if report and body.get("status") != "completed":
                            text = " ".join(getattr(item, "text", "") for item in result.content)
                            print(f"  job {i}: {body.get('status')}: {text[:300]}", file=sys.stderr)

                    for i in share:
                        jobs.start_soon(one, i)

            tg.start_soon(drive)
    return time.perf_counter() - started, completed, ids


def bench_throughput(n: int, job_s: float, pg: Any) -> None:
    fake, fake_url = start_fake(job_s)
    try:
        with tempfile.TemporaryDirectory() as one_dir:
            solo, solo_url = start_replica(fake_url, one_dir)
            try:
                sqlite_s, sqlite_done, _ = anyio.run(run_jobs, [solo_url], n)
            finally:
                stop(solo)
        database = pg.fresh_database()
        with tempfile.TemporaryDirectory() as a_dir, tempfile.TemporaryDirectory() as b_dir:
            a, a_url = start_replica(fake_url, a_dir, MCP_AUDIO_DATABASE_URL=database)
            b, b_url = start_replica(fake_url, b_dir, MCP_AUDIO_DATABASE_URL=database)
            try:
                pg_s, pg_done, _ = anyio.run(run_jobs, [a_url, b_url], n)
            finally:
                stop(a, b)
    finally:
        fake.kill()
        fake.wait()
    print(f"Throughput: {n} concurrent jobs of {job_s:g} s each, one fal fake process")
    print(f"  one replica, SQLite        {sqlite_s:7.2f} s  ({sqlite_done}/{n} completed)")
    print(f"  two replicas, PostgreSQL   {pg_s:7.2f} s  ({pg_done}/{n} completed)")
    print(f"  ratio                      {pg_s / sqlite_s:7.2f}   (goal <= 1.3)")


def followers(database: str, ids: list[str]) -> dict[str, str | None]:
    import psycopg

    with psycopg.connect(database) as db:
        rows = db.execute("SELECT id, lease_owner, state FROM jobs WHERE id = ANY(%s)", (ids,)).fetchall()
    return {row[0]: (row[1] if row[2] in ("queued", "running") else "finished") for row in rows}


def bench_takeover(jobs: int, pg: Any, how: signal.Signals) -> None:
    fake, fake_url = start_fake(120.0)  # still running when the replica is stopped
    database = pg.fresh_database()
    try:
        with tempfile.TemporaryDirectory() as a_dir, tempfile.TemporaryDirectory() as b_dir:
            a, a_url = start_replica(fake_url, a_dir, MCP_AUDIO_DATABASE_URL=database, MCP_AUDIO_WAIT_S="0.2")
            b, _ = start_replica(fake_url, b_dir, MCP_AUDIO_DATABASE_URL=database)
            try:
                _, _, ids = anyio.run(run_jobs, [a_url], jobs, False)  # handles: the jobs run on
                before = followers(database, ids)
                assert all(owner and f":{a.pid}:" in owner for owner in before.values()), before
                os.kill(a.pid, how)
                stopped = time.monotonic()
                if how == signal.SIGKILL:
                    a.wait()  # reaped, as a service manager does: a zombie's pid still answers
                while True:
                    now = followers(database, ids)
                    if all(owner and f":{b.pid}:" in owner for owner in now.values()):
                        break
                    if time.monotonic() - stopped > 120:
                        raise RuntimeError(f"not taken over in 120 s: {now}")
                    time.sleep(0.1)
                took = time.monotonic() - stopped
            finally:
                stop(a, b)
    finally:
        fake.kill()
        fake.wait()
    label = "kill -9 (same host: the dead pid is seen)" if how == signal.SIGKILL else "SIGSTOP (as another host)"
    print(f"Takeover of {jobs} jobs after {label}: {took:5.1f} s   (goal <= 35 s, lease 20 s)")


def submits(fake_url: str) -> int:
    import httpx

    return int(httpx.get(fake_url + "/_bench/submits", timeout=30).json()["submits"])


def lag_buckets(base: str) -> dict[float, float]:
    """The cumulative buckets of a replica's event-loop lag histogram (seconds -> count)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(base + "/metrics", timeout=30).text
    return {
        float(sample.labels["le"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "mcp_audio_event_loop_lag_seconds_bucket"
    }


def quantile_from(before: dict[float, float], after: dict[float, float], q: float) -> tuple[float, int]:
    """The bucket bound under which a fraction `q` of the samples taken between two scrapes
    fell (an upper bound of that quantile), in ms; and how many samples there were."""
    counts = {bound: after[bound] - before.get(bound, 0.0) for bound in sorted(after)}
    total = counts[float("inf")]
    for bound, count in counts.items():
        if count >= q * total:
            return bound * 1000, int(total)
    return float("inf"), int(total)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def lease_statements(database: str) -> dict[str, int]:
    """Calls since the last reset of the statements that keep or take leases (pg_stat_statements)."""
    import psycopg

    kinds = {
        "heartbeat": "INSERT INTO replicas%",
        "claim": "UPDATE jobs SET lease_owner%",
        "held": "SELECT id FROM jobs WHERE lease_owner%",
        "unleased": "SELECT * FROM jobs WHERE state IN%lease_owner IS NULL%",
        "live replicas": "SELECT owner, host, pid FROM replicas%",
    }
    with psycopg.connect(database, autocommit=True) as db:
        return {
            kind: int(
                db.execute(
                    "SELECT COALESCE(SUM(calls), 0) FROM pg_stat_statements WHERE query LIKE %s", (pattern,)
                ).fetchone()[0]  # type: ignore[index]
            )
            for kind, pattern in kinds.items()
        }


def bench_scale(n: int, job_s: float, pg: Any) -> None:
    import psycopg

    fake, fake_url = start_fake(job_s)
    database = pg.fresh_database()
    with psycopg.connect(database, autocommit=True) as db:
        db.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    try:
        direct_s = anyio.run(direct_jobs, fake_url, n)
        direct_submits = submits(fake_url)
        dirs = [tempfile.TemporaryDirectory() for _ in range(3)]
        started = [
            start_replica(fake_url, d.name, MCP_AUDIO_DATABASE_URL=database, MCP_AUDIO_METRICS_PUBLIC="1") for d in dirs
        ]
        procs, urls = [proc for proc, _ in started], [url for _, url in started]
        bases = [url.removesuffix("/mcp") for url in urls]
        try:
            pinger = subprocess.Popen(
                [sys.executable, "-c", PINGER, *bases], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            assert pinger.stdout is not None and pinger.stdin is not None
            pinger.stdout.readline()
            before = [lag_buckets(base) for base in bases]
            with psycopg.connect(database, autocommit=True) as db:
                db.execute("SELECT pg_stat_statements_reset()")
            wall, completed, ids = anyio.run(run_jobs, urls, n)
            leases = lease_statements(database)
            after = [lag_buckets(base) for base in bases]
            pinger.stdin.close()
            pings = [float(ms) for ms in json.loads(pinger.stdout.readline())]
            pinger.wait()
        finally:
            stop(*procs)
            for d in dirs:
                d.cleanup()
        served_submits = submits(fake_url) - direct_submits
    finally:
        fake.kill()
        fake.wait()
    print(f"Scale: {n} concurrent jobs of {job_s:g} s over 3 replicas on one PostgreSQL, /healthz every 50 ms")
    print(f"  completed {completed}/{n}, distinct jobs {len(set(ids))}, fal submits {served_submits} (goal {n})")
    print(
        f"  /healthz p50 {pct(pings, 0.5):6.1f} ms  p99 {pct(pings, 0.99):6.1f} ms"
        f"  ({len(pings)} pings; goal p99 <= 50)"
    )
    for index, (b, a) in enumerate(zip(before, after, strict=True)):
        p99, samples = quantile_from(b, a, 0.99)
        p50, _ = quantile_from(b, a, 0.5)
        print(
            f"  replica {index + 1} loop lag p50 <= {p50:5.1f} ms  p99 <= {p99:5.1f} ms"
            f"  ({samples} samples; goal p99 <= 20)"
        )
    ratio = wall / direct_s
    print(f"  wall {wall:7.2f} s vs directly against the fake {direct_s:7.2f} s: {ratio:5.2f}x  (goal <= 1.3)")
    renewals = leases["heartbeat"]
    writes = leases["heartbeat"] + leases["claim"]
    print(
        f"  lease upkeep: {renewals} renewals (heartbeats) by 3 replicas, {leases['claim']} claims: "
        f"{writes / max(1, renewals):.2f} lease-writing statements per renewal (goal 1); reads per renewal: "
        + ", ".join(f"{kind} {leases[kind] / max(1, renewals):.2f}" for kind in ("held", "unleased", "live replicas"))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--job-s", type=float, default=5.0)
    parser.add_argument("--takeover-jobs", type=int, default=20)
    parser.add_argument("--scale", type=int, default=2000, help="jobs of the scale run (0: none)")
    parser.add_argument("--only-scale", action="store_true")
    args = parser.parse_args()
    bin_dir = find_bin_dir()
    if bin_dir is None:
        sys.exit("needs PostgreSQL: apt-get install -y postgresql")
    with pg_server(bin_dir, "-c shared_preload_libraries=pg_stat_statements") as pg:
        if not args.only_scale:
            bench_throughput(args.jobs, args.job_s, pg)
            bench_takeover(args.takeover_jobs, pg, signal.SIGKILL)
            bench_takeover(args.takeover_jobs, pg, signal.SIGSTOP)
        if args.scale:
            bench_scale(args.scale, args.job_s, pg)


if __name__ == "__main__":
    main()
