"""Family tools through a real MCP client against the fal fake: a call with `model` sends the
upstream exactly what its member tool would, the member stays callable though unlisted, and
productions take family tools for their voices and music."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from mcp_audio.config import ServerSettings
from mcp_audio.sandbox.fal_queue import FakeFal
from tests.helpers import FAMILY_MEMBERS, body_of, server, text_of

pytestmark = pytest.mark.anyio

RECORDING = "https://example.com/interview.mp3"


def submits(fake_fal: FakeFal) -> list[tuple[str, Any]]:
    return [(r.path.strip("/"), json.loads(r.body)) for r in fake_fal.requests_of("submit")]


async def test_a_family_call_sends_what_its_member_would(client: Client, fake_fal: FakeFal) -> None:
    direct = await client.call_tool("wizper_transcribe", {"audio_url": RECORDING, "language": "auto"})
    routed = await client.call_tool("transcribe", {"model": "wizper", "audio_url": RECORDING, "language": "auto"})
    assert not direct.is_error and not routed.is_error, text_of(routed)
    [by_name, by_family] = submits(fake_fal)
    assert by_name == by_family == ("fal-ai/wizper", {"audio_url": RECORDING, "language": None})
    assert body_of(routed)["tool"] == "wizper_transcribe"  # the job says which model made it
    scribe = await client.call_tool("transcribe", {"model": "scribe-v1", "audio_url": RECORDING, "diarize": False})
    assert not scribe.is_error, text_of(scribe)
    assert submits(fake_fal)[-1] == ("fal-ai/elevenlabs/speech-to-text", {"audio_url": RECORDING, "diarize": False})


async def test_a_refused_family_call_sends_nothing_and_says_why(client: Client, fake_fal: FakeFal) -> None:
    for arguments, expected in [
        ({"model": "scribe-v1", "audio_url": RECORDING, "keyterms": ["fal"]}, "(only model=scribe-v2 does)"),
        ({"model": "whisper"}, "audio_url"),
        ({"model": "Whisper", "audio_url": RECORDING}, "`model`: got 'Whisper'; allowed: whisper, wizper,"),
    ]:
        result = await client.call_tool("transcribe", arguments)
        assert result.is_error and expected in text_of(result), text_of(result)
    assert submits(fake_fal) == []


async def test_members_are_callable_but_only_their_family_is_listed(client: Client) -> None:
    listed = {tool.name for tool in (await client.list_tools()).tools}
    assert "transcribe" in listed and "speak" in listed
    assert not listed & FAMILY_MEMBERS
    result = await client.call_tool("kokoro_tts", {"text": "Still here."})
    assert not result.is_error and body_of(result)["status"] == "completed", text_of(result)


async def test_a_production_takes_family_tools_for_its_voices_and_music(
    settings: ServerSettings, fake_fal: FakeFal
) -> None:
    script = "Alice: Welcome to the show.\n\nBob: Thanks, Alice. Rivers are older than roads."
    voices = {
        "Alice": {"tool": "speak", "model": "kokoro", "voice": "af_heart"},
        "Bob": {"tool": "speak", "model": "kokoro", "voice": "am_adam"},
    }
    music = {"tool": "make_music", "model": "lyria2", "prompt": "calm bed"}
    async with Client(server(settings.model_copy(update={"wait_s": 60})), mode="auto") as client:
        result = await client.call_tool("produce_audio", {"script": script, "voices": voices, "music": music})
        assert body_of(result)["status"] == "completed", text_of(result)
        refused = await client.call_tool(
            "produce_audio", {"script": "Hi.", "voices": {"narrator": {"tool": "speak", "model": "nope"}}}
        )
    sent = submits(fake_fal)
    speech = sorted(body["voice"] for path, body in sent if path == "fal-ai/kokoro/american-english")
    assert speech == ["af_heart", "am_adam"]
    assert [body for path, body in sent if path.startswith("fal-ai/lyria2")] == [{"prompt": "calm bed"}]
    assert refused.is_error and "`voices.narrator` (speak): `model`: got 'nope'; allowed: kokoro," in text_of(refused)


async def test_a_family_of_local_tools_says_what_they_say(settings: ServerSettings, tmp_path: Path) -> None:
    import shutil

    from mcp_audio.catalog import load_catalog, manifests_dir

    manifests = tmp_path / "manifests"
    shutil.copytree(manifests_dir(), manifests, ignore=shutil.ignore_patterns("__pycache__"))
    with (manifests / "families.toml").open("a") as families:
        families.write(
            '\n[[families]]\nname = "finish_audio"\ntitle = "Finish"\nkind = "post"\n'
            'description = "Join or master audio files, locally and for free, with the same arguments."\n'
            'models = {join = "audio_join", master = "audio_master"}\n'
        )
    async with Client(server(settings, load_catalog(manifests))) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    local = tools["finish_audio"].annotations
    assert local is not None and local.model_dump(exclude_none=True) == tools["audio_info"].annotations.model_dump(
        exclude_none=True
    )
    assert tools["speak"].annotations is None  # upstream models: open-world, left to hosts' confirmation
