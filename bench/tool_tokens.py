"""Print tools/list tokens (bytes/4) per tool, in total, and per toolset, as a client receives them.

Usage: python bench/tool_tokens.py
"""

from __future__ import annotations

import json
import tempfile

import anyio
from mcp import Client

from mcp_audio.config import TOOLSETS, Settings
from mcp_audio.server import build_server


async def tool_sizes(toolsets: str) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as tmp:
        async with Client(build_server(Settings(data_dir=tmp, toolsets=toolsets))) as client:
            tools = (await client.list_tools()).tools
    dumped = {tool.name: tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in tools}
    return {name: len(json.dumps(tool, separators=(",", ":"))) // 4 for name, tool in dumped.items()}


async def main() -> None:
    sizes = await tool_sizes("all")
    for name, tokens in sorted(sizes.items(), key=lambda item: -item[1]):
        print(f"{name:32s} ~{tokens} tokens")
    print(f"all: {len(sizes)} tools, ~{sum(sizes.values())} tokens, {sum(sizes.values()) / len(sizes):.0f} per tool")
    for toolset in TOOLSETS:
        subset = await tool_sizes(toolset)
        print(f"MCP_AUDIO_TOOLSETS={toolset}: {len(subset)} tools (incl. 3 job tools), ~{sum(subset.values())} tokens")
    start = await tool_sizes("dynamic")
    print(f"MCP_AUDIO_TOOLSETS=dynamic: {len(start)} tools at the start, ~{sum(start.values())} tokens")


if __name__ == "__main__":
    anyio.run(main)
