"""Print tools/list tokens (bytes/4) per tool, in total, and per toolset, as a client receives them.

Issue 23's budget is per tool of the catalog: every model an agent can call (each endpoint of each
capability, whether listed under its own name or as a `model` of a family tool) and each server
tool (jobs, finder, productions). The average per listed tool is printed too.

Usage: python bench/tool_tokens.py
"""

from __future__ import annotations

import json
import tempfile

import anyio
from mcp import Client

from mcp_audio.catalog import load_catalog
from mcp_audio.config import TOOLSETS, Settings
from mcp_audio.server import build_server


async def tool_sizes(toolsets: str) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as tmp:
        async with Client(build_server(Settings(data_dir=tmp, toolsets=toolsets))) as client:
            tools = (await client.list_tools()).tools
    dumped = {tool.name: tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in tools}
    return {name: len(json.dumps(tool, separators=(",", ":"))) // 4 for name, tool in dumped.items()}


def catalog_models(listed: set[str]) -> int:
    """Every model an agent can call: each endpoint of each capability, and each listed server tool."""
    catalog = load_catalog()
    endpoints = sum(len(cap.spec.all_endpoints) for cap in catalog.capabilities.values())
    server_tools = listed - set(catalog.capabilities) - set(catalog.families)
    return endpoints + len(server_tools)


async def main() -> None:
    sizes = await tool_sizes("all")
    for name, tokens in sorted(sizes.items(), key=lambda item: -item[1]):
        print(f"{name:32s} ~{tokens} tokens")
    total, models = sum(sizes.values()), catalog_models(set(sizes))
    print(f"all: {len(sizes)} tools listed, ~{total} tokens, {total / len(sizes):.0f} per listed tool")
    print(f"catalog: {models} models (endpoints and server tools), {total / models:.1f} tokens per model")
    for toolset in TOOLSETS:
        subset = await tool_sizes(toolset)
        print(f"MCP_AUDIO_TOOLSETS={toolset}: {len(subset)} tools (incl. 3 job tools), ~{sum(subset.values())} tokens")
    start = await tool_sizes("dynamic")
    print(f"MCP_AUDIO_TOOLSETS=dynamic: {len(start)} tools at the start, ~{sum(start.values())} tokens")


if __name__ == "__main__":
    anyio.run(main)
