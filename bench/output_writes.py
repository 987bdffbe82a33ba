"""How long the event loop is held while a large output is saved (not a test: nothing here
asserts): `write_atomically` streams N MiB in 64 KiB chunks to a file in a temporary folder
(as a download does), then `local_details` hashes nothing more but parses the file, while a
1 ms timer measures its own lateness (what any other request would wait).

    .venv/bin/python bench/output_writes.py [--mib 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio
import anyio.to_thread

from mcp_audio.files import outputs
from tests.helpers import make_wav

CHUNK = 65536


async def chunks(total: int) -> AsyncIterator[bytes]:
    head = make_wav(0.1)
    block = bytes(CHUNK)
    yield head
    sent = len(head)
    while sent < total:
        yield block
        sent += len(block)
        await anyio.lowlevel.checkpoint()  # a network read would yield here


async def one(folder: Path, total: int) -> tuple[float, list[float]]:
    lag: list[float] = []
    done = anyio.Event()

    async def ticker() -> None:
        while not done.is_set():
            due = time.perf_counter() + 0.001
            await anyio.sleep(0.001)
            lag.append(max(0.0, time.perf_counter() - due) * 1000)

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        target = folder / "take.wav"
        await outputs.write_atomically(target, chunks(total), declared="audio/wav")
        if hasattr(outputs, "WRITE_BATCH"):  # the new saver parses on a thread too
            await anyio.to_thread.run_sync(outputs.local_details, target, "j", 0, "")
        else:
            outputs.local_details(target, "j", 0, "")
        done.set()
    target.unlink()
    return time.perf_counter() - started, lag


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            wall, lag = await one(Path(tmp), args.mib << 20)
            lag.sort()
            p99 = lag[int(len(lag) * 0.99)] if lag else 0.0
            print(
                f"{args.mib} MiB in {wall:.2f} s ({args.mib / wall:.0f} MiB/s): loop lag median "
                f"{statistics.median(lag):.2f} ms, p99 {p99:.2f} ms, max {lag[-1]:.1f} ms ({len(lag)} ticks)"
            )


anyio.run(main)
