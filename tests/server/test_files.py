"""Files in and out: local recordings as inputs (inside allowed roots only), saved outputs."""

from __future__ import annotations

import base64
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp_types import AudioContent, ListRootsResult, ResourceLink, Root

from mcp_audio.config import Settings
from mcp_audio.core.errors import InvalidArguments
from mcp_audio.files.fetch import refused_text
from mcp_audio.files.inputs import read_local_file, sniff_content_type
from mcp_audio.sandbox._base import CUT
from mcp_audio.sandbox.fal_queue import FakeFal
from mcp_audio.sandbox.voice_api import FakeVoiceApi
from tests.helpers import make_flac, make_mp3, make_wav, server, text_of

pytestmark = pytest.mark.anyio


@pytest.fixture
def file_settings(settings: Settings, rec_dir: Path) -> Settings:
    return settings.model_copy(update={"allowed_dirs": str(rec_dir), "download": "always"})


def unmarked(settings: Settings) -> Settings:
    """Saved as the upstream sent it, byte for byte: no Content Credentials written (those are
    tested in test_provenance.py)."""
    return settings.model_copy(update={"provenance": "off"})


async def test_local_recording_is_uploaded_once_and_used_by_clone_and_transcribe(
    file_settings: Settings, fake_fal: FakeFal, rec_dir: Path
) -> None:
    recording = make_wav(2.0)
    (rec_dir / "me.wav").write_bytes(recording)
    async with Client(server(file_settings)) as client:
        clone = await client.call_tool(
            "qwen3_tts_clone_voice", {"audio_url": str(rec_dir / "me.wav"), "reference_text": "Hi.", "name": "me"}
        )
        transcript = await client.call_tool("whisper_transcribe", {"audio_url": "me.wav"})  # relative to the root
    assert not clone.is_error, text_of(clone)
    assert not transcript.is_error, text_of(transcript)
    uploads = [r for r in fake_fal.requests if r.kind == "upload"]
    assert len(uploads) == 1  # the same bytes are not uploaded twice
    assert uploads[0].body == recording
    assert uploads[0].headers["content-type"] == "audio/wav"
    submits = [r for r in fake_fal.requests if r.kind == "submit"]
    uploaded_url = submits[0].json["audio_url"]
    assert uploaded_url.startswith(fake_fal.base_url + "/files/")
    assert submits[1].json == {"audio_url": uploaded_url}
    stored = uploaded_url.removeprefix(fake_fal.base_url + "/files/")
    assert fake_fal.files[stored][0] == recording


@pytest.mark.parametrize(
    "make_path",
    [
        lambda root, outside: "../secret.wav",
        lambda root, outside: str(outside),
        lambda root, outside: "~/../../" + str(outside).lstrip("/"),
        lambda root, outside: "link.wav",
        lambda root, outside: "linked_dir/secret.wav",
    ],
    ids=["dot-dot", "absolute", "tilde-escape", "symlink-file", "symlink-dir"],
)
async def test_paths_outside_the_roots_are_refused_without_revealing_anything(
    file_settings: Settings, fake_fal: FakeFal, rec_dir: Path, make_path: Any
) -> None:
    outside = rec_dir.parent / "secret.wav"
    outside.write_bytes(make_wav())
    (rec_dir / "link.wav").symlink_to(outside)
    (rec_dir / "linked_dir").symlink_to(rec_dir.parent)
    value = make_path(rec_dir, outside)
    async with Client(server(file_settings)) as client:
        result = await client.call_tool("whisper_transcribe", {"audio_url": value})
        missing = await client.call_tool("whisper_transcribe", {"audio_url": "../no-such-file.wav"})
    assert result.is_error
    message = text_of(result)
    assert f"`audio_url`: '{value}' is outside the folders this server may read ({rec_dir.resolve()})" in message
    # The same words whether or not something exists out there.
    assert text_of(missing).replace("../no-such-file.wav", value) == message
    assert [r.kind for r in fake_fal.requests] == []


