"""Former tool names, kept callable for one release after their tools merged into one with an
endpoint choice (manifest `aliases`): not in tools/list; a call runs the new tool with that
choice fixed, and its result names the call that replaces it."""

from __future__ import annotations

import logging
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp_types import CallToolResult, ListToolsResult, TextContent

from mcp_audio.catalog import Capability
from mcp_audio.core.errors import InvalidArguments

__all__ = ["Unlisted", "alias_arguments", "deprecation_note", "deprecation_text"]

log = logging.getLogger("mcp_audio.server")


def alias_arguments(capability: Capability, alias: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The arguments of a call of `alias` as the merged tool takes them."""
    chooser, choice = capability.spec.endpoint_input, capability.spec.aliases[alias]
    assert chooser is not None  # manifest-validated: aliases map to endpoint choices
    if chooser in arguments and arguments[chooser] != choice:
        raise InvalidArguments(
            f"`{chooser}`: {alias} is {capability.name} with {chooser}='{choice}'; call {capability.name} "
            f"to choose another."
        )
    log.info("deprecated tool name %s used; it is now %s with %s=%s", alias, capability.name, chooser, choice)
    return {**arguments, chooser: choice}


def deprecation_text(capability: Capability, alias: str) -> str:
    chooser = capability.spec.endpoint_input
    return (
        f"Deprecated: {alias} is now {capability.name} with {chooser}='{capability.spec.aliases[alias]}'; "
        "the old name works until the next minor release."
    )


def deprecation_note(result: CallToolResult, capability: Capability, alias: str) -> CallToolResult:
    """`result` with a line (and a `deprecated` field) naming the call that replaces `alias`."""
    text = deprecation_text(capability, alias)
    structured = None if result.structured_content is None else result.structured_content | {"deprecated": text}
    return result.model_copy(
        update={"content": [*result.content, TextContent(type="text", text=text)], "structured_content": structured}
    )


class Unlisted:
    """Middleware: a tools/list answer without the given tool names (they stay callable)."""

    def __init__(self, names: set[str]) -> None:
        self.names = frozenset(names)

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        result = await call_next(ctx)
        if ctx.method != "tools/list":
            return result
        if isinstance(result, ListToolsResult):
            return result.model_copy(update={"tools": [tool for tool in result.tools if tool.name not in self.names]})
        if isinstance(result, dict) and isinstance(result.get("tools"), list):  # the result as sent
            return result | {"tools": [tool for tool in result["tools"] if tool.get("name") not in self.names]}
        return result
