"""Former tool names, kept callable for one release after their tools merged into one with an
endpoint choice (manifest `aliases`): not in tools/list; a call runs the new tool with that
choice fixed, and its result names the call that replaces it."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp_types import CallToolResult, ListToolsResult, TextContent

from mcp_audio.catalog import CHOOSER, Capability, Family
from mcp_audio.core.errors import InvalidArguments

__all__ = ["Unlisted", "alias_arguments", "deprecation_note", "deprecation_text"]

log = logging.getLogger("mcp_audio.server")


def replacement(capability: Capability, alias: str, families: Iterable[Family] = ()) -> str:
    """The call that replaces `alias`, as tools/list shows it: "inpaint_audio with model='ace-step'
    (ace_step_edit with mode='inpaint')", or the capability's own call when no family lists it."""
    chooser, choice = capability.spec.endpoint_input, capability.spec.aliases[alias]
    own = f"{capability.name} with {chooser}='{choice}'"
    for family in families:
        for model, member in family.members.items():
            if member.capability is capability and member.fixed == choice:
                return f"{family.name} with {CHOOSER}='{model}' ({own})"
            if member.capability is capability and member.fixed is None:
                return f"{family.name} with {CHOOSER}='{model}', {chooser}='{choice}' ({own})"
    return own


def alias_arguments(
    capability: Capability, alias: str, arguments: dict[str, Any], families: Iterable[Family] = ()
) -> dict[str, Any]:
    """The arguments of a call of `alias` as the merged tool takes them."""
    chooser, choice = capability.spec.endpoint_input, capability.spec.aliases[alias]
    assert chooser is not None  # manifest-validated: aliases map to endpoint choices
    if chooser in arguments and arguments[chooser] != choice:
        raise InvalidArguments(
            f"`{chooser}`: {alias} is {replacement(capability, alias, families)}; call that tool to choose another."
        )
    log.info("deprecated tool name %s used; it is now %s with %s=%s", alias, capability.name, chooser, choice)
    return {**arguments, chooser: choice}


def deprecation_text(capability: Capability, alias: str, families: Iterable[Family] = ()) -> str:
    return (
        f"Deprecated: {alias} is now {replacement(capability, alias, families)}; "
        "the old name works until the next minor release."
    )


def deprecation_note(
    result: CallToolResult, capability: Capability, alias: str, families: Iterable[Family] = ()
) -> CallToolResult:
    """`result` with a line (and a `deprecated` field) naming the call that replaces `alias`."""
    text = deprecation_text(capability, alias, families)
    structured = None if result.structured_content is None else result.structured_content | {"deprecated": text}
    return result.model_copy(
        update={"content": [*result.content, TextContent(type="text", text=text)], "structured_content": structured}
    )


class Unlisted:
    """Middleware: a tools/list answer without the given tool names (they stay callable).

    The answer is kept per protocol version: the tools are fixed once the server is built (dynamic
    toolsets filter it further, per caller, outside this one), and building it means serializing
    every registered tool, members included, about three times what is sent. An SDK client asks
    for the whole list again on each call of a tool it has not seen listed."""

    def __init__(self, names: set[str]) -> None:
        self.names = frozenset(names)
        self._sent: dict[str, dict[str, Any]] = {}

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        whole = ctx.method == "tools/list" and not (ctx.params or {}).get("cursor")
        if whole and (sent := self._sent.get(ctx.protocol_version)) is not None:
            return dict(sent)  # a copy of the envelope: middleware outside may replace its keys
        result = await call_next(ctx)
        if ctx.method != "tools/list":
            return result
        if isinstance(result, ListToolsResult):
            return result.model_copy(update={"tools": [tool for tool in result.tools if tool.name not in self.names]})
        if isinstance(result, dict) and isinstance(result.get("tools"), list):  # the result as sent
            listed = result | {"tools": [tool for tool in result["tools"] if tool.get("name") not in self.names]}
            if whole and listed.get("nextCursor") is None:
                self._sent[ctx.protocol_version] = listed
            return dict(listed)
        return result