def test_missing_empty_oversized_and_non_audio_files(rec_dir: Path) -> None:
    (rec_dir / "empty.wav").write_bytes(b"")
    (rec_dir / "notes.mp3").write_text("just text pretending to be audio")
    (rec_dir / "big.wav").write_bytes(make_wav(1.0))
    roots = [rec_dir]
    with pytest.raises(InvalidArguments, match=re.escape("no file at 'gone.wav' (inside the allowed folders)")):
        read_local_file("audio_url", "gone.wav", roots, kind="audio", max_bytes=10**6)
    with pytest.raises(InvalidArguments, match=re.escape("'empty.wav' is empty")):
        read_local_file("audio_url", "empty.wav", roots, kind="audio", max_bytes=10**6)
    with pytest.raises(
        InvalidArguments, match=re.escape("'notes.mp3' is not a recognised audio or video format; an audio file")
    ):
        read_local_file("audio_url", "notes.mp3", roots, kind="audio", max_bytes=10**6)
    with pytest.raises(InvalidArguments, match=re.escape("'big.wav' is 0.0 MiB; this upstream takes at most 0 MiB")):
        read_local_file("audio_url", "big.wav", roots, kind="audio", max_bytes=1000)
    assert read_local_file("audio_url", "big.wav", roots, kind="audio", max_bytes=10**6).content_type == "audio/wav"


def test_content_type_comes_from_the_bytes() -> None:
    assert sniff_content_type(make_wav()[:64]) == "audio/wav"
    assert sniff_content_type(make_mp3()[:64]) == "audio/mpeg"
    assert sniff_content_type(make_flac()[:64]) == "audio/flac"
    assert sniff_content_type(b"ID3\x04\x00" + bytes(20)) == "audio/mpeg"
    assert sniff_content_type(b"\x00\x00\x00\x20ftypM4A " + bytes(20)) == "audio/mp4"
    assert sniff_content_type(b"%PDF-1.7 not audio") is None


async def test_client_roots_decide_what_may_be_read(settings: Settings, fake_fal: FakeFal, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "talk.wav").write_bytes(make_wav())
    (tmp_path / "private.wav").write_bytes(make_wav())

    async def list_roots(context: Any) -> ListRootsResult:
        return ListRootsResult(roots=[Root(uri=shared.as_uri(), name="shared")])

    # MCP_AUDIO_ALLOWED_DIRS would allow tmp_path, but the client's roots take precedence.
    allowed = settings.model_copy(update={"allowed_dirs": str(tmp_path)})
    async with Client(server(allowed), mode="legacy", list_roots_callback=list_roots) as client:
        inside = await client.call_tool("whisper_transcribe", {"audio_url": str(shared / "talk.wav")})
        outside = await client.call_tool("whisper_transcribe", {"audio_url": str(tmp_path / "private.wav")})
    assert not inside.is_error, text_of(inside)
    assert outside.is_error and "is outside the folders this server may read" in text_of(outside)


async def test_roots_are_asked_only_when_a_valid_call_names_a_local_path(
    settings: Settings, fake_fal: FakeFal, tmp_path: Path
) -> None:
    (tmp_path / "talk.wav").write_bytes(make_wav())
    asked: list[str] = []

    async def list_roots(context: Any) -> ListRootsResult:
        asked.append("roots/list")
        return ListRootsResult(roots=[Root(uri=tmp_path.as_uri(), name="shared")])

    async with Client(server(settings), mode="legacy", list_roots_callback=list_roots) as client:
        by_url = await client.call_tool("whisper_transcribe", {"audio_url": fake_fal.base_url + "/files/x.wav"})
        invalid = await client.call_tool("whisper_transcribe", {"audio_url": str(tmp_path / "talk.wav"), "bad": 1})
        speech = await client.call_tool("qwen3_tts", {"text": "Hello"})
        assert asked == [], (text_of(by_url), text_of(invalid), text_of(speech))
        local = await client.call_tool("whisper_transcribe", {"audio_url": str(tmp_path / "talk.wav")})
    assert invalid.is_error and not local.is_error, text_of(local)
    assert asked == ["roots/list"]


