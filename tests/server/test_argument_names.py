"""File arguments share one naming convention (`*_url`, as the server's instructions say), the
names they had before still work for one release, and neither changes what an upstream gets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from mcp_audio.sandbox.eigen import FakeEigen
from mcp_audio.sandbox.fal_queue import FakeFal
from mcp_audio.sandbox.voice_api import FakeVoiceApi
from mcp_audio.server import INSTRUCTIONS
from tests.helpers import (
    CATALOG,
    LISTED_KINDS,
    body_of,
    make_wav,
    own_words,
    per_choice,
    shown_as,
    stated_advanced,
    stated_advanced_of,
    stated_rules,
    text_of,
)

pytestmark = pytest.mark.anyio

# Every rename: tool, new argument, old argument (= the upstream's field, unchanged on the wire).
RENAMED = [
    ("voice_api_transcribe", "audio_url", "audio"),
    ("voice_api_clone_voice", "audio_url", "audio"),
    ("eigen_transcribe", "audio_url", "file"),
    ("eigen_upload_voice", "voice_reference_url", "voice_reference_file"),
    ("eigen_higgs_tts", "voice_reference_url", "voice_reference_file"),
    ("eigen_chatterbox_tts", "audio_prompt_url", "audio_prompt_file"),
    ("audio_join", "audio_urls", "files"),
    ("audio_mix", "voice_url", "voice"),
    ("audio_mix", "music_url", "music"),
    ("audio_master", "audio_url", "file"),
    ("audio_trim", "audio_url", "file"),
    ("audio_info", "audio_url", "file"),
    ("kokoro_tts", "text", "prompt"),  # speech text is `text` in every TTS tool
    ("minimax_tts", "text", "prompt"),
    ("mirelo_video_sound", "prompt", "text_prompt"),  # a generation prompt is `prompt` in every tool
    ("diffrhythm_song", "prompt", "style_prompt"),
    ("elevenlabs_sound_effect", "prompt", "text"),
    ("kling_video_audio", "prompt", "sound_effect_prompt"),
    ("minimax_music", "lyrics", "lyrics_prompt"),  # lyrics are `lyrics`, as in every song tool
]


@pytest.fixture
def client(every_client: Client) -> Client:
    return every_client


def _taken(spec: Any, fixed: str | None) -> bool:
    """Whether a capability's input is taken with the endpoint choice a family's `model` fixes."""
    return fixed is None or spec.models is None or fixed in spec.models


def _named(schema: dict[str, Any], choice: str | None) -> set[str]:
    """The arguments a listed schema states as taken (for one `model` choice of a family tool)."""
    names = set(schema["properties"]) - {"advanced"}
    if choice is None:
        return names
    return names - stated_rules(schema.get("description", ""), "model", choice).not_taken


async def test_every_file_argument_is_named_like_the_instructions_say(client: Client) -> None:
    assert "(*_url)" in INSTRUCTIONS
    listed = {tool.name: tool.input_schema for tool in (await client.list_tools()).tools}
    names, shown_in_families = [], 0
    for capability in CATALOG.capabilities.values():
        for spec in capability.file_inputs:
            names.append(spec.name)
            assert spec.name.endswith("_urls" if spec.type == "array" else "_url"), (capability.name, spec.name)
            for tool, choice, fixed in shown_as(capability.name):
                if not _taken(spec, fixed):
                    continue
                schema = listed[tool]
                if not spec.advanced:
                    shown = _named(schema, choice)
                elif choice is None:
                    shown = set(stated_advanced(schema))
                else:
                    shown = set(stated_advanced_of(schema, schema["properties"]["model"]["enum"], choice))
                assert spec.name in shown, (tool, choice, spec.name)
                shown_in_families += choice is not None
    assert len(names) > 30 and shown_in_families > 30
    for tool, new, old in RENAMED:
        for listed_as, choice, _ in shown_as(tool):
            schema = listed[listed_as]
            assert new in _named(schema, choice), (tool, listed_as, choice)
            # Old names are not shown (in a family, another choice may take an argument of that name).
            assert old not in _named(schema, choice), (tool, listed_as, choice)
        assert old in CATALOG.capabilities[tool].inputs[new].old_names


async def test_the_new_name_sends_the_same_multipart_part(
    client: Client, fake_voice: FakeVoiceApi, fake_eigen: FakeEigen, rec_dir: Path
) -> None:
    wav = make_wav(1.0)
    (rec_dir / "talk.wav").write_bytes(wav)
    voice = await client.call_tool("voice_api_transcribe", {"audio_url": str(rec_dir / "talk.wav")})
    eigen = await client.call_tool("eigen_transcribe", {"audio_url": str(rec_dir / "talk.wav")})
    assert not voice.is_error, text_of(voice)
    assert not eigen.is_error, text_of(eigen)
    [submit] = fake_voice.requests_of("stt_submit")
    assert [(p.name, p.filename, p.data) for p in submit.parts if p.filename] == [("audio", "talk.wav", wav)]
    [request] = fake_eigen.requests
    assert list(request.files) == ["file"] and request.files["file"].data == wav


async def test_an_old_name_still_works_and_is_sent_the_same_way(
    client: Client, fake_voice: FakeVoiceApi, fake_eigen: FakeEigen, rec_dir: Path
) -> None:
    wav = make_wav(1.0)
    (rec_dir / "talk.wav").write_bytes(wav)
    voice = await client.call_tool("voice_api_transcribe", {"audio": str(rec_dir / "talk.wav")})
    eigen = await client.call_tool("eigen_transcribe", {"file": str(rec_dir / "talk.wav")})
    joined = await client.call_tool("audio_join", {"files": [str(rec_dir / "talk.wav")] * 2, "format": "wav"})
    for result in (voice, eigen, joined):
        assert not result.is_error, text_of(result)
    [submit] = fake_voice.requests_of("stt_submit")
    assert [(p.name, p.data) for p in submit.parts if p.filename] == [("audio", wav)]
    assert fake_eigen.requests[0].files["file"].data == wav
    assert body_of(joined)["output"]["duration_s"] == pytest.approx(2.3, abs=0.05)  # 2 x 1 s + the 0.3 s gap
    # Through the family tool that lists it, the old name works too, and is sent the same way.
    family = await client.call_tool("transcribe", {"model": "voice-api", "audio": str(rec_dir / "talk.wav")})
    assert not family.is_error, text_of(family)
    [_, again] = fake_voice.requests_of("stt_submit")
    assert [(p.name, p.data) for p in again.parts if p.filename] == [("audio", wav)]


async def test_an_old_and_a_new_name_together_are_refused_naming_both(
    client: Client, fake_voice: FakeVoiceApi, fake_eigen: FakeEigen, rec_dir: Path
) -> None:
    (rec_dir / "talk.wav").write_bytes(make_wav(1.0))
    path = str(rec_dir / "talk.wav")
    for tool, new, old in RENAMED:
        value: str | list[str] = [path] if new.endswith("_urls") else path
        result = await client.call_tool(tool, {new: value, old: value})
        assert result.is_error, tool
        assert f"`{old}` and `{new}`: the same argument twice (`{old}` is its old name); give only `{new}`." in (
            text_of(result)
        ), tool
    assert fake_voice.requests == [] and fake_eigen.requests == []


async def test_a_refused_unknown_argument_lists_only_the_new_names(client: Client) -> None:
    result = await client.call_tool("audio_info", {"fil": "x.wav"})
    assert result.is_error
    assert "`fil`: unknown argument. Allowed arguments: audio_url, peaks." in text_of(result)


async def test_the_episode_prompt_uses_the_new_names(client: Client) -> None:
    result = await client.get_prompt("produce_episode", {"topic": "Tide pools"})
    text = result.messages[0].content.text  # type: ignore[union-attr]
    for phrase in ("audio_urls = ", "voice_url = jobs://", "music_url = jobs://", "audio_url = jobs://{master"):
        assert phrase in text, phrase


async def test_every_file_and_required_argument_is_described_and_prompts_are_named_alike(client: Client) -> None:
    listed = {tool.name: tool.input_schema for tool in (await client.list_tools()).tools}
    described = 0
    for capability in CATALOG.capabilities.values():
        for spec in capability.spec.inputs:
            # The speech text is `text`, a generation prompt `prompt` (others say what they are for).
            assert spec.name not in ("text_prompt", "style_prompt", "sound_effect_prompt", "lyrics_prompt")
        for tool, choice, fixed in shown_as(capability.name):
            schema = listed[tool]
            for spec in capability.spec.inputs:
                if spec.advanced or not _taken(spec, fixed) or (spec.name == capability.spec.endpoint_input and fixed):
                    continue
                rule = (spec.per_model or {}).get(fixed or "")
                if spec.required or (rule is not None and rule.required) or spec.file is not None:
                    # Described: in words said for every choice, or in the choice's own description
                    # before its bounds ("[kokoro] Preset (voices://kokoro): text"), not in bounds only.
                    every, said = per_choice(schema["properties"][spec.name].get("description", ""), _choices(schema))
                    own, _ = own_words(said.get(choice, ""))
                    assert every or own, (capability.name, tool, choice, spec.name)
                    described += 1
            names = _named(schema, choice)
            if capability.spec.kind == "tts":
                assert "text" in names or "inputs" in names, (capability.name, tool, choice)
            if capability.spec.kind in ("music", "sfx") and "prompt" not in names:
                assert "lyrics" in names or "tags" in names, (capability.name, tool, choice)
    assert described > 50
    # And so for each family tool, as it is listed.
    for tool, kind in LISTED_KINDS.items():
        names = set(listed[tool]["properties"])
        assert kind != "tts" or "text" in names or "inputs" in names, tool
        assert kind not in ("music", "sfx") or names & {"prompt", "lyrics", "tags"}, tool


def _choices(schema: dict[str, Any]) -> list[str]:
    return list(schema["properties"].get("model", {}).get("enum", []))


# Tools merged into one with an endpoint choice: the former name, and the choice it stands for.
MERGED = {
    "ace_step_song": ("ace_step_music", "song"),
    "ace_step_prompt_to_audio": ("ace_step_music", "prompt"),
    "ace_step_inpaint": ("ace_step_edit", "inpaint"),
    "ace_step_outpaint": ("ace_step_edit", "outpaint"),
    "ace_step_remix": ("ace_step_edit", "remix"),
}


async def test_a_merged_tools_former_name_is_unlisted_but_works_and_says_what_replaces_it(
    client: Client, fake_fal: FakeFal
) -> None:
    tools = {tool.name: tool.input_schema for tool in (await client.list_tools()).tools}
    assert set(tools).isdisjoint(MERGED)
    # What each former name stands for is reachable from tools/list: its tool listed, or a family's
    # `model` that runs that tool with that choice fixed, or lets the call choose it.
    for alias, (tool, mode) in MERGED.items():
        reached = [
            (listed, choice)
            for listed, choice, fixed in shown_as(tool)
            if listed in tools and (fixed == mode or (fixed is None and mode in _mode_choices(tools[listed], choice)))
        ]
        assert reached, (alias, tool, mode)
    assert {
        alias: (cap.name, cap.spec.aliases[alias])
        for cap in CATALOG.capabilities.values()
        for alias in cap.spec.aliases
    } == MERGED
    result = await client.call_tool("ace_step_inpaint", {"audio_url": "https://example.com/a.mp3", "tags": "lofi"})
    assert not result.is_error, text_of(result)
    body = body_of(result)
    assert body["status"] == "completed"
    note = "Deprecated: ace_step_inpaint is now inpaint_audio with model='ace-step' (ace_step_edit with mode='inpaint')"
    assert body["deprecated"].startswith(note) and note in text_of(result)
    [submit] = [r for r in fake_fal.requests if r.kind == "submit"]
    assert submit.path.startswith("/fal-ai/ace-step/audio-inpaint") and "mode" not in submit.json
    # The former tool had no `mode`: another choice through it is refused, naming the new call.
    wrong = await client.call_tool("ace_step_song", {"tags": "lofi", "mode": "prompt"})
    assert wrong.is_error and (
        "ace_step_song is make_music with model='ace-step', mode='song' (ace_step_music with mode='song')"
    ) in text_of(wrong)
    # The new tool refuses an input its mode does not take, naming the mode.
    refused = await client.call_tool("ace_step_music", {"mode": "prompt", "tags": "lofi", "prompt": "calm"})
    assert refused.is_error and "`tags`: mode 'prompt' does not take it (only song)." in text_of(refused)
    # The same calls as tools/list shows them: the family tool with model 'ace-step'.
    listed = await client.call_tool(
        "inpaint_audio", {"model": "ace-step", "audio_url": "https://example.com/a.mp3", "tags": "lofi"}
    )
    assert not listed.is_error and body_of(listed)["status"] == "completed", text_of(listed)
    assert "deprecated" not in body_of(listed)
    first, again = [r for r in fake_fal.requests if r.kind == "submit"]
    assert again.path == first.path and again.json == first.json
    refused = await client.call_tool(
        "make_music", {"model": "ace-step", "mode": "prompt", "tags": "lofi", "prompt": "calm"}
    )
    assert refused.is_error and "`tags`: mode 'prompt' does not take it (only song)." in text_of(refused)


def _mode_choices(schema: dict[str, Any], choice: str | None) -> list[str]:
    """The values of a listed tool's `mode` (taken with this `model` choice of a family tool)."""
    if "mode" not in _named(schema, choice):
        return []
    return list(schema["properties"]["mode"].get("enum", []))
