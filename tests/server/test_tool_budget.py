"""tools/list stays cheap: it is sent into every conversation (at most 200 tokens per tool on
average, every listed tool counted as bench/tool_tokens.py counts them, JSON bytes / 4; issue 23
aims at 120)."""

from __future__ import annotations

import json

import pytest
from mcp import Client

from mcp_audio.config import Settings
from tests.helpers import CATALOG, server

pytestmark = pytest.mark.anyio

BUDGET_PER_TOOL = 200


def tokens(tool: object) -> int:
    dumped = tool.model_dump(mode="json", by_alias=True, exclude_none=True)  # type: ignore[attr-defined]
    return len(json.dumps(dumped, separators=(",", ":"))) // 4


async def test_tools_list_is_at_most_200_tokens_per_tool(settings: Settings) -> None:
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
    advanced = tools["minimax_tts"].input_schema["properties"]["advanced"]
    assert advanced["properties"]["language_boost"]["enum"][-1] == "auto"  # bounds stay, bare of prose
    assert "description" not in advanced and "description" not in advanced["properties"]["voice_setting"]
