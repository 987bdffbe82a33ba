"""Resource limits of a real `serve --http` process (issue 20, findings 2 and 7).

1. A music bed whose FLAC header claims 1 s but which holds `--bed-hours` of silence, mixed
   under a 10 s voice (48 kHz stereo): the server's RSS before, and its peak (VmHWM) after.
2. `--calls` concurrent audio_join calls by one caller (two 60 s stereo WAVs to FLAC each)
   while /healthz is asked every 0.2 s: its answer times and statuses, and the wall time.

    .venv/bin/python bench/limits.py [--root DIR] [--bed-hours 1] [--calls 44]

`--root` runs the server from another checkout (PYTHONPATH), to compare before and after.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import numpy as np
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the test helpers: one lying FLAC, one free port
from tests.helpers import make_lying_flac
from tests.http_harness import free_port


def wav(seconds: float, rate: int = 48000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.repeat(pcm, 2).tobytes())
    return buffer.getvalue()


def memory_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


async def call(url: str, tool: str, arguments: dict[str, Any]) -> Any:
    http = httpx2.AsyncClient(timeout=httpx2.Timeout(600.0))
    async with http, Client(streamable_http_client(url, http_client=http)) as client:
        return await client.call_tool(tool, arguments)


async def bench(root: Path, bed_hours: float, calls: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="mcp-audio-limits-"))
    rec = work / "rec"
    rec.mkdir()
    (rec / "voice.wav").write_bytes(wav(10.0))
    (rec / "bed.flac").write_bytes(make_lying_flac(bed_hours * 3600, 1.0, rate=48000, channels=2))
    (rec / "long.wav").write_bytes(wav(60.0))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_AUDIO_")} | {
        "PYTHONPATH": str(root),
        "MCP_AUDIO_DATA_DIR": str(work / "data"),
        "MCP_AUDIO_OUTPUT_DIR": str(work / "out"),
        "MCP_AUDIO_ALLOWED_DIRS": str(rec),
        "MCP_AUDIO_WAIT_S": "600",
        "MCP_AUDIO_DOWNLOAD": "always",
    }
    command = [sys.executable, "-m", "mcp_audio", "serve", "--http", "--port", str(port)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work)
    base, mcp = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/mcp"
    try:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        await call(mcp, "audio_info", {"audio_url": str(rec / "voice.wav")})  # warm: the engine is loaded
        before = memory_mb(proc.pid, "VmRSS")
        began = time.monotonic()
        mixed = await call(mcp, "audio_mix", {"voice_url": str(rec / "voice.wav"), "music_url": str(rec / "bed.flac")})
        print(f"root {root}")
        print(
            f"mix over a bed claiming 1 s, holding {bed_hours:g} h (48 kHz stereo, "
            f"{(rec / 'bed.flac').stat().st_size / 1e6:.1f} MB): error={mixed.is_error}, "
            f"{time.monotonic() - began:.1f} s; RSS before {before:.0f} MB, "
            f"peak {memory_mb(proc.pid, 'VmHWM'):.0f} MB, after {memory_mb(proc.pid, 'VmRSS'):.0f} MB"
        )
        answers: list[tuple[float, int]] = []
        done = anyio.Event()

        async def probe() -> None:
            async with httpx.AsyncClient(trust_env=False, timeout=60) as http:
                while not done.is_set():
                    start = time.monotonic()
                    try:
                        status = (await http.get(base + "/healthz")).status_code
                    except httpx.HTTPError:
                        status = 0
                    answers.append((time.monotonic() - start, status))
                    await anyio.sleep(0.2)

        join = {"audio_urls": [str(rec / "long.wav")] * 2, "format": "flac"}
        began = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(probe)
            async with anyio.create_task_group() as joins:
                for _ in range(calls):
                    joins.start_soon(call, mcp, "audio_join", join)
            done.set()
        times = sorted(seconds for seconds, _ in answers)
        bad = sum(1 for _, status in answers if status != 200)
        print(
            f"{calls} concurrent joins by one caller: {time.monotonic() - began:.1f} s; "
            f"/healthz {len(answers)} checks, {bad} not 200, median {statistics.median(times) * 1000:.0f} ms, "
            f"max {times[-1] * 1000:.0f} ms; "
            f"server peak RSS {memory_mb(proc.pid, 'VmHWM'):.0f} MB"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--bed-hours", type=float, default=1.0)
    parser.add_argument("--calls", type=int, default=44)
    args = parser.parse_args()
    anyio.run(bench, args.root, args.bed_hours, args.calls)


if __name__ == "__main__":
    main()
