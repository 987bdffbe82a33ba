"""fal tools held to fal's published schemas, through a real MCP client against the contract-checked fake."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from mcp import Client
from pydantic import SecretStr

from mcp_audio.providers.fal import FalProvider
from mcp_audio.sandbox import fal_contract
from mcp_audio.sandbox.fal_queue import FakeFal
from tests.contract.family_view import choice_view
from tests.helpers import make_wav, server, text_of

pytestmark = pytest.mark.anyio


def submitted(fake_fal: FakeFal) -> list[Any]:
    return [r for r in fake_fal.requests if r.kind in ("submit", "run")]


async def test_eleven_v3_takes_only_its_own_fields(client: Client, fake_fal: FakeFal) -> None:
    for name, value in [("speed", 1.1), ("similarity_boost", 0.5), ("style", 0.2), ("previous_text", "Hi")]:
        result = await client.call_tool(
            "elevenlabs_tts", {"text": "Hello", "model": "eleven-v3", "advanced": {name: value}}
        )
        assert result.is_error
        assert f"`{name}`: model 'eleven-v3' does not take it (only multilingual-v2, turbo-v2.5)." in text_of(result)
    assert submitted(fake_fal) == []
    ok = await client.call_tool(
        "elevenlabs_tts", {"text": "Hello", "model": "eleven-v3", "advanced": {"stability": 0.3, "language_code": "en"}}
    )
    assert not ok.is_error, text_of(ok)
    [sent] = submitted(fake_fal)
    assert sent.path == "/fal-ai/elevenlabs/tts/eleven-v3"
    assert sent.json == {"text": "Hello", "stability": 0.3, "language_code": "en"}
    v2 = await client.call_tool("elevenlabs_tts", {"text": "Hello", "advanced": {"speed": 1.1, "style": 0.2}})
    assert not v2.is_error, text_of(v2)
    assert submitted(fake_fal)[-1].json == {"text": "Hello", "speed": 1.1, "style": 0.2}


async def test_eleven_v3_text_over_fals_limit_is_refused_naming_text(client: Client, fake_fal: FakeFal) -> None:
    result = await client.call_tool("elevenlabs_tts", {"text": "a" * 5001, "model": "eleven-v3"})
    assert result.is_error
    assert "text" in text_of(result) and "5000" in text_of(result)


async def test_elevenlabs_tts_takes_any_voice_id(client: Client, fake_fal: FakeFal) -> None:
    result = await client.call_tool("elevenlabs_tts", {"text": "Hello", "voice": "21m00Tcm4TlvDq8ikWAM"})
    assert not result.is_error, text_of(result)
    assert submitted(fake_fal)[-1].json == {"text": "Hello", "voice": "21m00Tcm4TlvDq8ikWAM"}


async def test_scribe_v1_refuses_keyterms(client: Client, fake_fal: FakeFal) -> None:
    args = {"audio_url": "https://example.com/a.mp3", "keyterms": ["fal.ai"]}
    v1 = await client.call_tool("elevenlabs_transcribe", args | {"model": "scribe-v1"})
    assert v1.is_error
    assert "`keyterms`: model 'scribe-v1' does not take it (only scribe-v2)." in text_of(v1)
    v2 = await client.call_tool("elevenlabs_transcribe", args)
    assert not v2.is_error, text_of(v2)
    assert submitted(fake_fal)[-1].json == args


@pytest.mark.parametrize(
    ("tool", "choice"), [("wizper_transcribe", {}), ("transcribe", {"model": "wizper"})], ids=["member", "transcribe"]
)
async def test_wizper_auto_is_sent_as_null_and_fal_default_is_english(
    client: Client, fake_fal: FakeFal, tool: str, choice: dict[str, str]
) -> None:
    audio = {"audio_url": "https://example.com/a.mp3"}
    detected = await client.call_tool(tool, audio | choice | {"language": "auto"})
    assert not detected.is_error, text_of(detected)
    assert submitted(fake_fal)[-1].path == "/fal-ai/wizper"
    assert submitted(fake_fal)[-1].json == audio | {"language": None}
    french = await client.call_tool(tool, audio | choice | {"language": "fr"})
    assert not french.is_error, text_of(french)
    assert submitted(fake_fal)[-1].json == audio | {"language": "fr"}
    omitted = await client.call_tool(tool, audio | choice)
    assert not omitted.is_error, text_of(omitted)
    assert submitted(fake_fal)[-1].json == audio  # no language: fal applies its default, English
    tools = {t.name: t for t in (await client.list_tools()).tools}
    # fal's default, which the upstream applies (the schema shows only the server's own defaults), in words,
    # as the listed transcribe tool states it for model 'wizper' (omitting it does not detect the language):
    language = choice_view(tools["transcribe"].input_schema, "wizper").words["language"]
    assert "default en" in language and "omit to detect" not in language, language


async def test_minimax_music_sends_its_audio_setting_object(client: Client, fake_fal: FakeFal) -> None:
    setting = {"format": "flac", "sample_rate": 44100, "bitrate": 256000}
    args = {
        "prompt": "Indie folk, melancholic",
        "lyrics_prompt": "[verse] walking alone",
        "advanced": {"audio_setting": setting},
    }
    result = await client.call_tool("minimax_music", args)
    assert not result.is_error, text_of(result)
    assert submitted(fake_fal)[-1].json["audio_setting"] == setting
    wrong = await client.call_tool("minimax_music", args | {"advanced": {"audio_setting": {"sample_rate": 12345}}})
    assert wrong.is_error and "sample_rate" in text_of(wrong)


async def test_sound_effects_v2_loops(client: Client, fake_fal: FakeFal) -> None:
    result = await client.call_tool("elevenlabs_sound_effect", {"text": "rain on a tin roof", "loop": True})
    assert not result.is_error, text_of(result)
    [sent] = submitted(fake_fal)
    assert sent.path == "/fal-ai/elevenlabs/sound-effects/v2" and sent.json["loop"] is True
    assert fal_contract.validate_input("fal-ai/elevenlabs/sound-effects/v2", sent.json) == []


@pytest.mark.parametrize("status", [401, 403])
async def test_a_rejected_key_during_upload_names_fal_key(
    settings: Any, fake_fal: FakeFal, rec_dir: Any, status: int
) -> None:
    """fal-client tries the CDN (token) then falls back to a signed upload (initiate); when both
    refuse the key, its FalClientHTTPError becomes the error that names FAL_KEY."""
    (rec_dir / "me.wav").write_bytes(make_wav(1.0))
    local = settings.model_copy(update={"allowed_dirs": str(rec_dir)})
    fake_fal.inject("token", status, body={"detail": "No user found for Key ID and Secret"})
    fake_fal.inject("upload", status, body={"detail": "No user found for Key ID and Secret"})
    async with Client(server(local)) as client:
        result = await client.call_tool("whisper_transcribe", {"audio_url": "me.wav"})
    assert result.is_error
    assert "FAL_KEY" in text_of(result) and "FalClientHTTPError" not in text_of(result)
    assert [r.kind for r in fake_fal.requests] == ["token", "upload"]


async def test_a_wrong_key_during_upload_names_fal_key(settings: Any, fake_fal: FakeFal, rec_dir: Any) -> None:
    (rec_dir / "me.wav").write_bytes(make_wav(1.0))
    wrong = settings.model_copy(update={"allowed_dirs": str(rec_dir), "fal_key": SecretStr("not-the-key")})
    async with Client(server(wrong)) as client:
        result = await client.call_tool("whisper_transcribe", {"audio_url": "me.wav"})
    assert result.is_error
    assert "FAL_KEY" in text_of(result), text_of(result)
    assert "not-the-key" not in text_of(result)
    assert [r.kind for r in fake_fal.requests] == ["token", "upload"]  # CDN, then the signed-upload fallback


async def test_dialogue_sends_its_lines_as_objects(client: Client, fake_fal: FakeFal) -> None:
    lines = [{"text": "Hi there!", "voice": "Aria"}, {"text": "[laughs] Hello.", "voice": "21m00Tcm4TlvDq8ikWAM"}]
    result = await client.call_tool("elevenlabs_dialogue", {"inputs": lines, "advanced": {"seed": 3}})
    assert not result.is_error, text_of(result)
    [sent] = submitted(fake_fal)
    assert sent.json == {"inputs": lines, "seed": 3}
    missing = await client.call_tool("elevenlabs_dialogue", {"inputs": [{"text": "Hi"}]})
    assert missing.is_error and "voice" in text_of(missing)
    tools = {t.name: t for t in (await client.list_tools()).tools}
    items = tools["elevenlabs_dialogue"].input_schema["properties"]["inputs"]["items"]
    assert items["required"] == ["text", "voice"] and items["additionalProperties"] is False


async def test_minimax_voices_are_sent_in_voice_setting_and_clones_are_saved(client: Client, fake_fal: FakeFal) -> None:
    # `prompt`, the old name of `text`, still works and is sent as fal's `prompt`
    preset = await client.call_tool("minimax_tts", {"prompt": "Hello", "advanced": {"voice_setting": {"speed": 1.2}}})
    assert not preset.is_error, text_of(preset)
    assert submitted(fake_fal)[-1].json == {"prompt": "Hello", "voice_setting": {"speed": 1.2}}
    named = await client.call_tool("minimax_tts", {"text": "Hello", "voice": "Friendly_Person", "model": "turbo"})
    assert not named.is_error, text_of(named)
    sent = submitted(fake_fal)[-1]
    assert sent.path == "/fal-ai/minimax/speech-2.8-turbo"
    assert sent.json == {"prompt": "Hello", "voice_setting": {"voice_id": "Friendly_Person"}}
    fake_fal.script("fal-ai/minimax/voice-design", output={"custom_voice_id": "voice-abc123", "audio": None})
    design = await client.call_tool(
        "minimax_design_voice", {"prompt": "A calm old sailor", "preview_text": "Ahoy.", "name": "sailor"}
    )
    assert not design.is_error, text_of(design)
    spoken = await client.call_tool("minimax_tts", {"text": "Hello", "voice": "sailor"})
    assert not spoken.is_error, text_of(spoken)
    assert submitted(fake_fal)[-1].json == {"prompt": "Hello", "voice_setting": {"voice_id": "voice-abc123"}}
    both = await client.call_tool(
        "minimax_tts", {"text": "Hi", "voice": "sailor", "advanced": {"voice_setting": {"voice_id": "x"}}}
    )
    assert both.is_error  # voice_id is not a member of the advanced voice_setting


async def test_stems_and_takes_come_back_as_files(client: Client, fake_fal: FakeFal) -> None:
    stems = await client.call_tool("demucs_stems", {"audio_url": "https://example.com/song.mp3"})
    assert not stems.is_error, text_of(stems)
    assert stems.structured_content is not None
    assert len(stems.structured_content["files"]) == 6
    takes = await client.call_tool(
        "mirelo_video_sound", {"video_url": "https://example.com/clip.mp4", "num_samples": 3}
    )
    assert not takes.is_error, text_of(takes)
    assert takes.structured_content is not None and len(takes.structured_content["files"]) >= 1
    split = await client.call_tool("sam_audio_separate", {"audio_url": "https://example.com/a.wav", "prompt": "dog"})
    assert not split.is_error, text_of(split)
    assert split.structured_content is not None and len(split.structured_content["files"]) == 2


async def test_text_answers_reach_the_model(client: Client, fake_fal: FakeFal) -> None:
    fake_fal.script("fal-ai/audio-understanding", output={"output": "A solo piano, slow and sad."})
    answer = await client.call_tool(
        "audio_understanding", {"audio_url": "https://example.com/a.mp3", "prompt": "What instrument?"}
    )
    assert not answer.is_error, text_of(answer)
    assert "A solo piano, slow and sad." in text_of(answer)
    transcript = await client.call_tool(
        "nemotron_transcribe", {"audio_url": "https://example.com/a.mp3", "language": "fr-FR"}
    )
    assert not transcript.is_error, text_of(transcript)
    assert submitted(fake_fal)[-1].json == {"audio_url": "https://example.com/a.mp3", "language": "fr-FR"}
    wrong = await client.call_tool("nemotron_transcribe", {"audio_url": "https://example.com/a.mp3", "language": "fr"})
    assert wrong.is_error and "language" in text_of(wrong)


async def test_a_recording_over_the_multipart_threshold_is_uploaded_in_parts(
    settings: Any, fake_fal: FakeFal, rec_dir: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fal-client switches to multipart over 100 MiB; the threshold is lowered so the test stays small."""
    import fal_client.client

    monkeypatch.setattr(fal_client.client, "MULTIPART_THRESHOLD", 1 * 2**20)
    monkeypatch.setattr(fal_client.client, "MULTIPART_CHUNK_SIZE", 2**20)
    recording = make_wav(40.0)  # 1.2 MiB at 16 kHz mono: two parts
    (rec_dir / "long.wav").write_bytes(recording)
    local = settings.model_copy(update={"allowed_dirs": str(rec_dir)})
    async with Client(server(local)) as client:
        result = await client.call_tool("whisper_transcribe", {"audio_url": "long.wav"})
    assert not result.is_error, text_of(result)
    parts = [r for r in fake_fal.requests if r.kind == "multipart"]
    assert [r.method for r in parts] == ["POST", "PUT", "PUT", "POST"]
    assert sorted(len(r.body) for r in parts if r.method == "PUT") == [len(recording) - 2**20, 2**20]
    [submit] = submitted(fake_fal)
    assert httpx.get(submit.json["audio_url"]).content == recording


def test_fal_takes_recordings_of_an_hour_and_more() -> None:
    hour_of_wav = 48_000 * 2 * 2 * 3600  # 48 kHz, stereo, 16 bits
    assert FalProvider.max_upload_bytes > hour_of_wav
