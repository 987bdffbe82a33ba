"""A remote caller's own recording as a file input: `POST /uploads` answers an `upload://`
reference that only that caller can use; refusals say why."""

from __future__ import annotations

import httpx
import pytest

from mcp_audio.config import ServerSettings
from mcp_audio.sandbox.fal_queue import FakeFal
from tests.helpers import make_wav, text_of
from tests.http_harness import TRUST, add_token, http_server, mcp_client

pytestmark = pytest.mark.anyio


def _upload(url: str, body: bytes, token: str | None, **headers: str) -> httpx.Response:
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(url + "/uploads", content=body, headers=auth | headers, timeout=10, verify=TRUST)


async def test_an_upload_is_a_file_input_for_its_caller_only(settings: ServerSettings, fake_fal: FakeFal) -> None:
    alice, bob = add_token(settings, "alice"), add_token(settings, "bob")
    wav = make_wav(1.0)
    with http_server(settings) as served:
        stored = _upload(served.url, wav, alice, **{"Content-Type": "audio/wav"})
        assert stored.status_code == 201, stored.text
        answer = stored.json()
        assert answer["file"].startswith("upload://") and answer["bytes"] == len(wav)
        assert answer["content_type"] == "audio/wav"
        async with mcp_client(served.mcp, alice) as as_alice:
            used = await as_alice.call_tool("whisper_transcribe", {"audio_url": answer["file"]})
        async with mcp_client(served.mcp, bob) as as_bob:
            stolen = await as_bob.call_tool("whisper_transcribe", {"audio_url": answer["file"]})
            made_up = await as_bob.call_tool("whisper_transcribe", {"audio_url": "upload://" + "0" * 32})

        assert _upload(served.url, wav, None).status_code == 401
        assert _upload(served.url, wav, "mcpa_wrong").status_code == 401
        not_audio = _upload(served.url, b"<html>hello</html>", alice)
        assert not_audio.status_code == 415 and "not an audio or video file" in not_audio.json()["error"]
        assert _upload(served.url, wav, alice, Host="evil.example").status_code == 421
    assert not used.is_error, text_of(used)
    [sent] = [r for r in fake_fal.requests if r.kind == "upload"]  # only Alice's call reached fal
    assert sent.body == wav
    assert stolen.is_error and text_of(stolen).replace(answer["file"], "upload://" + "0" * 32) == text_of(made_up)
    assert "POST the file to /uploads again" in text_of(stolen)


async def test_an_upload_over_the_limit_is_refused(settings: ServerSettings) -> None:
    token = add_token(settings, "alice")
    with http_server(settings, extra_env={"MCP_AUDIO_MAX_UPLOAD_MB": "0.01"}) as served:
        big = _upload(served.url, make_wav(5.0), token)
    assert big.status_code == 413 and "MCP_AUDIO_MAX_UPLOAD_MB" in big.json()["error"]
    assert [path for path in (settings.data_dir / "uploads").rglob("*") if path.is_file()] == []  # nothing kept
