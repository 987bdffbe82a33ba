"""MCP_AUDIO_TOOLSETS=dynamic: tools/list starts with the job tools and `enable_toolset`, whose
description lists the tool families; enabling one adds its tools to the list and tells the
client (`notifications/tools/list_changed`), for hosts that pay for every tool they are shown.

Every tool stays registered, so a call of one not listed yet still works and jobs of every tool
resume; only tools/list is filtered, per caller (over stdio the one client, over HTTP each
principal), by middleware.
"""

from __future__ import annotations

import logging
from typing import Any

from mcp.server import NotificationOptions
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, ListToolsResult, TextContent, ToolAnnotations
from pydantic import Field, JsonValue

from mcp_audio.config import TOOLSETS
from mcp_audio.server.principal import current_principal

log = logging.getLogger("mcp_audio.toolsets")

DYNAMIC = "dynamic"
TOOL_NAME = "enable_toolset"
# What each family is for, in the tool's description (the only place an agent learns of them).
PURPOSES = {
    "tts": "speech, voice cloning, whole productions",
    "stt": "transcription",
    "music": "songs and instrumentals",
    "sfx": "sound effects",
    "edit": "stems, denoising, dubbing, re-voicing",
    "post": "join, mix, master, trim, info, subtitles, provenance; local, free",
}


class DynamicToolsets:
    """Which families each caller has enabled, and tools/list filtered to them."""

    def __init__(self, listed: list[tuple[str, str]], extra: dict[str, list[str]] | None = None) -> None:
        """`listed`: each tool tools/list shows, with its kind; `extra`: tools a toolset brings along."""
        self.families = {
            name: list(dict.fromkeys(tool for tool, kind in listed if kind in kinds)) + (extra or {}).get(name, [])
            for name, kinds in TOOLSETS.items()
        }
        self.families = {name: tools for name, tools in self.families.items() if tools}
        self._family_tools = {tool for tools in self.families.values() for tool in tools}
        self._enabled: dict[str, set[str]] = {}  # principal -> enabled families
        self._tools: dict[str, set[str]] = {}  # principal -> tools find_audio_tools enabled one by one

    def enable(self, principal: str, toolset: str) -> list[str]:
        """Enable a family (or all) for `principal`: the names of the tools it adds to the list."""
        names = list(self.families) if toolset == "all" else [toolset]
        enabled = self._enabled.setdefault(principal, set())
        added = [tool for name in names if name not in enabled for tool in self.families[name]]
        enabled.update(names)
        return added

    def enable_tools(self, principal: str, tools: list[str]) -> list[str]:
        """Enable single tools for `principal` (what find_audio_tools returned): those newly shown."""
        added = [tool for tool in tools if tool in self.hidden(principal)]
        self._tools.setdefault(principal, set()).update(added)
        return added

    def hidden(self, principal: str) -> set[str]:
        shown = {tool for name in self._enabled.get(principal, ()) for tool in self.families[name]}
        return self._family_tools - shown - self._tools.get(principal, set())

    def description(self) -> str:
        listed = "; ".join(f"{name} ({len(tools)}: {PURPOSES[name]})" for name, tools in self.families.items())
        return f"Add a family of audio tools to your tool list: {listed}; or all."

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Middleware: a tools/list answer without the tools of families the caller has not enabled."""
        result = await call_next(ctx)
        if ctx.method != "tools/list":
            return result
        hidden = self.hidden(current_principal())
        if isinstance(result, ListToolsResult):
            return result.model_copy(update={"tools": [tool for tool in result.tools if tool.name not in hidden]})
        if isinstance(result, dict) and isinstance(result.get("tools"), list):  # the result as sent
            return result | {"tools": [tool for tool in result["tools"] if tool.get("name") not in hidden]}
        return result


def add_dynamic_toolsets(server: MCPServer[Any], toolsets: DynamicToolsets) -> DynamicToolsets:
    """Filter tools/list to the enabled families (and tools: productions come with speech) and add
    `enable_toolset`."""

    allowed = [*toolsets.families, "all"]
    schema: dict[str, JsonValue] = {"enum": list(allowed)}

    async def enable_toolset(
        ctx: Context,
        # Checked here, so a refusal names the field and the allowed values (as every tool's do).
        toolset: str = Field(description="The family to add", max_length=16, json_schema_extra=schema),
    ) -> CallToolResult:
        if toolset not in allowed:
            raise ToolError(f"`toolset`: got {toolset[:16]!r}; allowed: {', '.join(allowed)}.")
        added = toolsets.enable(current_principal(), toolset)
        if added:
            await announce(ctx)
        text = (
            f"Enabled {toolset}: {', '.join(added)} added to your tool list."
            if added
            else f"{toolset} was already enabled."
        )
        return CallToolResult(
            content=[TextContent(type="text", text=text)], structured_content={"toolset": toolset, "added": added}
        )

    server.add_tool(
        enable_toolset,
        name=TOOL_NAME,
        title="Enable a family of audio tools",
        description=toolsets.description(),
        annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
    )
    server.middleware.append(toolsets)
    _advertise_list_changed(server)
    return toolsets


async def announce(ctx: Context) -> None:
    """notifications/tools/list_changed: on 2026-era `subscriptions/listen` streams, and to a
    2025-era (initialize handshake) session directly."""
    await ctx.notify_tools_changed()
    session = ctx.request_context.session
    if getattr(session, "client_params", None) is not None:  # a handshake session
        try:
            await session.send_tool_list_changed()
        except Exception as exc:  # a closed stream: the next tools/list shows the change anyway
            log.info("could not send tools/list_changed (%s)", exc)


def _advertise_list_changed(server: MCPServer[Any]) -> None:
    """Initialize answers advertise `tools.listChanged`: MCPServer builds them with default
    notification options (false); 2026-era answers derive it from `subscriptions/listen`."""
    lowlevel = server._lowlevel_server  # the SDK has no public accessor yet (its own TODO)
    build = lowlevel.create_initialization_options

    def with_tools_changed(notification_options: NotificationOptions | None = None, *args: Any, **kwargs: Any) -> Any:
        options = notification_options or NotificationOptions()
        options.tools_changed = True
        return build(options, *args, **kwargs)

    lowlevel.create_initialization_options = with_tools_changed  # type: ignore[method-assign]
