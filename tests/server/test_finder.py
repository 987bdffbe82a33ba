"""find_audio_tools: plain requests get the right few tools, with why, price and arguments, the
same answer every time; in dynamic mode what it returns joins the caller's tool list; the tool
list has a stable order."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client

from mcp_audio.catalog import CHOOSER
from mcp_audio.config import ServerSettings
from tests.helpers import CATALOG, body_of, server, text_of

pytestmark = pytest.mark.anyio

# A realistic request -> tools one of which must come first, and tools that must be in the top 3,
# each as tools/list names it: (tool, None), or a family tool with the `model` that picks the
# capability (a member is suggested as its family's call, never by its own unlisted name).
Call = tuple[str, str | None]
TABLE: list[tuple[str, set[Call], set[Call]]] = [
    ("a cheap English voice", {("speak", "seed-speech")}, set()),
    ("separate vocals from this song", {("separate_audio", "demucs")}, set()),
    (
        "sound for this video clip",
        {("video_sound", "kling"), ("video_sound", "mirelo"), ("video_sound", "hunyuan")},
        set(),
    ),
    (
        "transcribe this interview with speaker labels",
        {("transcribe", "scribe-v2"), ("transcribe", "scribe-v1"), ("transcribe", "whisper")},
        set(),
    ),
    (
        "subtitles for this video",
        {("transcribe", "whisper"), ("transcript_subtitles", None)},
        {("transcript_subtitles", None)},
    ),
    ("make it louder to -14 LUFS", {("audio_master", None), ("audio_info", None)}, {("audio_master", None)}),
    ("detect where speech occurs in a recording", {("silero_vad", None)}, set()),
    ("music for this video", {("video_sound", "sonilo")}, set()),
    ("dub this video into Spanish", {("elevenlabs_dub", None)}, set()),
    ("separate vocals from this song", {("separate_audio", "demucs")}, set()),
    (
        "clone my voice from a recording",
        {
            ("minimax_clone_voice", None),
            ("qwen3_tts_clone_voice", None),
            ("voice_api_clone_voice", None),
            ("eigen_upload_voice", None),
        },
        set(),
    ),
]


def call_of(item: dict[str, Any]) -> Call:
    """(tool, model choice) of a suggestion: the choice only for a family tool, unquoted."""
    if item["tool"] not in CATALOG.families:
        return item["tool"], None
    model = item["arguments"].get(CHOOSER, "")
    return item["tool"], model[1:-1] if len(model) > 2 and model[0] == model[-1] == "'" else model


@pytest.fixture
async def client(settings: ServerSettings) -> Any:
    async with Client(server(settings)) as connected:
        yield connected


@pytest.mark.parametrize(("task", "first", "top"), TABLE)
async def test_a_plain_request_finds_the_right_tools(
    client: Client, task: str, first: set[Call], top: set[Call]
) -> None:
    result = await client.call_tool("find_audio_tools", {"task": task})
    found = body_of(result)["tools"]
    assert found and call_of(found[0]) in first, (task, [(item["tool"], item["arguments"]) for item in found])
    assert top <= {call_of(item) for item in found}
    listed = {tool.name: tool for tool in (await client.list_tools()).tools}
    lines = text_of(result).splitlines()
    assert len(lines) == len(found)
    for item, line in zip(found, lines, strict=True):
        assert item["why"] and item["price"] and item["arguments"], item
        tool, choice = call_of(item)
        assert tool in listed, f"{tool} is not in tools/list"  # what the agent can see and call
        # Every argument named is one the listed tool takes (for that model), and each it requires is named.
        assert set(item["arguments"]) <= set(listed[tool].input_schema["properties"]), item
        family = CATALOG.families.get(tool)
        if family is None:
            capability = CATALOG.get(tool)
            assert capability is not None
            required = {spec.name for spec in capability.spec.inputs if spec.required}
            assert line.startswith(f"{tool}: "), line
        else:
            assert choice in family.members, (item, list(family.members))
            member = family.members[choice]
            assert set(item["arguments"]) - {CHOOSER} <= member.argument_names(), item
            required = {spec.name for spec in member.inputs() if member.required(spec)}
            assert line.startswith(f"{tool} ({CHOOSER} '{choice}'): "), line
        assert required <= set(item["arguments"]), item
    again = body_of(await client.call_tool("find_audio_tools", {"task": task}))
    assert again == body_of(result)  # deterministic


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
        assert "find_audio_tools" in first and "separate_audio" not in first
        found = body_of(await client.call_tool("find_audio_tools", {"task": "separate vocals from this song"}))
        assert call_of(found["tools"][0]) == ("separate_audio", "demucs")
        names = {item["tool"] for item in found["tools"]}
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert names <= set(listed) and "separate_audio" in listed
        assert "demucs" in listed["separate_audio"].input_schema["properties"][CHOOSER]["enum"]
        assert "demucs_stems" not in listed  # a member is reached through its family, never listed
        assert "transcribe" not in listed  # only what it returned


async def test_the_tool_list_has_a_stable_order(client: Client) -> None:
    names = [tool.name for tool in (await client.list_tools()).tools]
    fixed = ["find_audio_tools", "get_job", "cancel_job", "list_jobs"]
    assert names[: len(fixed)] == fixed
    assert names[len(fixed) :] == sorted(names[len(fixed) :])
