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
       [--logs DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
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
    cpu_seconds,
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

# Times every callback the replica's event loop runs (wall and this thread's CPU time) and
# writes those over MCP_AUDIO_BENCH_SLOW_S to stderr, each with the coroutine stack a task step
# stopped at (where its work was). CPU time well under the wall time: the process waited for a
# core (the machine's doing); equal: the loop itself was busy (the server's).
SLOW_LAUNCHER = """
import asyncio, asyncio.events, os, runpy, sys, time
threshold = float(os.environ["MCP_AUDIO_BENCH_SLOW_S"])
run = asyncio.events.Handle._run
def where(handle):
    task = getattr(handle._callback, "__self__", None)
    if not isinstance(task, asyncio.Task):
        return repr(handle._callback)[:160]
    frames, coro = [], task.get_coro()
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            path = frame.f_code.co_filename
            name = "/".join(path.rsplit("/", 2)[-2:])
            frames.append((path, f"{frame.f_code.co_qualname} {name}:{frame.f_lineno}"))
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None) or getattr(coro, "gi_yieldfrom", None)
    if not frames:  # the step ended the task
        return f"{task.get_coro().__qualname__} (its last step)"
    mine = [label for path, label in frames if "/mcp_audio/" in path]
    return " > ".join((mine or [label for _, label in frames])[-3:])
def timed(self):
    wall, cpu = time.perf_counter(), time.thread_time()
    run(self)
    wall = time.perf_counter() - wall
    if wall >= threshold:
        print(f"SLOW {wall:.4f} {time.thread_time() - cpu:.4f} {where(self)}", file=sys.stderr, flush=True)
asyncio.events.Handle._run = timed
sys.argv[0] = "mcp_audio"
runpy.run_module("mcp_audio", run_name="__main__", alter_sys=True)
"""


def start_fake(job_s: float) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    fake = subprocess.Popen(
        [sys.executable, "-c", COUNTING_FAKE, KEY, ENDPOINT, str(job_s), str(port)], stdout=subprocess.PIPE, text=True
    )
    assert fake.stdout is not None
    fake.stdout.readline()
    return fake, f"http://127.0.0.1:{port}"


def start_replica(
    fake_url: str, data_dir: str, stderr: Path | None = None, **env: str
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    # With MCP_AUDIO_BENCH_SLOW_S (and PYTHONASYNCIODEBUG=1), asyncio logs every callback that
    # holds the loop longer than that: the server is started through a launcher that sets it.
    command = ["-m", "mcp_audio"] if "MCP_AUDIO_BENCH_SLOW_S" not in env else ["-c", SLOW_LAUNCHER]
    log = stderr.open("wb") if stderr is not None else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, *command, "serve", "--http", "--port", str(port)],
        env=server_env(fake_url, data_dir) | env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    if stderr is not None:
        log.close()  # type: ignore[union-attr]
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


async def sample_lag(into: list[float], interval_s: float = 0.1) -> None:
    """How late a timer fires on this process's loop (ms), as the replicas measure theirs."""
    while True:
        due = time.perf_counter() + interval_s
        await anyio.sleep(interval_s)
        into.append(max(0.0, time.perf_counter() - due) * 1000)


async def run_jobs(
    urls: list[str], n: int, report: bool = True, lag: list[float] | None = None
) -> tuple[float, int, list[str]]:
    """n calls spread over the replicas, all at once; (wall time, completed, job ids). With
    `report`, a call that did not complete is printed with what it answered; with `lag`, this
    load generator's own loop lag is sampled into it meanwhile."""
    completed, ids = 0, []
    started = time.perf_counter()
    async with anyio.create_task_group() as sampler:
        if lag is not None:
            sampler.start_soon(sample_lag, lag)
        async with anyio.create_task_group() as tg:
            for index, url in enumerate(urls):
                tg.start_soon(_drive_share, url, range(index, n, len(urls)), report, ids)
        sampler.cancel_scope.cancel()
    completed = sum(1 for status in ids if status.endswith(":completed"))
    return time.perf_counter() - started, completed, [status.rsplit(":", 1)[0] for status in ids]


async def _drive_share(url: str, share: range, report: bool, ids: list[str]) -> None:
    """One MCP client's calls (its share of the jobs), all at once; appends "job_id:status"."""
    async with uncapped_client(url) as client, anyio.create_task_group() as jobs:

        async def one(i: int) -> None:
            try:
                result = await client.call_tool("make_music", {"model": "lyria2", "prompt": f"job {i}"})
            except Exception as exc:  # counted as not completed, and said why (the run goes on)
                ids.append(f"call {i} failed:error")
                error = getattr(exc, "error", None)
                print(f"  job {i}: the call failed: {type(exc).__name__}: {exc} {error or ''}"[:300], file=sys.stderr)
                return
            body = result.structured_content or {}
            ids.append(f"{body.get('job_id')}:{body.get('status')}")
            if report and body.get("status") != "completed":
                text = " ".join(getattr(item, "text", "") for item in result.content)
                print(f"  job {i}: {body.get('status')}: {text[:300]}", file=sys.stderr)

        for i in share:
            jobs.start_soon(one, i)


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


def machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def postgres_pids(pg: Any) -> list[int]:
    """The postmaster of the bench's server and its live children (backends, workers)."""
    postmaster = int((Path(pg.root) / "data" / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                pids.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):  # exited
            total += cpu_seconds(pid)
    return total


def statements_per_job(database: str, n: int, top: int = 8) -> list[tuple[float, str]]:
    """The statements run most since the last reset (pg_stat_statements), as calls per job."""
    import psycopg

    with psycopg.connect(database, autocommit=True) as db:
        rows = db.execute(
            "SELECT calls, query FROM pg_stat_statements WHERE query NOT LIKE %s ORDER BY calls DESC LIMIT %s",
            ("%pg_stat_statements%", top),
        ).fetchall()
    return [(calls / n, " ".join(query.split())[:90]) for calls, query in rows]


SLOW = re.compile(r"^SLOW (?P<wall>[0-9.]+) (?P<cpu>[0-9.]+) (?P<what>.*)$", re.MULTILINE)


def slow_callbacks(logs: list[Path], top: int = 12) -> list[tuple[int, float, float, float, str]]:
    """What SLOW_LAUNCHER wrote: the callbacks that held a replica's loop past the threshold,
    grouped by where they stopped: (count, total wall s, total CPU s, longest s, where)."""
    seen: dict[str, list[tuple[float, float]]] = {}
    for log in logs:
        for match in SLOW.finditer(log.read_text(errors="replace")):
            seen.setdefault(match["what"][:200], []).append((float(match["wall"]), float(match["cpu"])))
    rows = [(len(v), sum(w for w, _ in v), sum(c for _, c in v), max(w for w, _ in v), k) for k, v in seen.items()]
    return sorted(rows, key=lambda row: row[1], reverse=True)[:top]


PROBLEM = re.compile(r"^(?:\S+ \S+ )?(?P<level>WARNING|ERROR|CRITICAL)[: ]+(?P<text>.*)$", re.MULTILINE)


def logged_problems(logs: list[Path], top: int = 15) -> list[tuple[int, str]]:
    """The replicas' WARNING and ERROR lines, grouped by their first words (ids and numbers
    blurred): what the server saw go wrong during the run."""
    seen: dict[str, int] = {}
    for log in logs:
        for match in PROBLEM.finditer(log.read_text(errors="replace") if log.exists() else ""):
            key = re.sub(r"[0-9a-f]{8,}|\d+(\.\d+)?", "#", f"{match['level']} {match['text']}")[:150]
            seen[key] = seen.get(key, 0) + 1
    return sorted(((count, key) for key, count in seen.items()), reverse=True)[:top]


def bench_scale(n: int, job_s: float, pg: Any, fakes: int, slow_s: float | None, keep_logs: str | None) -> None:
    import psycopg

    started_fakes = [start_fake(job_s) for _ in range(fakes)]
    fake_urls = [url for _, url in started_fakes]
    database = pg.fresh_database()
    with psycopg.connect(database, autocommit=True) as db:
        db.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    logs_dir = tempfile.TemporaryDirectory()
    kept = Path(keep_logs) if keep_logs else None
    if kept is not None:
        kept.mkdir(parents=True, exist_ok=True)
    logs = [(kept or Path(logs_dir.name)) / f"replica{i}.log" for i in range(3)]
    debug = {} if slow_s is None else {"MCP_AUDIO_BENCH_SLOW_S": str(slow_s)}
    try:
        direct_busy = machine_cpu()
        direct_s = anyio.run(direct_spread, fake_urls, n)
        direct_busy = tuple(b - a for a, b in zip(direct_busy, machine_cpu(), strict=True))
        direct_submits = sum(submits(url) for url in fake_urls)
        dirs = [tempfile.TemporaryDirectory() for _ in range(3)]
        started = [
            start_replica(
                fake_urls[i % fakes],
                d.name,
                logs[i],
                MCP_AUDIO_DATABASE_URL=database,
                MCP_AUDIO_METRICS_PUBLIC="1",
                **debug,
            )
            for i, d in enumerate(dirs)
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
            groups = {
                "replicas": [p.pid for p in procs],
                "fal fakes": [p.pid for p, _ in started_fakes],
                "PostgreSQL": postgres_pids(pg),
                "load generator": [os.getpid()],
                "pinger": [pinger.pid],
            }
            cpu_before = {name: cpu_of(pids) for name, pids in groups.items()}
            busy_before = machine_cpu()
            client_lag: list[float] = []
            wall, completed, ids = anyio.run(run_jobs, urls, n, True, client_lag)
            for index, (proc, log) in enumerate(zip(procs, logs, strict=True)):
                if proc.poll() is not None:
                    tail = log.read_text(errors="replace").splitlines()[-40:] if log.exists() else []
                    lines = "\n".join(line for line in tail if not line.startswith("SLOW "))
                    raise RuntimeError(f"replica {index + 1} exited ({proc.returncode}) during the run:\n{lines}")
            busy_after = machine_cpu()
            groups["PostgreSQL"] = postgres_pids(pg)  # backends opened during the run too
            cpu_used = {name: cpu_of(pids) - cpu_before.get(name, 0.0) for name, pids in groups.items()}
            leases = lease_statements(database)
            statements = statements_per_job(database, n)
            after = [lag_buckets(base) for base in bases]
            pinger.stdin.close()
            pings = [float(ms) for ms in json.loads(pinger.stdout.readline())]
            pinger.wait()
        finally:
            stop(*procs)
            for d in dirs:
                d.cleanup()
        served_submits = sum(submits(url) for url in fake_urls) - direct_submits
        slow = slow_callbacks(logs) if slow_s is not None else []
        problems = logged_problems(logs)
    finally:
        for fake, _ in started_fakes:
            fake.kill()
            fake.wait()
        logs_dir.cleanup()
    cores = os.cpu_count() or 1
    print(
        f"Scale: {n} concurrent jobs of {job_s:g} s over 3 replicas on one PostgreSQL, {fakes} fal fake process(es),"
        f" /healthz every 50 ms; {cores} cores, load average at the end {os.getloadavg()[0]:.1f}"
    )
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
    print(
        f"  load generator's own loop lag p50 {pct(client_lag, 0.5):5.1f} ms  p99 {pct(client_lag, 0.99):6.1f} ms"
        "  (the same timer in a process that only waits: lag here too is the machine's, not the server's)"
    )
    busy, total = (b - a for a, b in zip(busy_before, busy_after, strict=True))
    print(
        f"  machine CPU during the run {100 * busy / max(1, total):5.1f}% of {cores} cores"
        f" (directly against the fake: {100 * direct_busy[0] / max(1, direct_busy[1]):5.1f}%); CPU seconds: "
        + ", ".join(f"{name} {seconds:.1f}" for name, seconds in cpu_used.items())
        + f"; other processes {busy / os.sysconf('SC_CLK_TCK') - sum(cpu_used.values()):.1f}"
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
    print("  statements per job (pg_stat_statements, the health checks' included):")
    for per_job, query in statements:
        print(f"    {per_job:6.2f}  {query}")
    print("  the replicas' warnings and errors (count, first words):" if problems else "  the replicas logged none")
    for count, line in problems:
        print(f"    {count:5d} x {line}")
    if slow_s is not None:
        print(f"  callbacks that held a replica's loop over {slow_s * 1000:g} ms (wall, CPU), by where they stopped:")
        for count, wall_s, cpu_s, longest, what in slow:
            print(f"    {count:5d} x {wall_s:6.2f} s (CPU {cpu_s:5.2f} s) longest {longest * 1000:4.0f} ms  {what}")


async def direct_spread(fake_urls: list[str], n: int) -> float:
    """The same n jobs driven directly, spread over the fakes as the replicas are."""
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for index, url in enumerate(fake_urls):
            tg.start_soon(direct_jobs, url, len(range(index, n, len(fake_urls))))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--job-s", type=float, default=5.0)
    parser.add_argument("--takeover-jobs", type=int, default=20)
    parser.add_argument("--scale", type=int, default=2000, help="jobs of the scale run (0: none)")
    parser.add_argument("--only-scale", action="store_true")
    parser.add_argument("--fakes", type=int, default=3, help="fal fakes of the scale run")
    parser.add_argument(
        "--slow-callbacks",
        type=float,
        metavar="MS",
        help="time the scale run's replicas' loop callbacks and list those that held the loop over MS",
    )
    parser.add_argument("--logs", metavar="DIR", help="keep the scale run's replica logs in DIR")
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
            slow_s = None if args.slow_callbacks is None else args.slow_callbacks / 1000
            bench_scale(args.scale, args.job_s, pg, max(1, args.fakes), slow_s, args.logs)


if __name__ == "__main__":
    main()
