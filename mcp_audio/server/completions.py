"""Argument completions for prompts and resource templates, and the 2025-era logging level.

Completions answer from what the server knows without any key: preset voices, saved voices,
languages and model choices from the manifests, and the caller's recent job ids. A value
completes when it starts with what was typed, ignoring case; an unknown argument gets none.
"""

from __future__ import annotations

import logging
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    Completion,
    CompletionArgument,
    CompletionContext,
    EmptyResult,
    GetPromptRequestParams,
    PromptReference,
    ResourceTemplateReference,
    SetLevelRequestParams,
)

from mcp_audio.catalog import Catalog
from mcp_audio.server.principal import current_principal
from mcp_audio.server.state import Runtime

LIMIT = 100  # the protocol's most values per answer
# MCP's syslog levels, as Python's.
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "alert": logging.CRITICAL,
    "emergency": logging.CRITICAL,
}


def add_completions(server: MCPServer[Any], runtime: Runtime, catalog: Catalog) -> None:
    @server.completion()  # type: ignore[no-untyped-call, untyped-decorator]
    async def complete(
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion:
        typed = argument.value.lower()
        matches = [
            value
            for value in await _candidates(ref, argument.name, runtime, catalog)
            if value.lower().startswith(typed)
        ]
        return Completion(values=matches[:LIMIT], total=len(matches), has_more=len(matches) > LIMIT)


async def _candidates(
    ref: PromptReference | ResourceTemplateReference, name: str, runtime: Runtime, catalog: Catalog
) -> list[str]:
    if isinstance(ref, PromptReference):
        if ref.name == "narrate_script" and name == "voice":
            family = catalog.voice_families.get("qwen3-tts")
            presets = [preset.name for preset in family.presets] if family else []
            return presets + await _saved_voices(runtime, "qwen3-tts")
        return []
    if ref.uri.startswith("voices://voice-api") and name == "language":
        return _enum_of(catalog, "voice_api_transcribe", "language") or ["en", "es", "ja", "zh"]
    if ref.uri.startswith("voices://voice-api") and name == "sort":
        return ["created_at", "score", "task_count"]
    if ref.uri.startswith(("jobs://", "files://")) and name == "job_id":
        state = runtime.state
        return (
            [job.id for job in await state.store.list_jobs(limit=LIMIT, principal=current_principal())] if state else []
        )
    return []


async def _saved_voices(runtime: Runtime, family: str) -> list[str]:
    state = runtime.state
    return await state.store.voice_names(family, current_principal()) if state else []


def _enum_of(catalog: Catalog, tool: str, field: str) -> list[str]:
    capability = catalog.get(tool)
    spec = capability.inputs.get(field) if capability else None
    return [str(value) for value in spec.enum or []] if spec else []


def add_protocol_details(server: MCPServer[Any]) -> None:
    """What MCPServer leaves to the server: `logging/setLevel` for 2025-era clients (our logs go to
    stderr; the level is applied to them), and `prompts/get` of an unknown prompt as -32602."""
    lowlevel = server._lowlevel_server  # the SDK's MCPServer exposes no handler registration of its own

    async def set_level(ctx: Any, params: SetLevelRequestParams) -> EmptyResult:
        logging.getLogger("mcp_audio").setLevel(_LEVELS.get(params.level, logging.INFO))
        return EmptyResult()

    lowlevel.add_request_handler("logging/setLevel", SetLevelRequestParams, set_level)
    entry = lowlevel._request_handlers["prompts/get"]

    async def get_prompt(ctx: Any, params: GetPromptRequestParams) -> Any:
        known = {prompt.name for prompt in await server.list_prompts()}
        if params.name not in known:
            raise MCPError(INVALID_PARAMS, f"Unknown prompt '{params.name[:64]}'; prompts: {', '.join(sorted(known))}")
        return await entry.handler(ctx, params)

    lowlevel.add_request_handler("prompts/get", GetPromptRequestParams, get_prompt)
