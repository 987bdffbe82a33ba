"""tools/list stays cheap: it is sent into every conversation. Issue 23's budget: at most
BUDGET_PER_MODEL tokens (JSON bytes / 4, as bench/tool_tokens.py counts them) per model of the
catalog (each endpoint an agent can call, listed under its own name or as a family tool's `model`,
and each server tool), and a list that shrinks as the catalog grows."""

from __future__ import annotations

import json

import pytest
from mcp import Client

from mcp_audio.config import Settings
from tests.helpers import CATALOG, FAMILY_MEMBERS, server, stated_advanced

pytestmark = pytest.mark.anyio

BUDGET_PER_MODEL = 120  # issue 23; measured 109.6 with 108 models (bench/tool_tokens.py)


def tokens(tool: object) -> int:
    dumped = tool.model_dump(mode="json", by_alias=True, exclude_none=True)  # type: ignore[attr-defined]
    return len(json.dumps(dumped, separators=(",", ":"))) // 4


async def test_tools_list_stays_within_the_budget_per_model(settings: Settings) -> None:
    async with Client(server(settings)) as client:
        tools = (await client.list_tools()).tools
    names = {tool.name for tool in tools}
    server_tools = names - set(CATALOG.capabilities) - set(CATALOG.families)
    assert server_tools == {"find_audio_tools", "get_job", "cancel_job", "list_jobs", "produce_audio", "redo_part"}
    models = sum(len(cap.spec.all_endpoints) for cap in CATALOG.capabilities.values()) + len(server_tools)
    total = sum(tokens(tool) for tool in tools)
    assert total / models <= BUDGET_PER_MODEL, f"{total / models:.1f} tokens per model ({total} for {models})"
    # Every model is reachable from the list: under its own name, or as a family tool's `model`.
    assert set(CATALOG.capabilities) - FAMILY_MEMBERS <= names and set(CATALOG.families) <= names
    listed_members = {
        member.capability.name
        for tool in tools
        if tool.name in CATALOG.families
        for choice in tool.input_schema["properties"]["model"]["enum"]
        for member in [CATALOG.families[tool.name].members[choice]]
    }
    assert listed_members == FAMILY_MEMBERS


async def test_what_tools_list_leaves_out_is_in_the_catalog_resource(settings: Settings) -> None:
    async with Client(server(settings)) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        catalog = json.loads((await client.read_resource("audio://catalog")).contents[0].text)  # type: ignore[union-attr]
    entry = next(item for item in catalog if item["tool"] == "minimax_tts")
    assert entry["provider"] == "fal" and entry["endpoints"] == [
        "fal-ai/minimax/speech-2.8-hd",
        "fal-ai/minimax/speech-2.8-turbo",
    ]
    assert entry["listed_as"] == [{"tool": "speak", "model": ["minimax", "minimax-turbo"]}]
    assert "minimax_tts" not in tools and tools["speak"].meta == {"ui": {"resourceUri": "ui://mcp-audio/player"}}
    # The advanced group is one line of words in tools/list, its JSON schema in the catalog.
    advanced = tools["speak"].input_schema["properties"]["advanced"]
    assert set(advanced) == {"type", "description"} and "|Afrikaans|auto [" in advanced["description"]
    schema = entry["advanced"]
    assert schema["properties"]["language_boost"]["enum"][-1] == "auto" and schema["additionalProperties"] is False
    pitch = schema["properties"]["voice_setting"]["properties"]["pitch"]
    assert pitch["type"] == "integer" and (pitch["minimum"], pitch["maximum"]) == (-12, 12)
    assert set(stated_advanced(CATALOG.capabilities["minimax_tts"].input_schema)) >= set(schema["properties"])
    assert "[minimax, minimax-turbo] voice_setting {speed 0.5-2;" in advanced["description"]
    for item in catalog:
        assert ("advanced" in item) == any(s.advanced for s in CATALOG.capabilities[item["tool"]].spec.inputs)
        assert ("listed_as" in item) == (item["tool"] in FAMILY_MEMBERS)
