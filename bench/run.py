"""Measured figures for mcp-audio, printed in one run (not a test: nothing here asserts).

1. Start-up: spawn-to-`initialize` and spawn-to-`tools/list` medians over stdio, for mcp-audio
   and for a one-tool hello server on the same SDK, and their ratio (goal <= 1.10).
2. `tools/list` size: bytes and tokens (bytes/4) per listed tool (the budget per catalog model,
   issue 23's <= 120: bench/tool_tokens.py).
3. Upstream HTTP requests per completed job against the loopback fal fake, for a 2 s and a
   60 s job (goal <= 4).

Usage: python bench/run.py [--runs 9] [--long-job-s 60]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HELLO_SERVER = """
from mcp.server import MCPServer
server = MCPServer("hello")

@server.tool()
def hello(name: str) -> str:
    '''Say hello.'''
    return f"Hello, {name}"

server.run("stdio")
"""

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}},
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}


def time_startup(command: list[str], env: dict[str, str]) -> tuple[float, float, list[dict[str, object]]]:
    """Seconds from spawn to the initialize answer and to the tools/list answer."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert proc.stdin and proc.stdout
    proc.stdin.write(json.dumps(INIT) + "\n")
    proc.stdin.flush()
    initialized_at = tools_at = 0.0
    tools: list[dict[str, object]] = []
    for line in proc.stdout:
        message = json.loads(line)
        if message.get("id") == 1:
            initialized_at = time.perf_counter() - start
            proc.stdin.write(json.dumps(INITIALIZED) + "\n" + json.dumps(LIST) + "\n")
            proc.stdin.flush()
        elif message.get("id") == 2:
            tools_at = time.perf_counter() - start
            tools = message["result"]["tools"]
            break
    proc.kill()
    proc.wait()
    return initialized_at, tools_at, tools


def bench_startup(runs: int, env: dict[str, str]) -> list[dict[str, object]]:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as hello:
        hello.write(HELLO_SERVER)
    ours_cmd = [sys.executable, "-m", "mcp_audio"]
    hello_cmd = [sys.executable, hello.name]
    results: dict[str, list[tuple[float, float]]] = {"mcp-audio": [], "hello": []}
    tools: list[dict[str, object]] = []
    time_startup(ours_cmd, env)  # warm the file cache and .pyc files for both
    time_startup(hello_cmd, env)
    for _ in range(runs):  # interleaved so machine noise hits both alike
        init, listed, tools = time_startup(ours_cmd, env)
        results["mcp-audio"].append((init, listed))
        init, listed, _ = time_startup(hello_cmd, env)
        results["hello"].append((init, listed))
    os.unlink(hello.name)
    medians = {
        name: (statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows))
        for name, rows in results.items()
    }
    print(f"Start-up over stdio, median of {runs} runs:")
    for name, (init, listed) in medians.items():
        print(f"  {name:10s} spawn->initialize {init * 1000:6.0f} ms   spawn->tools/list {listed * 1000:6.0f} ms")
    print(
        f"  ratio      initialize {medians['mcp-audio'][0] / medians['hello'][0]:.2f}   "
        f"tools/list {medians['mcp-audio'][1] / medians['hello'][1]:.2f}   (goal <= 1.10)"
    )
    return tools


def report_tools(tools: list[dict[str, object]]) -> None:
    sizes = {str(tool["name"]): len(json.dumps(tool, separators=(",", ":"))) for tool in tools}
    total = sum(sizes.values())
    print(
        f"\ntools/list: {len(tools)} tools, {total} bytes, ~{total // 4} tokens, "
        f"{total / 4 / len(tools):.0f} tokens per listed tool (per catalog model: bench/tool_tokens.py)"
    )
    for name, size in sorted(sizes.items(), key=lambda item: -item[1]):
        print(f"  {name:28s} {size:6d} bytes  ~{size // 4} tokens")


def bench_requests(job_seconds: list[float]) -> None:
    import logging

    import anyio
    from mcp import Client

    from mcp_audio.config import Settings
    from mcp_audio.sandbox.fal_queue import FakeFal
    from mcp_audio.sandbox.serve import serve_in_thread
    from mcp_audio.server import build_server

    logging.getLogger("httpx").setLevel(logging.WARNING)
    print("\nUpstream HTTP requests per completed job (loopback fal fake, SSE keep-alive every 15 s):")
    fake = FakeFal(valid_key="bench-key", keepalive_s=15.0)
    with serve_in_thread(fake.app) as url, tempfile.TemporaryDirectory() as tmp:
        fake.base_url = url
        settings = Settings(fal_key="bench-key", fal_queue_url=url, data_dir=Path(tmp), wait_s=max(job_seconds) + 30)

        async def one(seconds: float) -> None:
            fake.script(
                "fal-ai/lyria2",
                queue_s=min(2.0, seconds / 4),
                run_s=seconds - min(2.0, seconds / 4),
                logs=[f"step {i}" for i in range(10)],
            )
            before = len(fake.requests)
            started = time.perf_counter()
            async with Client(build_server(settings)) as client:
                result = await client.call_tool("make_music", {"model": "lyria2", "prompt": "bench"})
            elapsed = time.perf_counter() - started
            kinds = [r.kind for r in fake.requests[before:]]
            status = (result.structured_content or {}).get("status")
            print(
                f"  {seconds:4.0f} s job: {len(kinds)} requests ({', '.join(kinds)}); status {status}; "
                f"wall {elapsed:.1f} s (goal <= 4)"
            )

        async def main() -> None:
            for seconds in job_seconds:
                await one(seconds)

        anyio.run(main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--long-job-s", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MCP_AUDIO_DATA_DIR": tmp, "FAL_KEY": "bench-key-not-real"}
        # Both servers start from compiled bytecode, as an installed one does after its first run: with
        # PYTHONDONTWRITEBYTECODE (set in some shells) every mcp-audio module would be compiled from
        # source on every spawn (~0.2 s) while the SDK's come compiled from site-packages.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        tools = bench_startup(args.runs, env)
    report_tools(tools)
    bench_requests([2.0, args.long_job_s])


if __name__ == "__main__":
    main()
