"""find_audio_tools: plain requests get the right few tools, with why, price and arguments, the
same answer every time; in dynamic mode what it returns joins the caller's tool list; the tool
list has a stable order."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client

from mcp_audio.config import ServerSettings
from tests.helpers import CATALOG, body_of, server, text_of

pytestmark = pytest.mark.anyio

# A realistic request -> tools one of which must come first, and tools that must be in the top 3.
TABLE: list[tuple[str, set[str], set[str]]] = [
    ("a cheap English voice", {"seed_speech_tts"}, set()),
    ("separate vocals from this song", {"demucs_stems"}, set()),
    ("sound for this video clip", {"kling_video_audio", "mirelo_video_sound", "hunyuan_video_foley"}, set()),
    ("transcribe this interview with speaker labels", {"elevenlabs_transcribe", "whisper_transcribe"}, set()),
    ("subtitles for this video", {"whisper_transcribe", "transcript_subtitles"}, {"transcript_subtitles"}),
    ("make it louder to -14 LUFS", {"audio_master", "audio_info"}, {"audio_master"}),
    ("detect where speech occurs in a recording", {"silero_vad"}, set()),
    ("music for this video", {"sonilo_video_music"}, set()),
    ("dub this video into Spanish", {"elevenlabs_dub"}, set()),
    ("separate vocals from this song", {"demucs_stems"}, set()),
    (
        "clone my voice from a recording",
        {"minimax_clone_voice", "qwen3_tts_clone_voice", "voice_api_clone_voice", "eigen_upload_voice"},
        set(),
    ),
]


@pytest.fixture
async def client(settings: ServerSettings) -> Any:
    async with Client(server(settings)) as connected:
        yield connected


@pytest.mark.parametrize(("task", "first", "top"), TABLE)
async def test_a_plain_request_finds_the_right_tools(client: Client, task: str, first: set[str], top: set[str]) -> None:
    result = await client.call_tool("find_audio_tools", {"task": task})
    found = body_of(result)["tools"]
    assert found and found[0]["tool"] in first, (task, [item["tool"] for item in found])
    assert top <= {item["tool"] for item in found}
    for item in found:
        assert item["why"] and item["price"] and item["arguments"], item
        capability = CATALOG.get(item["tool"])
        assert capability is not None
        required = {spec.name for spec in capability.spec.inputs if spec.required}
        assert required <= set(item["arguments"])
    again = body_of(await client.call_tool("find_audio_tools", {"task": task}))
    assert again == body_of(result)  # deterministic
    assert found[0]["tool"] in text_of(result)


async def test_max_usd_leaves_out_dearer_and_unpriced_tools(client: Client) -> None:
    found = body_of(await client.call_tool("find_audio_tools", {"task": "a cheap English voice", "max_usd": 0.05}))
    assert found["tools"]
    for item in found["tools"]:
        assert "no published price" not in item["price"], item
        assert "$0.1 per" not in item["price"] and "$3 per" not in item["price"]
    refused = await client.call_tool("find_audio_tools", {"task": "voice", "max_usd": -1})
    assert refused.is_error and "max_usd" in text_of(refused)


async def test_in_dynamic_mode_what_it_finds_joins_the_tool_list(settings: ServerSettings) -> None:
    async with Client(server(settings.model_copy(update={"toolsets": "dynamic"}))) as client:
        first = {tool.name for tool in (await client.list_tools()).tools}
        assert "find_audio_tools" in first and "demucs_stems" not in first
        found = body_of(await client.call_tool("find_audio_tools", {"task": "separate vocals from this song"}))
        names = {item["tool"] for item in found["tools"]}
        listed = {tool.name for tool in (await client.list_tools()).tools}
        assert names <= listed and "demucs_stems" in listed
        assert "whisper_transcribe" not in listed  # only what it returned


async def test_the_tool_list_has_a_stable_order(client: Client) -> None:
    names = [tool.name for tool in (await client.list_tools()).tools]
    fixed = ["find_audio_tools", "get_job", "cancel_job", "list_jobs"]
    assert names[: len(fixed)] == fixed
    assert names[len(fixed) :] == sorted(names[len(fixed) :])
