"""A production survives kill -9: a real stdio server process is killed (SIGKILL) while its
parts are running upstream, a new one starts on the same data dir, and the production
finishes with no part submitted twice (counted at the fake: every submit it received)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from mcp_audio.config import Settings
from mcp_audio.sandbox.fal_queue import FakeFal
from tests.helpers import body_of, env_for, start_tool_call, stdio_params, stop, text_of
from tests.server.test_productions import bed

pytestmark = pytest.mark.anyio

KOKORO = "fal-ai/kokoro/american-english"
BOOK = "\n\n".join(
    f"# Chapter {c}\n" + "\n\n".join(f"Paragraph {c}.{p} of the book. It says something." for p in range(1, 4))
    for c in range(1, 4)
)  # 3 chapters of 3 paragraphs: 9 parts, 4 at a time on fal
EPISODE = "\n\n".join(
    f"{'Alice' if i % 2 == 0 else 'Bob'}: Line {i} of the episode. It goes on a little." for i in range(8)
)
CASES = {
    "audiobook": {"script": BOOK, "delivery": "audiobook", "format": "m4b"},
    "two-host episode with a bed": {
        "script": EPISODE,
        "voices": {
            "Alice": {"tool": "kokoro_tts", "voice": "af_bella"},
            "Bob": {"tool": "kokoro_tts", "voice": "am_adam"},
        },
        "delivery": "podcast",
        "format": "mp3",
    },
}


def submitted_parts(database: Path) -> int:
    """Parts whose submit the (running) server recorded; 0 until its database is made."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
            sql = "SELECT COUNT(*) FROM jobs WHERE tool = 'kokoro_tts' AND upstream_id IS NOT NULL"
            return int(db.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:  # not created or not migrated yet
        return 0


@pytest.mark.parametrize("case", list(CASES))
async def test_kill_9_in_the_middle_resumes_without_sending_a_part_twice(
    settings: Settings, fake_fal: FakeFal, rec_dir: Path, case: str
) -> None:
    arguments: dict[str, Any] = dict(CASES[case])
    if "voices" in arguments:
        arguments["music"] = str(bed(rec_dir / "bed.wav"))
    settings = settings.model_copy(update={"allowed_dirs": str(rec_dir), "wait_s": 120})
    fake_fal.script(KOKORO, run_s=3.0)  # each part runs 3 s upstream: the kill lands while 4 are in flight
    proc = start_tool_call(env_for(settings), "produce_audio", arguments)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if settings.database_path.exists() and submitted_parts(settings.database_path) >= 4:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the parts were never submitted")
        assert proc.poll() is None
        proc.kill()  # SIGKILL: no clean-up of any kind
    finally:
        stop(proc)
    before = len(fake_fal.requests_of("submit"))
    assert 4 <= before < 9  # killed in the middle
    fake_fal.script(KOKORO)  # the parts still to send run at once: only those in flight at the kill took 3 s

    async with Client(stdio_params(settings), mode="legacy") as client:
        listed = body_of(await client.call_tool("list_jobs", {"status": "unfinished", "limit": 50}))
        [production] = [j for j in listed["jobs"] if j["tool"] == "produce_audio"]
        done = await client.call_tool("get_job", {"job_id": production["job_id"], "wait_s": 120})
    body = body_of(done)
    assert body["status"] == "completed", text_of(done)
    prompts = [json.loads(r.body)["prompt"] for r in fake_fal.requests_of("submit")]
    assert len(prompts) == len(set(prompts)) == body["output"]["parts"]  # each part sent exactly once
    audio = [f for f in body["files"] if f["content_type"].startswith("audio/")]
    assert Path(audio[0]["path"]).is_file()
    if case == "audiobook":
        import mutagen.mp4

        assert audio[0]["file_name"].endswith(".m4b")
        chapters = mutagen.mp4.MP4(audio[0]["path"]).chapters
        assert [c.title for c in chapters] == ["Chapter 1", "Chapter 2", "Chapter 3"]