@pytest.mark.parametrize(
    ("data", "content_type", "name", "expected"),
    [
        (make_wav(1.5, 22050, 2), "audio/wav", "out.wav", {"duration_s": 1.5, "sample_rate": 22050, "channels": 2}),
        (make_mp3(38), "audio/mpeg", "out.mp3", {"sample_rate": 44100, "channels": 2}),
        (make_flac(2.0, 48000, 2), "audio/flac", "out.flac", {"duration_s": 2.0, "sample_rate": 48000, "channels": 2}),
    ],
    ids=["wav", "mp3", "flac"],
)
async def test_outputs_are_saved_with_hash_and_audio_properties(
    file_settings: Settings, fake_fal: FakeFal, data: bytes, content_type: str, name: str, expected: dict[str, Any]
) -> None:
    url = fake_fal.put_file(f"gen/{name}", data, content_type)
    fake_fal.script("fal-ai/lyria2", output={"audio": {"url": url, "content_type": content_type, "file_name": name}})
    async with Client(server(unmarked(file_settings))) as client:
        result = await client.call_tool("lyria2_music", {"prompt": "calm"})
        body = result.structured_content
        assert body is not None, text_of(result)
        [saved] = body["files"]
        blob = await client.read_resource(saved["resource"])
    path = Path(saved["path"])
    assert path.parent == file_settings.output_dir.resolve()
    assert path.name.endswith(f"-lyria2_music-{body['job_id'][:8]}{Path(name).suffix}")
    assert path.read_bytes() == data
    assert saved["url"] == url and saved["file_uri"] == path.as_uri()
    assert saved["file_size"] == len(data)
    import hashlib

    assert saved["sha256"] == hashlib.sha256(data).hexdigest()
    for key, value in expected.items():
        assert saved[key] == pytest.approx(value)
    if name.endswith(".mp3"):
        assert saved["duration_s"] == pytest.approx(38 * 1152 / 44100, abs=0.05)
    assert str(path) in text_of(result)
    links = [str(item.uri) for item in result.content if isinstance(item, ResourceLink)]
    assert links == [f"files://{body['job_id']}/{path.name}"]
    assert base64.b64decode(blob.contents[0].blob) == data  # type: ignore[union-attr]


