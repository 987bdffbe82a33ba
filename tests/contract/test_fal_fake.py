"""The fal fake itself, exercised over real loopback HTTP (httpx, httpx-sse, fal-client)."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import time
import wave
from collections.abc import Iterator
from typing import Any

import fal_client
import fal_client.client
import httpx
import pytest
from httpx_sse import connect_sse

from mcp_audio.providers.base import FileBytes
from mcp_audio.providers.fal import FalProvider
from mcp_audio.sandbox import fal_contract
from mcp_audio.sandbox.fal_queue import FakeFal
from tests.helpers import FAL_KEY as KEY
from tests.http_harness import TRUST

TTS = "fal-ai/qwen-3-tts/text-to-speech/1.7b"


@pytest.fixture
def fake(fake_fal: FakeFal) -> Iterator[FakeFal]:
    fake_fal.keepalive_s = 0.1
    try:
        yield fake_fal
    finally:
        fake_fal.keepalive_s = 0.2


@pytest.fixture
def client(fake: FakeFal) -> Iterator[httpx.Client]:
    assert fake.base_url is not None
    headers = {"Authorization": f"Key {KEY}"}
    with httpx.Client(base_url=fake.base_url, headers=headers, timeout=5.0, verify=TRUST) as client:
        yield client


def submit(client: httpx.Client, endpoint: str = TTS, **payload: Any) -> dict[str, Any]:
    response = client.post(f"/{endpoint}", json=payload or {"text": "hi"})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_completed(client: httpx.Client, status_url: str, timeout: float = 3.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get(status_url)
        if response.status_code == 200:
            return response
        time.sleep(0.03)
    raise AssertionError("job did not complete")


def test_submit_poll_result_lifecycle(fake: FakeFal, client: httpx.Client) -> None:
    fake.script(TTS, queue_s=0.6, run_s=0.6, logs=["loading", "speaking"], queue_positions=2)
    response = client.post(f"/{TTS}", json={"text": "hello"}, headers={"X-Fal-Request-Timeout": "30"})
    sub = response.json()
    rid = sub["request_id"]
    root = f"{fake.base_url}/fal-ai/qwen-3-tts/requests/{rid}"
    assert sub["status"] == "IN_QUEUE" and sub["queue_position"] == 2
    assert (sub["status_url"], sub["response_url"], sub["cancel_url"]) == (f"{root}/status", root, f"{root}/cancel")
    assert client.get(sub["response_url"]).json() == {"detail": "Request is still in progress"}

    seen: list[tuple[int, str, Any]] = []
    while not seen or seen[-1][1] != "COMPLETED":
        r = client.get(sub["status_url"], params={"logs": "1"})
        seen.append((r.status_code, r.json()["status"], r.json().get("queue_position")))
        time.sleep(0.03)
    assert {(code, state) for code, state, _ in seen} == {(202, "IN_QUEUE"), (202, "IN_PROGRESS"), (200, "COMPLETED")}
    positions = [pos for _, state, pos in seen if state == "IN_QUEUE"]
    assert positions == sorted(positions, reverse=True) and positions[0] == 2 and 0 in positions

    done = client.get(sub["status_url"], params={"logs": "true"}).json()
    assert [log["message"] for log in done["logs"]] == ["loading", "speaking"]
    assert {"level", "source", "timestamp"} <= done["logs"][0].keys()
    assert done["metrics"]["inference_time"] == pytest.approx(0.6)
    assert "error" not in done
    assert client.get(sub["status_url"]).json()["logs"] is None  # logs only on request

    audio = client.get(sub["response_url"]).json()["audio"]
    assert audio["content_type"] == "audio/wav"
    download = httpx.get(audio["url"])  # no auth needed for files
    assert download.headers["content-type"].startswith("audio/wav")
    assert len(download.content) == audio["file_size"]
    with wave.open(io.BytesIO(download.content)) as w:
        assert w.getnframes() > 0

    kinds = [r.kind for r in fake.requests_for(rid)]
    assert kinds[0] == "submit" and {"status", "result", "file"} <= set(kinds)
    first = fake.requests_for(rid)[0]
    assert first.headers["x-fal-request-timeout"] == "30" and first.json == {"text": "hello"}
    assert fake.jobs[rid].input == {"text": "hello"} and fake.jobs[rid].state == "COMPLETED"


def test_sse_stream_runs_to_completion_and_closes(fake: FakeFal, client: httpx.Client) -> None:
    fake.script(TTS, queue_s=0.2, run_s=0.3, logs=["a", "b"])
    sub = submit(client)
    with connect_sse(client, "GET", sub["status_url"] + "/stream", params={"logs": "1"}) as es:
        assert es.response.headers["content-type"].startswith("text/event-stream")
        events = [sse.json() for sse in es.iter_sse()]  # ends only when the server closes
    states = [e["status"] for e in events]
    assert states[0] == "IN_QUEUE" and states[-1] == "COMPLETED" and "IN_PROGRESS" in states
    assert states.count("COMPLETED") == 1
    assert [log["message"] for log in events[-1]["logs"]] == ["a", "b"]
    # each event differs from the previous one: the stream reports changes only
    assert all(a != b for a, b in itertools.pairwise(events))


def test_sse_stream_sends_keepalive_comments(fake: FakeFal, client: httpx.Client) -> None:
    fake.script(TTS, run_s=0.5)  # keepalive_s is 0.1, nothing changes for 0.5 s
    sub = submit(client)
    with client.stream("GET", sub["status_url"] + "/stream") as response:
        text = "".join(response.iter_text())
    assert text.count(": ping\n\n") >= 2
    data = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    assert [d["status"] for d in data] == ["IN_PROGRESS", "COMPLETED"]


def test_break_stream_after_drops_connection_once(fake: FakeFal, client: httpx.Client) -> None:
    fake.script(TTS, queue_s=0.3, run_s=0.1, queue_positions=3)
    sub = submit(client)
    fake.break_stream_after(2)
    received: list[str] = []
    stream = client.stream("GET", sub["status_url"] + "/stream")
    with pytest.raises(httpx.RemoteProtocolError), stream as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                received.append(json.loads(line[6:])["status"])
    assert received == ["IN_QUEUE", "IN_QUEUE"]
    with connect_sse(client, "GET", sub["status_url"] + "/stream") as es:  # one-shot
        assert [sse.json()["status"] for sse in es.iter_sse()][-1] == "COMPLETED"


def test_cancel_codes(fake: FakeFal, client: httpx.Client) -> None:
    fake.script(TTS, queue_s=5.0)
    sub = submit(client)
    r = client.put(sub["cancel_url"])
    assert (r.status_code, r.json()) == (202, {"status": "CANCELLATION_REQUESTED"})
    status = client.get(sub["status_url"])
    assert status.status_code == 200 and status.json()["error_type"] == "client_cancelled"
    assert client.get(sub["response_url"]).status_code == 499
    r = client.put(sub["cancel_url"])
    assert (r.status_code, r.json()) == (400, {"status": "ALREADY_COMPLETED"})
    r = client.put(sub["cancel_url"].replace(sub["request_id"], "no-such-id"))
    assert (r.status_code, r.json()) == (404, {"status": "NOT_FOUND"})
    assert fake.jobs[sub["request_id"]].cancelled


def test_auth_is_required_except_for_files(fake: FakeFal, client: httpx.Client, request: pytest.FixtureRequest) -> None:
    sub = submit(client)
    anonymous = httpx.Client(base_url=str(client.base_url))
    request.addfinalizer(anonymous.close)
    for method, url in [
        ("POST", f"/{TTS}"),
        ("GET", sub["status_url"]),
        ("GET", sub["response_url"]),
        ("PUT", sub["cancel_url"]),
        ("POST", "/storage/auth/token?storage_type=fal-cdn-v3"),
    ]:
        r = anonymous.request(method, url, json={})
        assert r.status_code == 401 and "detail" in r.json(), (method, url)
    wrong = anonymous.post(f"/{TTS}", json={}, headers={"Authorization": "Key nope"})
    assert wrong.status_code == 401
    url = client.get(sub["response_url"]).json()["audio"]["url"]
    assert anonymous.get(url).status_code == 200
    assert anonymous.get("/files/missing.wav").status_code == 404
    assert len(fake.jobs) == 1  # rejected submits create no job


def test_injected_failures_and_delays(fake: FakeFal, client: httpx.Client) -> None:
    fake.inject("submit", 429, headers={"Retry-After": "1"}, body={"detail": "Rate limited"})
    r = client.post(f"/{TTS}", json={"text": "hi"})
    assert (r.status_code, r.headers["retry-after"], r.json()) == (429, "1", {"detail": "Rate limited"})
    assert fake.jobs == {}
    sub = submit(client)  # times=1: the next one goes through

    fake.inject(
        "status",
        503,
        times=2,
        headers={"X-Fal-Error-Type": "runner_connection_error"},
        body={"detail": "down", "error_type": "runner_connection_error"},
    )
    codes = [client.get(sub["status_url"]).status_code for _ in range(3)]
    assert codes == [503, 503, 200]

    fake.inject("result", 0, delay_s=0.3)
    start = time.monotonic()
    assert client.get(sub["response_url"]).status_code == 200
    assert time.monotonic() - start >= 0.3
    with pytest.raises(ValueError):
        fake.inject("bogus", 500)


def test_scripted_model_errors(fake: FakeFal, client: httpx.Client) -> None:
    invalid = {"detail": [{"loc": ["body", "text"], "msg": "too long", "type": "value_error"}]}
    fake.script(TTS, error=(422, invalid))
    fake.script("fal-ai/whisper", run_s=0.05, error=(500, {"detail": "Internal error", "error_type": "internal_error"}))
    bad = submit(client)
    status = wait_completed(client, bad["status_url"]).json()
    assert status["status"] == "COMPLETED" and status["error"] == "too long"
    r = client.get(bad["response_url"])
    assert (r.status_code, r.json()) == (422, invalid)

    crashed = submit(client, "fal-ai/whisper", audio_url="http://x/a.wav")
    status = wait_completed(client, crashed["status_url"]).json()
    assert (status["error"], status["error_type"]) == ("Internal error", "internal_error")
    r = client.get(crashed["response_url"])
    assert r.status_code == 500 and r.headers["x-fal-error-type"] == "internal_error"


def test_request_timeout_header_expires_queued_job(fake: FakeFal, client: httpx.Client) -> None:
    fake.script(TTS, queue_s=5.0)
    r = client.post(f"/{TTS}", json={"text": "hi"}, headers={"X-Fal-Request-Timeout": "1"})
    sub = r.json()
    assert client.get(sub["status_url"]).json()["status"] == "IN_QUEUE"
    assert wait_completed(client, sub["status_url"]).json()["error_type"] == "request_timeout"
    result = client.get(sub["response_url"])
    assert result.status_code == 504 and result.headers["x-fal-request-timeout-type"] == "user"


def test_routing_and_url_prefixes(fake: FakeFal, client: httpx.Client) -> None:
    sub = submit(client)
    rid = sub["request_id"]
    # A POST to a queue path must not be mistaken for a submit of endpoint ".../requests/..."
    r = client.post(f"/fal-ai/qwen-3-tts/requests/{rid}/status", json={})
    assert r.status_code == 405 and list(fake.jobs) == [rid]
    # The job only exists under its own owner/alias prefix
    assert client.get(f"/fal-ai/whisper/requests/{rid}/status").status_code == 404
    assert client.get(f"/fal-ai/qwen-3-tts/requests/{rid}/status").status_code == 200
    missing = client.get("/fal-ai/qwen-3-tts/requests/nope/status")
    assert (missing.status_code, missing.json()) == (404, {"detail": "Request not found"})
    fake.script("workflows/me/my-flow/step")  # not in fal's schemas: only reachable when scripted
    wf = submit(client, "workflows/me/my-flow/step")
    assert f"/workflows/me/my-flow/requests/{wf['request_id']}/status" in wf["status_url"]


def test_an_endpoint_fal_does_not_have_is_a_404(fake: FakeFal, client: httpx.Client) -> None:
    for path in ("/fal-ai/no-such-model", "/run/fal-ai/no-such-model", "/fal-ai/elevenlabs/tts/eleven-v4"):
        r = client.post(path, json={"text": "hi"})
        assert r.status_code == 404, path
        assert "not found" in r.json()["detail"]
    assert fake.jobs == {}
    assert client.post("/CASSETTEAI/music-generator", json={"prompt": "x", "duration": 10}).status_code == 200


def test_default_outputs_follow_fals_output_schemas(fake: FakeFal, client: httpx.Client) -> None:
    wizper = client.get(submit(client, "fal-ai/wizper", audio_url="u")["response_url"]).json()
    assert wizper["languages"] == ["en"] and "inferred_languages" not in wizper
    music = client.get(submit(client, "CassetteAI/music-generator", prompt="lofi", duration=10)["response_url"]).json()
    assert set(music) == {"audio_file", "sandbox"}  # the placeholder says so
    assert httpx.get(music["audio_file"]["url"]).content[:4] == b"RIFF"
    dubbed = client.get(submit(client, "fal-ai/elevenlabs/dubbing", video_url="u", target_lang="es")["response_url"])
    assert dubbed.json()["video"]["content_type"] == "video/mp4"
    assert fal_contract.output_problems("fal-ai/wizper", wizper) == []


def test_outputs_default_scripted_and_put_file(fake: FakeFal, client: httpx.Client) -> None:
    fake.script("my/model", output=lambda inp: {"echo": inp["text"].upper()})
    r = client.get(submit(client, "my/model", text="abc")["response_url"])
    assert r.json() == {"echo": "ABC"}

    whisper = client.get(submit(client, "fal-ai/whisper", audio_url="u")["response_url"]).json()
    assert whisper["text"] and whisper["inferred_languages"] == ["en"]
    assert whisper["chunks"][0]["timestamp"] == [0.0, 1.5] and "speaker" in whisper["chunks"][0]
    clone = "fal-ai/qwen-3-tts/clone-voice/1.7b"
    emb = client.get(submit(client, clone, audio_url="u")["response_url"]).json()
    assert emb["speaker_embedding"]["file_name"] == "speaker_embedding.safetensors"
    sfx = client.get(submit(client, "fal-ai/elevenlabs/sound-effects/v2", text="boom")["response_url"])
    mp3 = httpx.get(sfx.json()["audio"]["url"])
    assert mp3.headers["content-type"] == "audio/mpeg" and mp3.content[:3] == b"ID3"  # tagged MP3

    url = fake.put_file("ref/voice.wav", b"RIFFdata", "audio/wav")
    assert url == f"{fake.base_url}/files/ref/voice.wav"
    assert httpx.get(url).content == b"RIFFdata"


def test_fal_client_upload_round_trip(fake: FakeFal) -> None:
    """Our provider's uploads go through fal-client against the fake, with no fal-client globals changed."""
    url = fake.base_url
    assert url is not None
    provider = FalProvider(api_key=KEY, queue_url=url, rest_url=url, cdn_url=url)

    async def upload_twice() -> tuple[str, str]:
        try:
            direct = await provider.upload("x", FileBytes("one.wav", b"RIFF-one", "audio/wav", "one.wav"))
            # A failed CDN upload makes fal-client fall back to signed-URL storage; both work.
            fake.inject("upload", 500)
            fallback = await provider.upload("x", FileBytes("two.wav", b"RIFF-two", "audio/wav", "two.wav"))
        finally:
            await provider.aclose()
        return direct, fallback

    direct, fallback = asyncio.run(upload_twice())
    assert (fal_client.client.REST_URL, fal_client.client.CDN_URL) == ("https://rest.fal.ai", "https://v3.fal.media")
    for file_url, data in [(direct, b"RIFF-one"), (fallback, b"RIFF-two")]:
        assert file_url.startswith(f"{url}/files/")
        r = httpx.get(file_url)
        assert (r.content, r.headers["content-type"]) == (data, "audio/wav")
    token_req, upload_req = [r for r in fake.requests if r.kind in ("token", "upload")][:2]
    assert token_req.headers["authorization"] == f"Key {KEY}"
    assert upload_req.headers["authorization"].startswith("Bearer ")
    assert upload_req.headers["x-fal-file-name"] == "one.wav"
    assert [r.path for r in fake.requests if r.kind == "upload"][2:] == [
        "/storage/upload/initiate",
        "/storage/upload/put/" + fallback.split("/files/")[1],
    ]


