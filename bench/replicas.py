"""Replica figures (not a test: nothing here asserts).

1. Throughput: N concurrent jobs through two `serve --http` replicas on one PostgreSQL database
   (half the calls to each) against the same N through one replica on SQLite, in the same run,
   against one loopback fal fake in its own process. Prints both wall times and their ratio
   (goal <= 1.3).
2. Takeover: jobs started on one replica of two (default lease, MCP_AUDIO_LEASE_S=20), then that
   replica is killed with SIGKILL: seconds until the other follows every job (goal <= 35 s).
   On one host a dead pid is seen at once; a replica on another host cannot be probed, so the
   same is measured with SIGSTOP (the process lives on, only the lease's expiry frees its jobs).

Needs PostgreSQL's server binaries (`apt-get install -y postgresql`) and psycopg.
Usage: python bench/replicas.py [--jobs 500] [--job-s 5] [--takeover-jobs 20]
"""

from __future__ import annotations

import argparse
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

from delivery import ENDPOINT, FAKE_PROCESS, KEY, free_port, server_env, uncapped_client, wait_for_port

from tests.pg_harness import find_bin_dir, pg_server


def start_fake(job_s: float) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    fake = subprocess.Popen(
        [sys.executable, "-c", FAKE_PROCESS, KEY, ENDPOINT, str(job_s), str(port)], stdout=subprocess.PIPE, text=True
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--job-s", type=float, default=5.0)
    parser.add_argument("--takeover-jobs", type=int, default=20)
    args = parser.parse_args()
    bin_dir = find_bin_dir()
    if bin_dir is None:
        sys.exit("needs PostgreSQL: apt-get install -y postgresql")
    with pg_server(bin_dir) as pg:
        bench_throughput(args.jobs, args.job_s, pg)
        bench_takeover(args.takeover_jobs, pg, signal.SIGKILL)
        bench_takeover(args.takeover_jobs, pg, signal.SIGSTOP)


if __name__ == "__main__":
    main()