async def test_an_interrupted_download_is_fetched_again_whole(file_settings: Settings, fake_fal: FakeFal) -> None:
    data = make_wav(3.0)
    url = fake_fal.put_file("gen/cut.wav", data, "audio/wav")
    fake_fal.script("fal-ai/lyria2", output={"audio": {"url": url, "content_type": "audio/wav"}})
    fake_fal.break_file_after(len(data) // 3)
    async with Client(server(unmarked(file_settings))) as client:
        result = await client.call_tool("lyria2_music", {"prompt": "calm"})
    [entry] = (result.structured_content or {})["files"]
    assert "download_error" not in entry, entry
    assert Path(entry["path"]).read_bytes() == data
    assert len(fake_fal.requests_of("file")) == 2
    assert [p.name for p in file_settings.output_dir.iterdir()] == [Path(entry["path"]).name]  # no .part left


async def test_a_download_that_keeps_breaking_leaves_no_file_under_the_final_name(
    file_settings: Settings, fake_fal: FakeFal
) -> None:
    data = make_wav(3.0)
    url = fake_fal.put_file("gen/cut.wav", data, "audio/wav")
    fake_fal.script("fal-ai/lyria2", output={"audio": {"url": url, "content_type": "audio/wav"}})
    fake_fal.inject("file", CUT, times=3)
    async with Client(server(file_settings)) as client:
        result = await client.call_tool("lyria2_music", {"prompt": "calm"})
    assert not result.is_error, text_of(result)  # the job succeeded; only the local copy failed
    body = result.structured_content
    assert body is not None
    [entry] = body["files"]
    assert entry["url"] == url and "path" not in entry
    assert entry["download_error"].startswith("RemoteProtocolError")
    assert len(fake_fal.requests_of("file")) == 3  # tried three times, then left at its URL
    assert "not saved locally" in text_of(result)
    leftovers = list(file_settings.output_dir.iterdir()) if file_settings.output_dir.exists() else []
    assert leftovers == []


async def test_small_outputs_can_be_inlined_as_audio_content(file_settings: Settings, fake_fal: FakeFal) -> None:
    data = make_wav(0.2)
    url = fake_fal.put_file("gen/tiny.wav", data, "audio/wav")
    fake_fal.script("fal-ai/lyria2", output={"audio": {"url": url, "content_type": "audio/wav"}})
    async with Client(server(unmarked(file_settings).model_copy(update={"inline_max_kb": 64}))) as client:
        result = await client.call_tool("lyria2_music", {"prompt": "tiny"})
    [audio] = [item for item in result.content if isinstance(item, AudioContent)]
    assert audio.mime_type == "audio/wav" and base64.b64decode(audio.data) == data


async def test_http_transport_does_not_download_by_default(settings: Settings, fake_fal: FakeFal) -> None:
    over_http = settings.model_copy(update={"download": None})
    assert over_http.downloads_for("http") is False and over_http.downloads_for("stdio") is True
    async with Client(server(over_http, transport="http")) as client:
        result = await client.call_tool("lyria2_music", {"prompt": "calm"})
    assert result.structured_content is not None
    assert "path" not in result.structured_content["files"][0]
    assert "file" not in [r.kind for r in fake_fal.requests]
    # Nothing local in the result: no path, file URI or files:// resource of a copy that was not made.
    [entry] = result.structured_content["files"]
    assert set(entry) == {"url", "content_type", "file_name", "file_size"}
    assert entry["url"].startswith(fake_fal.base_url + "/files/")


def test_recording_length_limits_are_checked_before_upload(rec_dir: Path) -> None:
    (rec_dir / "short.wav").write_bytes(make_wav(3.0))
    with pytest.raises(InvalidArguments, match=re.escape("'short.wav' is 3.0 s long; this input needs at least 15 s.")):
        read_local_file(
            "reference_audio_url", "short.wav", [rec_dir], kind="audio", max_bytes=10**7, duration_range=(15, None)
        )
    with pytest.raises(InvalidArguments, match=re.escape("is 3.0 s long; this input needs 10-90 s.")):
        read_local_file("audio", "short.wav", [rec_dir], kind="audio", max_bytes=10**7, duration_range=(10, 90))
    ok = read_local_file("audio", "short.wav", [rec_dir], kind="audio", max_bytes=10**7, duration_range=(1, 5))
    assert ok.content_type == "audio/wav"


async def test_outputs_that_are_not_what_they_claim_or_too_large_are_not_saved(
    file_settings: Settings, fake_fal: FakeFal
) -> None:
    page = fake_fal.put_file("gen/fake.wav", b"<html><body>Service unavailable</body></html>", "audio/wav")
    big = fake_fal.put_file("gen/big.wav", make_wav(40.0), "audio/wav")  # ~1.2 MB
    fake_fal.script("fal-ai/lyria2", output={"audio": {"url": page, "content_type": "audio/wav"}})
    fake_fal.script("fal-ai/yue", output={"audio": {"url": big, "content_type": "audio/wav"}})
    capped = file_settings.model_copy(update={"max_download_mb": 1})
    async with Client(server(capped)) as client:
        html = await client.call_tool("lyria2_music", {"prompt": "calm"})
        large = await client.call_tool("yue_song", {"lyrics": "[verse]\nla la\n[chorus]\nla", "genres": "pop"})
    [entry] = (html.structured_content or {})["files"]
    assert entry["download_error"] == (
        "the file is declared audio/wav but its bytes are not audio or video (it starts b'<html><body>Serv')"
    )
    assert "path" not in entry and entry["url"] == page
    [entry] = (large.structured_content or {})["files"]
    assert entry["download_error"] == "the file is over 1 MB (MCP_AUDIO_MAX_DOWNLOAD_MB)"
    leftovers = list(capped.output_dir.iterdir()) if capped.output_dir.exists() else []
    assert leftovers == []


async def test_downloads_a_killed_process_left_behind_are_removed_at_start(
    file_settings: Settings, fake_fal: FakeFal
) -> None:
    folder = file_settings.output_dir
    folder.mkdir(parents=True)
    stale, live = folder / ".old-lyria2.wav.part", folder / ".new-lyria2.wav.part"
    stale.write_bytes(b"half")
    live.write_bytes(b"being written")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    async with Client(server(file_settings)) as client:
        await client.list_tools()
    assert not stale.exists() and live.exists()  # another process may still be writing the fresh one


async def test_output_urls_are_fetched_only_from_https_or_configured_upstream_hosts(
    file_settings: Settings, fake_fal: FakeFal, fake_voice: FakeVoiceApi
) -> None:
    elsewhere = fake_voice.put_file("gen/other.wav", make_wav(0.5), "audio/wav")  # loopback, not a fal host
    fake_fal.script("fal-ai/lyria2", output={"audio": {"url": elsewhere, "content_type": "audio/wav"}})
    fake_fal.script("fal-ai/yue", output={"audio": {"url": "https://localhost:9/x.wav", "content_type": "audio/wav"}})
    async with Client(server(file_settings)) as client:
        plain = await client.call_tool("lyria2_music", {"prompt": "calm"})
        private = await client.call_tool("yue_song", {"lyrics": "[verse]\nla la\n[chorus]\nla", "genres": "pop"})
    [entry] = (plain.structured_content or {})["files"]
    assert entry["download_error"] == refused_text(elsewhere)
    [entry] = (private.structured_content or {})["files"]
    assert entry["download_error"] == refused_text(
        "https://localhost:9/x.wav"
    )  # the one text: nothing about what is there
    assert fake_voice.requests_of("file") == []  # nothing was fetched from the other host


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("rec\x00.wav", "`audio_url`: contains a NUL character; give a file path, an https URL or a data: URI."),
        (
            "a" * 5000,
            "`audio_url`: is 5000 characters; a path or URL has at most 4096 (send file content as a data: URI).",
        ),
        ("x" * 300 + "/" + "y" * 300 + ".wav", "could not be read (File name too long)."),
    ],
    ids=["nul", "over-long", "name-too-long"],
)
async def test_hostile_file_references_get_a_clear_error(
    file_settings: Settings, fake_fal: FakeFal, value: str, expected: str
) -> None:
    async with Client(server(file_settings)) as client:
        result = await client.call_tool("whisper_transcribe", {"audio_url": value})
    assert result.is_error
    assert text_of(result).startswith("Error executing tool whisper_transcribe: `audio_url`: ")
    assert expected in text_of(result)
    assert fake_fal.requests == []