def test_multipart_upload_checks_token_id_and_parts(fake: FakeFal, client: httpx.Client) -> None:
    token = client.post("/storage/auth/token?storage_type=fal-cdn-v3", json={}).json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    assert client.post("/files/upload/multipart", headers={"Authorization": "Bearer nope"}).status_code == 401
    created = client.post(
        "/files/upload/multipart", headers={**auth, "X-Fal-File-Name": "long.wav", "Content-Type": "audio/wav"}
    ).json()
    root = created["access_url"].removeprefix(fake.base_url or "")
    uid = created["uploadId"]
    etags = [
        client.put(f"{root}/multipart/{uid}/{n}", content=part, headers=auth).headers["etag"]
        for n, part in ((2, b"world"), (1, b"hello "))
    ]
    assert all(etags)
    gap = client.post(f"{root}/multipart/{uid}/complete", json={"parts": [{"partNumber": 1}]}, headers=auth)
    assert gap.status_code == 400
    parts = [{"partNumber": 1, "etag": etags[1]}, {"partNumber": 2, "etag": etags[0]}]
    done = client.post(f"{root}/multipart/{uid}/complete", json={"parts": parts}, headers=auth)
    assert done.status_code == 200
    stored = httpx.get(created["access_url"])
    assert stored.content == b"hello world" and stored.headers["content-type"] == "audio/wav"
    assert client.put(f"{root}/multipart/{uid}/3", content=b"late", headers=auth).status_code == 404
