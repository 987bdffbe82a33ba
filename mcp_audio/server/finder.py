"""`find_audio_tools`: the few tools that fit a plain request, with why, price and the arguments
that matter (ranking in catalog/finder.py). With MCP_AUDIO_TOOLSETS=dynamic it also adds what it
returns to the caller's tool list."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from mcp_audio.catalog import CHOOSER, Capability, Family
from mcp_audio.catalog.finder import find_tools
from mcp_audio.server.principal import current_principal
from mcp_audio.server.strict import strict_tool
from mcp_audio.server.toolsets import DynamicToolsets, announce

__all__ = ["TOOL_NAME", "finder_tool"]

TOOL_NAME = "find_audio_tools"
OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"tools": {"type": "array", "items": {"required": ["tool", "why", "price", "arguments"]}}},
    "required": ["tools"],
}


def finder_tool(exposed: list[Capability], families: list[Family], dynamic: DynamicToolsets | None) -> Tool:
    """The tool; `dynamic` (dynamic toolsets) also enables what it finds for the caller. A
    capability a family lists is suggested as that family's tool with its `model`."""
    family_names = {family.name for family in families}

    async def find_audio_tools(
        ctx: Context,
        task: str = Field(description="What the user wants, in plain words", min_length=1, max_length=500),
        max_usd: float | None = Field(None, ge=0, description="Most a typical call may cost"),
    ) -> CallToolResult:
        matches = find_tools(exposed, task, max_usd=max_usd, families=families)
        names = list(dict.fromkeys(match.tool for match in matches))
        if dynamic is not None and dynamic.enable_tools(current_principal(), names):
            await announce(ctx)
        lines = [
            f"{_call(m.tool, m.arguments, family_names)}: {m.why}; {m.price}; arguments: {', '.join(m.arguments)}"
            for m in matches
        ]
        text = "\n".join(lines) or "No tool fits; try other words, or a higher max_usd."
        return CallToolResult(
            content=[TextContent(type="text", text=text)],
            structured_content={"tools": [match.entry() for match in matches]},
        )

    return strict_tool(
        find_audio_tools,
        OUTPUT_SCHEMA,
        description="The best few audio tools for a request, with why, price and key arguments.",
        annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
    )


def _call(tool: str, arguments: dict[str, str], families: set[str]) -> str:
    """ "transcribe (model 'whisper')" for a family's member; the tool's name otherwise (a tool's
    own `model` argument is one of its arguments, not a choice made here)."""
    return f"{tool} ({CHOOSER} {arguments[CHOOSER]})" if tool in families else tool