async def test_an_earlier_fal_output_is_passed_to_fal_as_its_own_url(client: Client, fake_fal: FakeFal) -> None:
    """jobs:// naming a fal output, sent to a fal tool: fal's URL as it is, no download and upload again."""
    speech = await client.call_tool("qwen3_tts", {"text": "Hello there"})
    assert not speech.is_error and speech.structured_content is not None, text_of(speech)
    made = speech.structured_content["files"][0]["url"]
    job_id = speech.structured_content["job_id"]
    before = len(fake_fal.requests)
    result = await client.call_tool("whisper_transcribe", {"audio_url": f"jobs://{job_id}"})
    assert not result.is_error, text_of(result)
    later = fake_fal.requests[before:]
    assert [r.kind for r in later if r.kind in ("upload", "multipart", "file")] == []
    submit = next(r for r in later if r.kind == "submit")
    assert json.loads(submit.body)["audio_url"] == made


async def test_a_local_output_is_uploaded_to_fal(client: Client, fake_fal: FakeFal) -> None:
    """An output this server made itself (no fal URL) still reaches fal as an upload."""
    speech = await client.call_tool("qwen3_tts", {"text": "Hello there"})
    assert speech.structured_content is not None, text_of(speech)
    trimmed = await client.call_tool(
        "audio_trim", {"audio_url": f"jobs://{speech.structured_content['job_id']}", "end_s": 0.5}
    )
    assert not trimmed.is_error and trimmed.structured_content is not None, text_of(trimmed)
    before = len(fake_fal.requests)
    result = await client.call_tool(
        "whisper_transcribe", {"audio_url": f"jobs://{trimmed.structured_content['job_id']}"}
    )
    assert not result.is_error, text_of(result)
    assert "upload" in [r.kind for r in fake_fal.requests[before:]]
