"""The in-chat player (mcp_audio/server/player.html) in a real headless Chromium, inside a test host page
that speaks the MCP Apps postMessage protocol (SEP-1865) and serves small WAV files from loopback."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import math
import os
import re
import shutil
import struct
import threading
import wave
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

CHROMIUM = next(
    filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"))),
    "/usr/bin/chromium",
)
if not Path(CHROMIUM).exists():
    pytest.skip("player browser tests need Chromium: apt-get install chromium", allow_module_level=True)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="player browser tests need playwright: pip install playwright"
)

from mcp_audio.server.player import player_html  # noqa: E402

HOST_PAGE = Path(__file__).with_name("player_host.html")
SCREENSHOT = os.environ.get("PLAYER_SCREENSHOT")  # also write the two-takes screenshot here when set
RATE = 8000
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


def make_wav(seconds: float, pitch: float, syllables: int) -> bytes:
    """A mono 16-bit tone shaped into 'syllables', so its waveform has some structure."""
    frames = int(seconds * RATE)
    out = bytearray()
    for n in range(frames):
        t = n / RATE
        envelope = abs(math.sin(math.pi * syllables * t / seconds)) * (0.35 + 0.65 * abs(math.sin(1.7 * t + pitch)))
        out += struct.pack("<h", int(32000 * envelope * math.sin(2 * math.pi * pitch * t)))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(bytes(out))
    return buf.getvalue()


AUDIO = {
    "take1.wav": make_wav(12.0, 220.0, 9),
    "take2.wav": make_wav(8.0, 330.0, 6),
    "job.wav": make_wav(3.0, 440.0, 3),
}


class LoopbackServer:
    """Serves the host page, the player (under the spec's restrictive CSP) and WAV files with Range support."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.paths.append(self.path)
                path = urlsplit(self.path).path
                if path == "/host.html":
                    self._send(200, "text/html; charset=utf-8", HOST_PAGE.read_bytes())
                elif path == "/player.html":
                    # The host's CSP for the view: the audio origin is declared, unless ?strict (no resource domains).
                    media = "data:" if "strict" in self.path else f"{server.url} data:"
                    csp = (
                        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
                        f"media-src {media}; connect-src 'none'; font-src 'none'; frame-src 'none'; "
                        "object-src 'none'; base-uri 'none'"
                    )
                    self._send(
                        200, "text/html; charset=utf-8", player_html().encode(), {"Content-Security-Policy": csp}
                    )
                elif path.startswith("/audio/") and path[7:] in AUDIO:
                    self._send_audio(AUDIO[path[7:]])
                else:
                    self._send(404, "text/plain", b"not found")

            def _send_audio(self, data: bytes) -> None:
                match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
                if not match:
                    self._send(200, "audio/wav", data, {"Accept-Ranges": "bytes"})
                    return
                start = int(match[1] or 0)
                end = min(int(match[2]) if match[2] else len(data) - 1, len(data) - 1)
                headers = {"Accept-Ranges": "bytes", "Content-Range": f"bytes {start}-{end}/{len(data)}"}
                self._send(206, "audio/wav", data[start : end + 1], headers)

            def _send(self, status: int, content_type: str, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # a media element gave up on a range
                    self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def audio_url(self, name: str) -> str:
        return f"{self.url}/audio/{name}"


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    srv = LoopbackServer()
    srv.thread.start()
    try:
        yield srv
    finally:
        srv.httpd.shutdown()
        srv.httpd.server_close()
        srv.thread.join(5)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class Host:
    """The test host page in a fresh browser context, plus every URL the page requested."""

    def __init__(
        self, browser: Any, server: LoopbackServer, context: dict[str, Any] | None = None, view: str = "/player.html"
    ) -> None:
        self.server = server
        self.context = browser.new_context(viewport={"width": 760, "height": 900}, device_scale_factor=2)
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        query = "?" + urlencode({"context": json.dumps(context or {"theme": "light"}), "view": view})
        self.page.goto(server.url + "/host.html" + query)
        self.page.wait_for_function("window.host && window.host.initialized", timeout=10_000)
        self.view = self.page.frame_locator("#view")
        self.frame = next(f for f in self.page.frames if "/player.html" in f.url)

    def call(self, expression: str, arg: Any = None) -> Any:
        return self.page.evaluate(expression, arg)

    def in_view(self, expression: str, arg: Any = None) -> Any:
        return self.frame.evaluate(expression, arg)

    def wait_view(self, expression: str, arg: Any = None, timeout: float = 10_000) -> None:
        # As a function: a string predicate would be eval'd, which the view's CSP forbids.
        self.frame.wait_for_function(f"(arg) => ({expression})", arg=arg, timeout=timeout)

    def received(self, method: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.call("(m) => host.received(m)", method)
        return result

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_host(browser: Any, server: LoopbackServer) -> Iterator[Any]:
    hosts: list[Host] = []

    def start(context: dict[str, Any] | None = None, view: str = "/player.html") -> Host:
        host = Host(browser, server, context, view)
        hosts.append(host)
        return host

    yield start
    for host in hosts:
        host.close()


def job(job_id: str, status: str, files: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    """A CallToolResult as our tools return it: a short text plus the job as structuredContent."""
    tool = extra.pop("tool", "elevenlabs_tts")
    body: dict[str, Any] = {
        "job_id": job_id,
        "tool": tool,
        "status": status,
        "endpoint": "fal-ai/elevenlabs/tts/multilingual-v2",
        "created_at": "2026-12-01T08:00:00+00:00",
        "estimated_cost_usd": 0.045,
        "files": files or [],
        **extra,
    }
    if status in ("queued", "running"):
        body["resource"] = f"jobs://{job_id}"
    text = f"{tool} {status} (job {job_id})."
    return {"content": [{"type": "text", "text": text}], "structuredContent": body, "isError": status == "failed"}


def wav_file(server: LoopbackServer, name: str, **extra: Any) -> dict[str, Any]:
    seconds = (len(AUDIO[name]) - 44) / 2 / RATE
    return {
        "url": server.audio_url(name),
        "content_type": "audio/wav",
        "file_name": name,
        "file_size": len(AUDIO[name]),
        "duration_s": seconds,
        "sample_rate": RATE,
        "channels": 1,
        **extra,
    }


TRANSCRIPT = {
    "text": "Welcome to the studio. This is take one. Listen to the pacing. Then compare it with take two.",
    "chunks": [
        {"timestamp": [0.0, 2.5], "text": "Welcome to the studio.", "speaker": "Narrator"},
        {"timestamp": [2.5, 5.0], "text": "This is take one."},
        {"timestamp": [5.0, 8.0], "text": "Listen to the pacing."},
        {"timestamp": [8.0, 11.5], "text": "Then compare it with take two."},
    ],
    "words": [
        {"text": w, "start": s, "end": s + 0.5, "type": "word", "speaker_id": "Narrator"}
        for w, s in (
            *[("Welcome", 0.1), ("to", 0.7), ("the", 1.1), ("studio.", 1.5)],
            *[("This", 2.6), ("is", 3.1), ("take", 3.6), ("one.", 4.2)],
            *[("Listen", 5.1), ("to", 5.8), ("the", 6.3), ("pacing.", 6.9)],
            *[("Then", 8.1), ("compare", 8.7), ("it", 9.4), ("with", 9.8), ("take", 10.3), ("two.", 10.9)],
        )
    ],
}


def peaks(n: int, seed: float) -> list[float]:
    return [round(abs(math.sin(i * 0.21 + seed)) * (0.3 + 0.7 * abs(math.sin(i * 0.047 + seed))), 3) for i in range(n)]


def assert_only_loopback_audio(host: Host) -> None:
    """The view fetched nothing but the audio files (the host page and the view document are the host's)."""
    urls = [u for u in host.requests if not u.startswith("data:")]
    assert urls, "no requests captured"
    for url in urls:
        assert url.startswith(host.server.url + "/"), f"request left loopback: {url}"
    paths = {urlsplit(u).path for u in urls} | {urlsplit(p).path for p in host.server.paths}
    extra = {p for p in paths if p not in ("/host.html", "/player.html") and not p.startswith("/audio/")}
    assert not extra, f"unexpected requests: {extra}"


def test_handshake_then_two_takes_with_transcript_and_cost(
    open_host: Any, server: LoopbackServer, tmp_path: Path
) -> None:
    host = open_host()
    log = host.call("host.log")
    # The view opens with ui/initialize; only after the host's answer does it send initialized.
    first = log[0]
    assert first["dir"] == "in" and first["msg"]["method"] == "ui/initialize"
    params = first["msg"]["params"]
    assert params["protocolVersion"] == "2026-01-26"
    assert params["appInfo"]["name"] == "mcp-audio-player" and params["appInfo"]["version"]
    assert "appCapabilities" in params
    answer = next(i for i, e in enumerate(log) if e["dir"] == "out" and e["msg"].get("id") == first["msg"]["id"])
    initialized = next(i for i, e in enumerate(log) if e["msg"].get("method") == "ui/notifications/initialized")
    assert answer < initialized
    assert "id" not in log[initialized]["msg"]
    assert not host.in_view("document.querySelectorAll('.take').length")

    host.call("(a) => host.toolInput(a)", {"text": "Welcome to the studio.", "voice": "Rachel"})
    host.wait_view("document.getElementById('empty').textContent.includes('Welcome to the studio.')")
    first_take = wav_file(server, "take1.wav", peaks=peaks(400, 0.0), resource="files://job-a/take1.wav")
    host.call("(r) => host.toolResult(r)", job("job-a", "completed", [first_take], output=TRANSCRIPT, duration_s=3.2))
    host.wait_view("document.querySelectorAll('.take').length === 1")
    second_take = wav_file(server, "take2.wav", peaks=peaks(400, 1.3))
    host.call("(r) => host.toolResult(r)", job("job-b", "completed", [second_take], estimated_cost_usd=0.03))
    host.wait_view("document.querySelectorAll('.take').length === 2")

    takes = host.view.locator(".take")
    assert [t.strip() for t in takes.locator(".tag").all_inner_texts()] == ["TAKE 1", "TAKE 2"]
    srcs = host.in_view("[...document.querySelectorAll('.take audio')].map(a => a.src)")
    assert srcs == [server.audio_url("take1.wav"), server.audio_url("take2.wav")]
    host.wait_view("[...document.querySelectorAll('.take audio')].every(a => a.readyState >= 1)")
    durations = host.in_view("[...document.querySelectorAll('.take audio')].map(a => a.duration)")
    assert durations == [pytest.approx(12.0, abs=0.05), pytest.approx(8.0, abs=0.05)]
    assert takes.nth(0).locator(".cost").inner_text() == "$0.045"
    assert takes.nth(1).locator(".cost").inner_text() == "$0.030"
    assert "12.0 s" in takes.nth(0).locator(".meta").inner_text()
    assert host.in_view("[...document.querySelectorAll('.take')].map(c => c.dataset.wave)") == ["peaks", "peaks"]
    assert takes.nth(0).locator(".seg").count() == 4
    assert "Welcome to the studio." in takes.nth(0).locator(".tx").inner_text()
    assert takes.nth(1).locator(".tx").count() == 0
    assert host.view.locator(".top .sum").inner_text() == "2 takes · $0.075 total"

    # A waveform was painted (not a blank canvas).
    painted = host.in_view(
        "(() => { const c = document.querySelector('.take canvas'); const d = c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; })()"
    )
    assert painted > 1000

    sizes = host.call("host.sizes")
    assert sizes and sizes[-1]["height"] > 200 and sizes[-1]["width"] > 600

    shot = tmp_path / "player.png"
    # Mid-playback look: clicking a word seeks there; its segment and the word itself light up.
    host.view.locator(".take").first.locator(".seg").nth(1).locator(".w", has_text="take").click()
    host.in_view("(() => { const a = document.querySelector('.take audio'); a.pause(); a.currentTime = 3.7; })()")
    host.wait_view("document.querySelector('.w.on') && document.querySelector('.w.on').textContent === 'take'")
    assert host.in_view("document.querySelector('.seg.on').dataset.i") == "1"
    host.page.locator("#view").screenshot(path=str(shot))
    if SCREENSHOT:
        shutil.copyfile(shot, SCREENSHOT)
    assert shot.stat().st_size > 10_000

    # Host requests get answers: ping, teardown (after which the view stops playing); unknown methods an error.
    ids = host.call(
        "[host.request('ping', {}), host.request('ui/no-such-method', {}), host.request('ui/resource-teardown', {reason: 'test'})]"
    )
    host.page.wait_for_function("(ids) => ids.every((id) => host.responses[id])", arg=ids, timeout=5_000)
    ping, unknown, teardown = (host.call("(id) => host.responses[id]", i) for i in ids)
    assert ping == {"jsonrpc": "2.0", "id": ids[0], "result": {}}
    assert unknown["error"]["code"] == -32601 and "result" not in unknown
    assert teardown == {"jsonrpc": "2.0", "id": ids[2], "result": {}}
    assert host.in_view("[...document.querySelectorAll('audio')].every((a) => a.paused)")
    assert_only_loopback_audio(host)


def test_transcript_follows_playback_and_seeks_on_click(open_host: Any, server: LoopbackServer) -> None:
    host = open_host()
    host.call(
        "(r) => host.toolResult(r)", job("job-t", "completed", [wav_file(server, "take1.wav")], output=TRANSCRIPT)
    )
    host.wait_view("document.querySelector('.take audio') && document.querySelector('.take audio').readyState >= 1")
    audio_time = "document.querySelector('.take audio').currentTime"

    # Clicking a segment (its time stamp, not one of its words) seeks to its start and plays from there.
    host.view.locator(".seg").nth(2).locator(".ts").click()
    assert host.in_view(audio_time) == pytest.approx(5.0, abs=0.6)
    host.wait_view("document.querySelector('.seg.on') && document.querySelector('.seg.on').dataset.i === '2'")

    # As playback passes the next segment's start, the highlight moves on with it.
    host.in_view("(() => { const a = document.querySelector('.take audio'); a.currentTime = 7.6; return a.play(); })()")
    host.wait_view(
        "document.querySelector('.seg.on') && document.querySelector('.seg.on').dataset.i === '3'", timeout=8_000
    )
    host.wait_view("document.querySelector('.w.on') !== null")
    host.in_view("document.querySelector('.take audio').pause()")

    # Clicking a word seeks to the word.
    host.view.locator(".w", has_text="studio.").click()
    assert host.in_view(audio_time) == pytest.approx(1.5, abs=0.6)
    host.in_view("document.querySelector('.take audio').pause()")

    # Keyboard: the card takes focus; arrows seek ±5 s, space toggles play.
    card = host.view.locator(".take").first
    host.in_view("document.querySelector('.take audio').currentTime = 2")
    card.focus()
    card.press("ArrowRight")
    assert host.in_view(audio_time) == pytest.approx(7.0, abs=0.3)
    card.press("ArrowLeft")
    assert host.in_view(audio_time) == pytest.approx(2.0, abs=0.3)
    assert host.in_view("document.querySelector('.take audio').paused")
    card.press(" ")
    host.wait_view("document.querySelector('.take').classList.contains('playing')")
    card.press(" ")
    host.wait_view("document.querySelector('.take audio').paused")
    # Tabbing moves through real controls, each with a visible focus ring.
    host.page.keyboard.press("Tab")
    focused = host.in_view(
        "(() => { const el = document.activeElement, st = getComputedStyle(el);"
        " return [el.tagName, el.getAttribute('aria-label'), st.outlineStyle, parseFloat(st.outlineWidth)]; })()"
    )
    assert focused == ["BUTTON", "Save take1.wav", "solid", 2]
    # The play button is a real button with a label.
    play = card.get_by_role("button", name=re.compile(r"^Play take1\.wav"))
    play.click()
    card.get_by_role("button", name=re.compile(r"^Pause take1\.wav")).wait_for(timeout=5_000)
    assert not host.in_view("document.querySelector('.take audio').paused")
    assert_only_loopback_audio(host)


def test_transcription_plays_the_input_audio(open_host: Any, server: LoopbackServer) -> None:
    """A speech-to-text result has no output file: the transcript is synced to the audio the tool was given."""
    host = open_host()
    host.call("(a) => host.toolInput(a)", {"audio_url": server.audio_url("take1.wav"), "diarize": True})
    result = job("job-stt", "completed", [], output=TRANSCRIPT, tool="fal_whisper")
    host.call("(r) => host.toolResult(r)", result)
    card = host.view.locator(".take")
    card.wait_for()
    assert host.in_view("document.querySelector('.take audio').src") == server.audio_url("take1.wav")
    assert card.locator(".title").inner_text() == "Input audio"
    assert card.locator(".seg").count() == 4
    host.wait_view("document.querySelector('.take audio').readyState >= 1")
    card.locator(".seg").nth(3).locator(".ts").click()
    assert host.in_view("document.querySelector('.take audio').currentTime") == pytest.approx(8.0, abs=0.6)


def test_cancelled_tool_call_is_said(open_host: Any) -> None:
    host = open_host()
    host.call("host.notify('ui/notifications/tool-cancelled', {reason: 'user stopped it'})")
    host.wait_view("document.getElementById('empty').textContent.includes('user stopped it')")


def test_job_handle_is_polled_with_get_job_until_done(open_host: Any, server: LoopbackServer) -> None:
    host = open_host()
    still_running = job("job-r", "running", logs=["Loading model", "Generating audio 40%"])
    done = job("job-r", "completed", [wav_file(server, "job.wav", peaks=peaks(100, 2.0))], duration_s=41.5)
    host.call("(r) => host.toolReplies.push({result: r[0]}, {result: r[1]})", [still_running, done])
    host.call("host.hold = true")
    host.call("(r) => host.toolResult(r)", job("job-r", "queued", queue_position=3))

    status = host.view.locator(".card.status")
    status.wait_for()
    assert "Queued" in status.inner_text() and "Position 3 in queue" in status.inner_text()
    host.page.wait_for_function("host.held.length === 1", timeout=5_000)
    host.call("host.release(); host.hold = true")
    host.wait_view("document.querySelector('.card.status .log') !== null")
    status_text = status.inner_text()
    assert "Running" in status_text and "Generating audio 40%" in status_text
    host.page.wait_for_function("host.held.length === 1", timeout=5_000)
    host.call("host.release()")
    host.view.locator(".take audio").wait_for(state="attached", timeout=10_000)

    calls = host.received("tools/call")
    assert len(calls) == 2
    for call in calls:
        assert call["params"] == {"name": "get_job", "arguments": {"job_id": "job-r", "wait_s": 20}}
    assert host.in_view("document.querySelector('.take audio').src") == server.audio_url("job.wav")
    assert host.view.locator(".card.status").count() == 0
    assert host.view.locator(".take").count() == 1
    meta = host.view.locator(".take .meta").inner_text()
    assert "made in 41.5 s" in meta
    assert host.view.locator(".take .cost").inner_text() == "$0.045"
    assert_only_loopback_audio(host)


def test_refresh_errors_are_shown_with_retry(open_host: Any) -> None:
    host = open_host()
    host.call("host.toolDelayMs = 10")
    host.call(
        "host.toolReplies.push({error: 'server went away'}, {error: 'server went away'}, {error: 'server went away'})"
    )
    host.call("(r) => host.toolResult(r)", job("job-e", "running"))
    retry = host.view.get_by_role("button", name="Retry")
    retry.wait_for(timeout=15_000)
    assert "Could not refresh: server went away" in host.view.locator(".card.status").inner_text()
    host.call("(r) => host.toolReplies.push({result: r})", job("job-e", "failed", error="Voice 'Zed' not found"))
    retry.click()
    alert = host.view.locator(".card.error [role=alert]")
    alert.wait_for()
    assert alert.inner_text() == "Voice 'Zed' not found"
    assert len(host.received("tools/call")) == 4


def test_file_url_falls_back_to_resources_read(open_host: Any, server: LoopbackServer) -> None:
    host = open_host()
    data = AUDIO["job.wav"]
    uri = "files://job-f/job.wav"
    resource = {
        "contents": [{"uri": uri, "mimeType": "application/octet-stream", "blob": base64.b64encode(data).decode()}]
    }
    host.call("(r) => { host.resources[r[0]] = r[1]; }", [uri, resource])
    local = wav_file(
        server, "job.wav", url="file:///home/me/mcp-audio/job.wav", resource=uri, path="/home/me/mcp-audio/job.wav"
    )
    host.call("(r) => host.toolResult(r)", job("job-f", "completed", [local]))
    host.wait_view("document.querySelector('.take audio') && document.querySelector('.take audio').readyState >= 1")
    assert host.received("resources/read")[0]["params"] == {"uri": uri}
    assert host.in_view("document.querySelector('.take audio').src").startswith("data:audio/wav;base64,")
    assert host.in_view("document.querySelector('.take audio').duration") == pytest.approx(3.0, abs=0.05)
    host.wait_view("document.querySelector('.take').dataset.wave === 'decoded'")
    assert not any(u.startswith("file:") for u in host.requests)
    assert_only_loopback_audio(host)


def test_audio_the_host_blocks_is_read_through_the_host(open_host: Any, server: LoopbackServer) -> None:
    host = open_host(view="/player.html?strict")  # the CSP allows no media origin: the http URL cannot load
    uri = "files://job-s/take2.wav"
    blob = base64.b64encode(AUDIO["take2.wav"]).decode()
    host.call(
        "(r) => { host.resources[r[0]] = r[1]; }",
        [uri, {"contents": [{"uri": uri, "mimeType": "audio/wav", "blob": blob}]}],
    )
    host.call("(r) => host.toolResult(r)", job("job-s", "completed", [wav_file(server, "take2.wav", resource=uri)]))
    host.wait_view("document.querySelector('.take audio') && document.querySelector('.take audio').readyState >= 1")
    assert host.in_view("document.querySelector('.take audio').src").startswith("data:audio/wav;base64,")
    assert host.received("resources/read")[0]["params"] == {"uri": uri}
    assert host.in_view("document.querySelector('.take audio').duration") == pytest.approx(8.0, abs=0.05)
    assert host.view.locator(".take .err").count() == 0

    # Saving goes through the host too (sandboxed views cannot download).
    host.view.get_by_role("button", name="Save take2.wav").click()
    host.page.wait_for_function("host.received('ui/download-file').length === 1", timeout=5_000)
    contents = host.received("ui/download-file")[0]["params"]["contents"]
    assert contents == [{"type": "resource_link", "uri": uri, "name": "take2.wav", "mimeType": "audio/wav"}]
    assert_only_loopback_audio(host)


def test_failed_and_plain_error_results_read_clearly(open_host: Any) -> None:
    host = open_host()
    host.call(
        "(r) => host.toolResult(r)",
        job("job-x", "failed", error="Upstream rejected the request: text too long (max 5000)"),
    )
    host.call("host.toolResult({content: [{type: 'text', text: 'FAL_KEY is not set'}], isError: true})")
    host.wait_view("document.querySelectorAll('.card.error').length === 2")
    alerts = host.view.locator(".card.error [role=alert]").all_inner_texts()
    assert alerts == ["Upstream rejected the request: text too long (max 5000)", "FAL_KEY is not set"]


def luminance(color: str) -> float:
    r, g, b = (int(x) for x in re.findall(r"\d+", color)[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


def test_follows_host_theme_and_style_variables(open_host: Any, server: LoopbackServer, tmp_path: Path) -> None:
    host = open_host({"theme": "dark", "displayMode": "inline"})
    host.call(
        "(r) => host.toolResult(r)",
        job("job-d", "completed", [wav_file(server, "take2.wav", peaks=peaks(300, 0.4))], output=TRANSCRIPT),
    )
    host.wait_view("document.querySelectorAll('.take').length === 1")
    assert host.in_view("document.documentElement.dataset.theme") == "dark"
    assert luminance(host.in_view("getComputedStyle(document.body).backgroundColor")) < 0.2
    assert luminance(host.in_view("getComputedStyle(document.body).color")) > 0.8
    host.page.locator("#view").screenshot(path=str(tmp_path / "player-dark.png"))
    if SCREENSHOT:
        shutil.copyfile(tmp_path / "player-dark.png", re.sub(r"(\.png)?$", "-dark.png", SCREENSHOT, count=1))

    variables = {"--color-background-primary": "rgb(250, 244, 236)", "--color-text-primary": "rgb(40, 20, 10)"}
    host.call("(c) => host.contextChanged(c)", {"theme": "light", "styles": {"variables": variables}})
    host.wait_view("document.documentElement.dataset.theme === 'light'")
    assert host.in_view("getComputedStyle(document.body).backgroundColor") == "rgb(250, 244, 236)"
    assert host.in_view("getComputedStyle(document.body).color") == "rgb(40, 20, 10)"


def test_without_host_theme_follows_prefers_color_scheme(browser: Any, server: LoopbackServer) -> None:
    context = browser.new_context(color_scheme="dark")
    try:
        page = context.new_page()
        page.goto(server.url + "/host.html?context=" + json.dumps({}))
        page.wait_for_function("window.host && window.host.initialized", timeout=10_000)
        frame = next(f for f in page.frames if f.url.endswith("/player.html"))
        assert frame.evaluate("document.documentElement.dataset.theme") is None
        assert luminance(frame.evaluate("getComputedStyle(document.body).backgroundColor")) < 0.2
    finally:
        context.close()
