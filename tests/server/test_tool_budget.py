"""tools/list stays cheap: it is sent into every conversation (at most BUDGET_PER_TOOL tokens per
tool on average, every listed tool counted as bench/tool_tokens.py counts them, JSON bytes / 4;
issue 23 aims at 120)."""

from __future__ import annotations

import json

import pytest
from mcp import Client

from mcp_audio.config import Settings
from tests.helpers import CATALOG, server, stated_advanced

pytestmark = pytest.mark.anyio

BUDGET_PER_TOOL = 185  # measured: 184.5 with produce_audio and redo_part (issue 23)


def tokens(tool: object) -> int:
    dumped = tool.model_dump(mode="json", by_alias=True, exclude_none=True)  # type: ignore[attr-defined]
    return len(json.dumps(dumped, separators=(",", ":"))) // 4


async def test_tools_list_stays_within_the_budget_per_tool(settings: Settings) -> None:
    async with Client(server(settings)) as client:
        tools = (await client.list_tools()).tools
    assert len(tools) >= len(CATALOG.capabilities)
    average = sum(tokens(tool) for tool in tools) / len(tools)
    assert average <= BUDGET_PER_TOOL, f"{average:.1f} tokens per tool"


async def test_what_tools_list_leaves_out_is_in_the_catalog_resource(settings: Settings) -> None:
    async with Client(server(settings)) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        catalog = json.loads((await client.read_resource("audio://catalog")).contents[0].text)  # type: ignore[union-attr]
    entry = next(item for item in catalog if item["tool"] == "minimax_tts")
    assert entry["provider"] == "fal" and entry["endpoints"] == [
        "fal-ai/minimax/speech-2.8-hd",
        "fal-ai/minimax/speech-2.8-turbo",
    ]
    assert tools["minimax_tts"].meta == {"ui": {"resourceUri": "ui://mcp-audio/player"}}
    # The advanced group is one line of words in tools/list, its JSON schema in the catalog.
    advanced = tools["minimax_tts"].input_schema["properties"]["advanced"]
    assert set(advanced) == {"type", "description"} and "|Afrikaans|auto" in advanced["description"]
    schema = entry["advanced"]
    assert schema["properties"]["language_boost"]["enum"][-1] == "auto" and schema["additionalProperties"] is False
    pitch = schema["properties"]["voice_setting"]["properties"]["pitch"]
    assert pitch["type"] == "integer" and (pitch["minimum"], pitch["maximum"]) == (-12, 12)
    assert set(stated_advanced(tools["minimax_tts"].input_schema)) >= set(schema["properties"])
    for item in catalog:
        assert ("advanced" in item) == any(s.advanced for s in CATALOG.capabilities[item["tool"]].spec.inputs)
