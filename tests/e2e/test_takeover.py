"""A process killed (-9) in the middle of saving an output: whoever takes its job over removes
the hidden `.part` file it left in the user's folder at once, not ten minutes later."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anyio
import pytest
from mcp import Client

from mcp_audio.config import Settings
from mcp_audio.sandbox.fal_queue import FakeFal
from tests.helpers import audio_payload, body_of, env_for, make_wav, server, start_tool_call, stop

pytestmark = pytest.mark.anyio
AUDIO = make_wav(4.0, rate=48000, channels=2)  # 768 kB: the first request stalls after a quarter


@contextmanager
def stalling_cdn() -> Iterator[tuple[str, threading.Event]]:
    """A loopback file host whose first download sends part of the file, then stalls until released."""
    release, first = threading.Event(), threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Length", str(len(AUDIO)))
            self.end_headers()
            if not first.is_set():
                first.set()
                self.wfile.write(AUDIO[: len(AUDIO) // 4])
                self.wfile.flush()
                release.wait(60)
                return
            self.wfile.write(AUDIO)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", release
    finally:
        release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


async def test_taking_over_a_killed_download_removes_its_part_file_at_once(
    settings: Settings, fake_fal: FakeFal
) -> None:
    saving = settings.model_copy(update={"download": "always"})
    with stalling_cdn() as (cdn, release):
        url = f"{cdn}/files/out.wav"
        fake_fal.script("fal-ai/lyria2", output={"audio": {"url": url, "content_type": "audio/wav"}})
        env = env_for(saving) | {"MCP_AUDIO_FAL_CDN_URL": cdn}  # a configured upstream host: fetched
        proc = start_tool_call(env, "lyria2_music", {"prompt": "calm"})
        try:
            with anyio.fail_after(30):
                while not list(saving.output_dir.glob(".*.part")):
                    await anyio.sleep(0.05)
        finally:
            stop(proc)  # SIGKILL mid-download: no clean-up runs
        [left] = list(saving.output_dir.glob(".*.part"))
        assert left.is_file()  # the killed download's hidden file (its bytes may still be in a write batch)
        adopting = saving.model_copy(update={"fal_cdn_url": cdn})
        async with Client(server(adopting)) as client:
            assert not left.exists(), "the dead process's .part is still in the output folder"
            listed = body_of(await client.call_tool("list_jobs", {}))
            [job] = listed["jobs"]
            done = body_of(await client.call_tool("get_job", {"job_id": job["job_id"], "wait_s": 30}))
        assert done["status"] == "completed"
        [saved] = done["files"]
        # Byte-exact but for the Content Credentials the saver adds (signed after the download).
        assert audio_payload(Path(saved["path"]).read_bytes()) == audio_payload(AUDIO)
        assert list(saving.output_dir.glob(".*")) == []  # nothing hidden is left behind
        release.set()
    assert len([r for r in fake_fal.requests if r.kind == "submit"]) == 1  # the paid job was not sent again
