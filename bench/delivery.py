"""Delivery figures (not a test: nothing here asserts).

1. Concurrency: N jobs at once through one `mcp-audio serve --http` process (an MCP client over
   streamable HTTP), against the same N jobs driven directly over HTTP (submit, SSE status
   stream, result), against one loopback fal fake in its own process, in the same run. Prints
   both wall times, their ratio (goal <= 1.25) and the server's peak RSS (goal <= 200 MB).
2. Fault soak: jobs through one server while the fake injects faults of every class at every
   call site. Prints per class: jobs, double-billed (goal 0), results lost (goal 0), stuck
   (goal 0), unknown outcomes (expected only where a sent submit's answer was cut), and the
   extra latency per job over a fault-free round.

Usage: python bench/delivery.py [--jobs 500] [--job-s 5] [--soak-jobs 20]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx

KEY = "bench-key"
ENDPOINT = "fal-ai/lyria2"

FAKE_PROCESS = """
import sys
from mcp_audio.sandbox.fal_queue import FakeFal
from mcp_audio.sandbox.serve import serve_in_thread
import time
fake = FakeFal(valid_key=sys.argv[1])
fake.script(sys.argv[2], run_s=float(sys.argv[3]))
with serve_in_thread(fake.app, port=int(sys.argv[4])) as url:
    fake.base_url = url
    print("ready", flush=True)
    while True:
        time.sleep(3600)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("process exited before listening") from None
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def server_env(fake_url: str, data_dir: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_AUDIO_", "FAL_"))}
    env.update(
        FAL_KEY=KEY,
        MCP_AUDIO_FAL_QUEUE_URL=fake_url,
        MCP_AUDIO_FAL_RUN_URL=fake_url + "/run",
        MCP_AUDIO_FAL_REST_URL=fake_url,
        MCP_AUDIO_FAL_CDN_URL=fake_url,
        MCP_AUDIO_DATA_DIR=data_dir,
        MCP_AUDIO_OUTPUT_DIR=str(Path(data_dir) / "out"),
        MCP_AUDIO_WAIT_S="600",
        **extra,
    )
    return env


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PeakRss:
    """Samples a process's resident set every 50 ms (and reads the kernel's high-water mark)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_kb = pid, 0

    def sample(self) -> None:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith(("VmRSS:", "VmHWM:")):
                    self.peak_kb = max(self.peak_kb, int(line.split()[1]))
        except OSError:
            pass

    async def run(self) -> None:
        while True:
            self.sample()
            await anyio.sleep(0.05)


# --- 1. concurrency ---------------------------------------------------------------------------


async def direct_jobs(fake_url: str, n: int) -> float:
    """The same jobs with no server: submit, follow the SSE status stream to COMPLETED, result."""
    from httpx_sse import aconnect_sse

    headers = {"Authorization": f"Key {KEY}"}
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=n)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(120)) as http:

        async def one(i: int) -> None:
            submitted = (await http.post(f"{fake_url}/{ENDPOINT}", json={"prompt": f"job {i}"}, headers=headers)).json()
            for attempt in range(3):  # a keep-alive connection the fake closed as it was reused
                try:
                    async with aconnect_sse(http, "GET", submitted["status_url"] + "/stream", headers=headers) as sse:
                        async for event in sse.aiter_sse():
                            if '"COMPLETED"' in event.data:
                                break
                    (await http.get(submitted["response_url"], headers=headers)).raise_for_status()
                    return
                except httpx.TransportError:
                    if attempt == 2:
                        raise

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(one, i)
        return time.perf_counter() - started


@asynccontextmanager
async def uncapped_client(mcp_url: str) -> AsyncIterator[Any]:
    """An MCP client over streamable HTTP whose connection pool has no cap. Each pending tool
    call holds its response stream open: the SDK's default pool of 100 connections would run
    the calls 100 at a time (the direct driver has no cap either)."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    # Idle connections dropped before the server's 5 s keep-alive closes them (a call sent on
    # one the server is closing would fail).
    limits = httpx2.Limits(max_connections=None, keepalive_expiry=4.0)
    http = httpx2.AsyncClient(limits=limits, timeout=httpx2.Timeout(30, read=300))
    async with http, Client(streamable_http_client(mcp_url, http_client=http)) as client:
        yield client


async def through_server(mcp_url: str, n: int, rss: PeakRss) -> tuple[float, int]:
    completed = 0
    async with uncapped_client(mcp_url) as client:

        async def one(i: int) -> None:
            nonlocal completed
            result = await client.call_tool("make_music", {"model": "lyria2", "prompt": f"job {i}"})
            completed += (result.structured_content or {}).get("status") == "completed"

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            tg.start_soon(rss.run)
            async with anyio.create_task_group() as jobs:
                for i in range(n):
                    jobs.start_soon(one, i)
            tg.cancel_scope.cancel()
        return time.perf_counter() - started, completed


def bench_concurrency(n: int, job_s: float) -> None:
    fake_port, mcp_port = free_port(), free_port()
    fake = subprocess.Popen(
        [sys.executable, "-c", FAKE_PROCESS, KEY, ENDPOINT, str(job_s), str(fake_port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert fake.stdout is not None
    fake.stdout.readline()
    fake_url = f"http://127.0.0.1:{fake_port}"
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(
            [sys.executable, "-m", "mcp_audio", "serve", "--http", "--port", str(mcp_port)],
            env=server_env(fake_url, tmp),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(mcp_port, server)
            rss = PeakRss(server.pid)
            rss.sample()
            idle_mb = rss.peak_kb / 1024
            direct = anyio.run(direct_jobs, fake_url, n)
            server_cpu, client_cpu, fake_cpu = cpu_seconds(server.pid), cpu_seconds(os.getpid()), cpu_seconds(fake.pid)
            served, completed = anyio.run(through_server, f"http://127.0.0.1:{mcp_port}/mcp", n, rss)
            server_cpu = cpu_seconds(server.pid) - server_cpu
            client_cpu = cpu_seconds(os.getpid()) - client_cpu
            fake_cpu = cpu_seconds(fake.pid) - fake_cpu
            direct_again = anyio.run(direct_jobs, fake_url, n)  # machine noise shows as a spread
        finally:
            server.terminate()
            server.wait(timeout=30)
            fake.kill()
            fake.wait()
    best_direct = min(direct, direct_again)
    print(f"Concurrency: {n} jobs of {job_s:g} s each, one fal fake process")
    print(f"  direct over HTTP      {direct:7.2f} s, again {direct_again:7.2f} s")
    print(f"  through one server    {served:7.2f} s  ({completed}/{n} completed)")
    print(f"  ratio                 {served / best_direct:7.2f}   (goal <= 1.25)")
    print(f"  server CPU            {server_cpu:7.2f} s, {server_cpu / n * 1000:.1f} ms per job")
    print(f"  CPU in the same phase: MCP client {client_cpu:.2f} s, fal fake {fake_cpu:.2f} s")
    print(f"  server RSS            {idle_mb:7.1f} MB idle, {rss.peak_kb / 1024:7.1f} MB peak   (goal <= 200 MB)")


# --- 2. fault soak ----------------------------------------------------------------------------

FAULTS: dict[str, Callable[[Any, int], None]] = {
    "none": lambda fake, k: None,
    "submit: ingress 503 (no request id)": lambda fake, k: fake.inject("submit", 503, times=k),
    "submit: 502 after creating the job": lambda fake, k: [fake.fail_submit_after_creating(502)],
    "submit: answer cut after creating the job": lambda fake, k: fake.inject("submit", -1, times=max(1, k // 4)),
    "stream: 503": lambda fake, k: fake.inject("stream", 503, times=k),
    "stream: keep-alives only": lambda fake, k: [fake.mute_next_stream()],
    "stream: broken mid-way": lambda fake, k: [fake.break_stream_after(1)],
    "status: 503 outage": lambda fake, k: (
        fake.inject("stream", 503, times=k),
        fake.inject("status", 503, times=6 * k),
    ),
    "result: 502 outage": lambda fake, k: fake.inject("result", 502, times=6 * k),
    "result: truncated": lambda fake, k: fake.inject("result", -1, times=k),
    "download: cut mid-file": lambda fake, k: [fake.break_file_after(100)],
}


async def soak_round(fake: Any, settings: Any, pacing: Any, fault: str, jobs: int) -> dict[str, float]:
    from mcp import Client

    from mcp_audio.server import build_server
    from mcp_audio.store import open_store

    fake.reset()
    fake.script(ENDPOINT, run_s=0.5)
    FAULTS[fault](fake, max(1, jobs // 2))
    latencies: list[float] = []
    statuses: list[str] = []
    async with Client(build_server(settings, pacing=pacing)) as client:

        async def one(i: int) -> None:
            started = time.perf_counter()
            result = await client.call_tool("make_music", {"model": "lyria2", "prompt": f"{fault} {i}"})
            body = result.structured_content or {}
            if body.get("status") in ("queued", "running"):
                body = (await client.call_tool("get_job", {"job_id": body["job_id"], "wait_s": 120})).structured_content
            statuses.append(str((body or {}).get("status")))
            latencies.append(time.perf_counter() - started)

        async with anyio.create_task_group() as tg:
            for i in range(jobs):
                tg.start_soon(one, i)
    store = await open_store(settings)
    rows = {job.body.get("prompt"): job for job in await store.list_jobs(limit=10_000)}
    await store.close()
    created: dict[str, int] = {}
    for job in fake.jobs.values():
        created[job.input.get("prompt")] = created.get(job.input.get("prompt"), 0) + 1
    return {
        "jobs": jobs,
        "double_billed": sum(1 for count in created.values() if count > 1),
        # A job fal ran whose row did not end completed (an honest `unknown` is counted apart).
        "lost": sum(1 for prompt in created if rows[prompt].state not in ("completed", "unknown")),
        "stuck": sum(1 for row in rows.values() if not row.finished),
        "unknown": statuses.count("unknown"),
        "mean_s": statistics.mean(latencies),
    }


def bench_soak(jobs: int) -> None:
    import logging

    from mcp_audio.config import Settings
    from mcp_audio.providers.base import Pacing
    from mcp_audio.sandbox.fal_queue import FakeFal
    from mcp_audio.sandbox.serve import serve_in_thread

    logging.disable(logging.WARNING)
    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)  # the cut answers, on purpose
    fake = FakeFal(valid_key=KEY, keepalive_s=1.0)
    # Seconds-scale pacing so a soak takes minutes; the logic is the same as with the defaults.
    pacing = Pacing(retry_initial_s=0.05, retry_max_s=0.5, stream_idle_check_s=3.0, outage_retry_max_s=2.0)
    with serve_in_thread(fake.app) as url, tempfile.TemporaryDirectory() as tmp:
        fake.base_url = url
        settings = Settings(
            fal_key=KEY,
            fal_queue_url=url,
            fal_run_url=url + "/run",
            fal_rest_url=url,
            fal_cdn_url=url,
            data_dir=Path(tmp),
            output_dir=Path(tmp) / "out",
            download="always",
            wait_s=120,
        )
        rows = [(fault, anyio.run(soak_round, fake, settings, pacing, fault, jobs)) for fault in FAULTS]
    baseline = rows[0][1]["mean_s"]
    print(f"\nFault soak: {jobs} concurrent jobs per fault class, one server, downloads on")
    print(
        f"  {'fault':44s} {'jobs':>4s} {'billed 2x':>9s} {'lost':>4s} {'stuck':>5s} {'unknown':>7s}"
        f" {'extra s/job':>11s}"
    )
    totals = {"double_billed": 0, "lost": 0, "stuck": 0}
    for fault, r in rows:
        for key in totals:
            totals[key] += int(r[key])
        print(
            f"  {fault:44s} {r['jobs']:4.0f} {r['double_billed']:9.0f} {r['lost']:4.0f} {r['stuck']:5.0f} "
            f"{r['unknown']:7.0f} {r['mean_s'] - baseline:11.2f}"
        )
    print(
        f"  totals: double-billed {totals['double_billed']}, lost {totals['lost']}, stuck {totals['stuck']}"
        " (goal 0 each)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--job-s", type=float, default=5.0)
    parser.add_argument("--soak-jobs", type=int, default=20)
    parser.add_argument("--only", choices=["concurrency", "soak"])
    args = parser.parse_args()
    if args.only != "soak":
        bench_concurrency(args.jobs, args.job_s)
    if args.only != "concurrency":
        bench_soak(args.soak_jobs)


if __name__ == "__main__":
    main()
