"""Print tools/list tokens (bytes/4) per tool, per toolset and in total, as a client receives them.

Usage: python bench/tool_tokens.py
"""

from __future__ import annotations

import json
import tempfile

import anyio
from mcp import Client

from mcp_audio.config import Settings
from mcp_audio.server import build_server


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with Client(build_server(Settings(data_dir=tmp))) as client:
            tools = (await client.list_tools()).tools
    sizes = {}
    for tool in tools:
        wire = tool.model_dump(mode="json", by_alias=True, exclude_none=True)
        sizes[tool.name] = len(json.dumps(wire, separators=(",", ":"))) // 4
    for name, tokens in sorted(sizes.items(), key=lambda item: -item[1]):
        print(f"{name:32s} ~{tokens} tokens")
    print(f"{len(sizes)} tools, ~{sum(sizes.values())} tokens, {sum(sizes.values()) / len(sizes):.0f} per tool on average")


if __name__ == "__main__":
    anyio.run(main)
