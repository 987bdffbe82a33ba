"""Production figures (not a test: nothing here asserts).

A one-hour audiobook (about 50,000 characters, 5 chapters) in the sandbox, two ways, against
the same loopback fal fake (in this process; each speech request runs `--part-s` upstream and
returns speech-like audio of len(text)/14 seconds, as the sandbox's speech does):

1. produce_audio: one call (then get_job until it finishes) to a stdio server process.
   Wall time, parts submitted, the server's peak RSS, and its peak while the parts were spoken
   (rss_speech_mb: what the parts themselves keep resident, without the end's signing spike).
2. The per-part route as an agent calls the tools, one call at a time: speak (kokoro) per part,
   audio_join of the parts (jobs:// references), audio_master. Wall time.

Tokens in the agent's context: bytes/4 of every tools/call request and response the agent
sees (arguments, content and structuredContent; not `_meta`, which hosts give to UIs only),
in total and without the script's own text (which the agent has either way).
Goals: production >= 3x faster than per-part, <= 300 MB RSS, <= 2,000 tokens.

Usage: python bench/production.py [--chars 50000] [--part-s 2.0] [--format mp3|m4b] [--production-only]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import anyio
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from delivery import KEY, PeakRss, server_env

from mcp_audio.sandbox.fal_queue import FakeFal
from mcp_audio.sandbox.serve import serve_in_thread

KOKORO = "fal-ai/kokoro/american-english"
RATE = 24_000
SENTENCES = [
    "The river ran past the mill and on toward the town.",
    "Nobody in the village could say where the water came from.",
    "Every spring the banks flooded, and every summer they dried.",
    "The miller kept his books with care, counting each sack of grain.",
    "At night the wheel creaked, and the children told stories about it.",
    "Some said a giant turned it; others said it was only the wind.",
]


def book(chars: int, chapters: int = 5) -> str:
    """`chars` characters of prose in `chapters` chapters of ~500-character paragraphs."""
    per = chars // chapters
    out, i = [], 0
    for c in range(1, chapters + 1):
        paragraphs, size = [], 0
        while size < per:
            para = " ".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(9))
            i += 1
            paragraphs.append(para)
            size += len(para)
        out.append(f"# Chapter {c}\n\n" + "\n\n".join(paragraphs))
    return "\n\n".join(out)


def speech_like(seconds: float) -> bytes:
    """Syllables of a voiced tone with short pauses between words: read speech's rhythm."""
    n = max(1, int(seconds * RATE))
    t = np.arange(n) / RATE
    voice = 0.25 * np.sin(2 * np.pi * 160 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
    gate = ((t % 0.4) < 0.3).astype(np.float64)  # 300 ms word, 100 ms pause
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes((voice * gate * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


def start_fake(part_s: float) -> tuple[FakeFal, Any]:
    fake = FakeFal(valid_key=KEY)
    served = serve_in_thread(fake.app)
    fake.base_url = served.__enter__()

    def output(request: dict[str, Any]) -> dict[str, Any]:
        data = speech_like(len(request.get("prompt", "")) / 14.0)
        name = f"{time.monotonic_ns()}.wav"
        url = fake.put_file(name, data, "audio/wav")
        return {"audio": {"url": url, "content_type": "audio/wav", "file_name": name, "file_size": len(data)}}

    fake.script(KOKORO, output=output, run_s=part_s)
    return fake, served


class TimedRss(PeakRss):
    """PeakRss that also keeps (wall time, VmRSS kB) samples, to split the peak by phase."""

    def __init__(self, pid: int) -> None:
        super().__init__(pid)
        self.samples: list[tuple[float, int]] = []

    def sample(self) -> None:
        super().sample()
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    self.samples.append((time.time(), int(line.split()[1])))
        except OSError:
            pass

    def peak_until(self, when: float) -> int:
        return max((kb for t, kb in self.samples if t <= when), default=0)


class Agent:
    """An MCP client over stdio that counts what the agent sees."""

    def __init__(self, client: Any, script: str) -> None:
        self.client, self.script, self.bytes, self.script_bytes = client, script, 0, 0

    async def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        request = json.dumps({"name": name, "arguments": arguments})
        result = await self.client.call_tool(name, arguments)
        seen = result.model_dump(mode="json", by_alias=True, exclude_none=True)
        seen.pop("_meta", None)
        self.bytes += len(request) + len(json.dumps(seen))
        for value in (arguments.get("script"), arguments.get("text")):
            if isinstance(value, str):
                self.script_bytes += len(json.dumps(value))
        if result.is_error:
            raise RuntimeError(str(result.content)[:500])
        body: dict[str, Any] = result.structured_content or {}
        return body

    async def until_done(self, body: dict[str, Any]) -> dict[str, Any]:
        while body["status"] in ("queued", "running"):
            body = await self.call("get_job", {"job_id": body["job_id"], "wait_s": 600})
        return body


async def production(fake: FakeFal, script: str, data: Path, fmt: str = "mp3") -> dict[str, Any]:
    from mcp import Client, StdioServerParameters

    env = server_env(str(fake.base_url), str(data), MCP_AUDIO_DOWNLOAD="always")
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_audio"], env=env)
    before = len(fake.requests_of("submit"))
    async with Client(params, mode="legacy", read_timeout_seconds=1800) as client:
        pid = _server_pid()
        rss = TimedRss(pid)
        agent = Agent(client, script)
        start = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(rss.run)
            body = await agent.until_done(
                await agent.call("produce_audio", {"script": script, "delivery": "audiobook", "format": fmt})
            )
            tg.cancel_scope.cancel()
        wall = time.monotonic() - start
    phases = _phases(data, body["job_id"])
    return {
        "wall_s": wall,
        **{k: v for k, v in phases.items() if k != "speech_end"},
        "submitted": len(fake.requests_of("submit")) - before,
        "parts": body["output"]["parts"],
        "rss_mb": rss.peak_kb / 1024,
        "rss_speech_mb": rss.peak_until(phases["speech_end"]) / 1024,
        "tokens": agent.bytes / 4,
        "tokens_without_script": (agent.bytes - agent.script_bytes) / 4,
        "duration_min": body["output"]["duration_s"] / 60,
        "failed_rules": [r["rule"] for r in body["output"]["delivery"]["rules"] if not r["passed"]],
    }


async def per_part(fake: FakeFal, script: str, data: Path, parts: list[str]) -> dict[str, Any]:
    from mcp import Client, StdioServerParameters

    env = server_env(str(fake.base_url), str(data), MCP_AUDIO_DOWNLOAD="always")
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_audio"], env=env)
    async with Client(params, mode="legacy", read_timeout_seconds=1800) as client:
        agent = Agent(client, script)
        start = time.monotonic()
        jobs = []
        for text in parts:
            body = await agent.until_done(
                await agent.call("speak", {"model": "kokoro", "text": text, "voice": "af_heart"})
            )
            jobs.append(f"jobs://{body['job_id']}")
        joined = await agent.until_done(await agent.call("audio_join", {"audio_urls": jobs, "gap_s": 0.35}))
        await agent.until_done(
            await agent.call("audio_master", {"audio_url": f"jobs://{joined['job_id']}", "format": "mp3"})
        )
        wall = time.monotonic() - start
    return {"wall_s": wall, "calls": len(parts) + 2, "tokens": agent.bytes / 4}


def _phases(data: Path, job_id: str) -> dict[str, float]:
    """From the job rows: seconds until the last part finished, and from then to the end."""
    import contextlib
    import sqlite3

    with contextlib.closing(sqlite3.connect(data / "jobs.sqlite3")) as db:
        created, finished = db.execute("SELECT created_at, finished_at FROM jobs WHERE id = ?", (job_id,)).fetchone()
        last = db.execute("SELECT MAX(finished_at) FROM jobs WHERE tool = 'kokoro_tts'").fetchone()[0]
    return {"speech_s": last - created, "after_speech_s": finished - last, "speech_end": last}


def _server_pid() -> int:
    """The newest `python -m mcp_audio` child of this process."""
    import os

    mine = str(os.getpid())
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                cmd = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if stat[1] == mine and b"mcp_audio" in cmd:
                found.append(int(proc.name))
    return max(found)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chars", type=int, default=50_000)
    parser.add_argument("--part-s", type=float, default=2.0)
    parser.add_argument("--production-only", action="store_true")
    # mp3: one 192 kb/s file (ACX's delivery); m4b: one AAC audiobook file with chapters (Apple
    # Books), what the produce_document prompt asks for an audiobook.
    parser.add_argument("--format", choices=["mp3", "m4b"], default="mp3")
    args = parser.parse_args()
    script = book(args.chars)
    paragraphs = [p for p in script.split("\n\n") if p and not p.startswith("# ")]
    fake, served = start_fake(args.part_s)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            a = await production(fake, script, Path(tmp) / "a", args.format)
            print(f"production: {json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in a.items()})}")
            if args.production_only:
                return
            b = await per_part(fake, script, Path(tmp) / "b", paragraphs)
            print(f"per-part:   {json.dumps({k: round(v, 1) for k, v in b.items()})}")
            print(f"speed-up: {b['wall_s'] / a['wall_s']:.2f}x (goal >= 3)")
    finally:
        served.__exit__(None, None, None)


if __name__ == "__main__":
    anyio.run(main)
