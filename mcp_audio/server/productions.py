"""The production tools: `produce_audio` (a script to a finished episode or audiobook, one
durable job) and `redo_part` (one part again, reassembled). The work is jobs/production.py;
this module is their MCP face: schemas, cost confirmation, waiting with progress."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
from mcp_types import CallToolResult, InputRequiredResult
from pydantic import ConfigDict

from mcp_audio.core.errors import McpAudioError
from mcp_audio.core.redaction import redact
from mcp_audio.core.script import MAX_LEXICON_ENTRIES, MAX_SCRIPT_CHARS
from mcp_audio.jobs.production_plan import DELIVERIES, FORMATS, PRODUCE_TOOL
from mcp_audio.server.confirmation import NeedsApproval, cost_confirmation
from mcp_audio.server.output_schema import job_schema
from mcp_audio.server.player import PLAYER_URI
from mcp_audio.server.principal import current_principal
from mcp_audio.server.state import AppState, Runtime
from mcp_audio.server.tasks import started_as_task

__all__ = ["production_tools"]

AwaitJob = Callable[[Context, AppState, str, float], Awaitable[CallToolResult]]
RootsOf = Callable[[Context, AppState], Awaitable[list[Any]]]

_FILE_OR_TOOL = "A file (path, URL, jobs://, files://) or {tool: <music tool>, prompt: ...} to generate one"
PRODUCE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "script": {
            "type": "string",
            "maxLength": MAX_SCRIPT_CHARS,
            "description": "'# Title' starts a chapter; a paragraph 'Name: ...' is that speaker's, others "
            "the narrator's; [pause 2s] is silence",
        },
        "voices": {
            "type": "object",
            "description": "speaker -> {tool: speak, model, voice: <preset or saved voice>, ...its arguments}; "
            "default narrator: speak kokoro af_heart",
            "additionalProperties": {"type": "object", "required": ["tool"]},
        },
        "music": {"type": ["string", "object"], "description": _FILE_OR_TOOL},
        "delivery": {"enum": list(DELIVERIES), "default": "podcast"},
        "format": {"enum": list(FORMATS), "default": "mp3"},
        "lexicon": {
            "type": "object",
            "maxProperties": MAX_LEXICON_ENTRIES,
            "additionalProperties": {"type": "string"},
            "description": "word -> what to say (speech only; subtitles keep the script)",
        },
        "title": {"type": "string", "maxLength": 200},
    },
    "required": ["script"],
    "additionalProperties": False,
}
REDO_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "job_id": {"type": "string", "maxLength": 64, "description": "The production's"},
        "part": {"type": "integer", "minimum": 1, "description": "1-based, as messages name it"},
        "text": {"type": "string", "maxLength": 10_000, "description": "New text"},
        "voice": {"type": ["string", "object"], "description": "Its tool's voice, or {tool, voice}"},
    },
    "required": ["job_id", "part"],
    "additionalProperties": False,
}
DESCRIPTION = (
    "A whole episode or audiobook from a script, as one job: speech parts (one voice per speaker), "
    "music bed, chapters, subtitles, mastering to a delivery (podcast, audiobook, broadcast), checked. "
    "The total cost is asked once. Returns a job_id; get_job shows progress."
)


class _Raw(ArgModelBase):
    model_config = ConfigDict(extra="allow")

    def model_dump_one_level(self) -> dict[str, Any]:
        return {"arguments": dict(self.model_extra or {})}


def _check(arguments: dict[str, Any], schema: dict[str, Any], tool: str) -> None:
    unknown = sorted(set(arguments) - set(schema["properties"]))
    missing = [name for name in schema["required"] if name not in arguments]
    if unknown or missing:
        problems = [f"`{n}`: unknown argument" for n in unknown] + [f"`{n}`: required" for n in missing]
        raise ToolError(
            f"Invalid arguments for {tool}: {'; '.join(problems)}. Allowed: {', '.join(schema['properties'])}."
        )


def production_tools(runtime: Runtime, secrets: list[str], await_job: AwaitJob, roots_of: RootsOf) -> list[Tool]:
    async def produce(arguments: dict[str, Any], ctx: Context) -> CallToolResult | InputRequiredResult:
        _check(arguments, PRODUCE_SCHEMA, PRODUCE_TOOL)
        state = runtime.get()
        try:
            confirm = cost_confirmation(ctx, state.settings.confirm_above_usd)
            job = await state.productions.start(arguments, await roots_of(ctx, state), current_principal(), confirm)
        except NeedsApproval as needed:
            return needed.question()
        except McpAudioError as exc:
            raise ToolError(redact(str(exc), secrets)) from exc
        if started_as_task(job):
            from mcp_audio.server.render import job_result

            return job_result(state.catalog, job)
        return await await_job(ctx, state, job.id, state.settings.wait_s)

    async def redo(arguments: dict[str, Any], ctx: Context) -> CallToolResult | InputRequiredResult:
        _check(arguments, REDO_SCHEMA, "redo_part")
        state = runtime.get()
        part = arguments["part"]
        if not isinstance(part, int) or isinstance(part, bool) or part < 1:
            raise ToolError("Invalid arguments for redo_part: `part`: a part number, 1 or more.")
        text = arguments.get("text")
        if text is not None and not isinstance(text, str):
            raise ToolError("Invalid arguments for redo_part: `text`: the part's new text.")
        try:
            confirm = cost_confirmation(ctx, state.settings.confirm_above_usd)
            job = await state.productions.redo(
                str(arguments["job_id"]),
                part,
                text=text,
                voice=arguments.get("voice"),
                roots=await roots_of(ctx, state),
                principal=current_principal(),
                confirm=confirm,
            )
        except NeedsApproval as needed:
            return needed.question()
        except McpAudioError as exc:
            raise ToolError(redact(str(exc), secrets)) from exc
        return await await_job(ctx, state, job.id, state.settings.wait_s)

    # As compact as the capability tools' (each result field named; the README gives the job's shape).
    schema = job_schema({name: {} for name in ("summary", "duration_s", "parts", "chapters", "delivery")}, files=True)
    meta = {"ui": {"resourceUri": PLAYER_URI}}
    return [
        Tool(
            fn=produce,
            name=PRODUCE_TOOL,
            title="Produce an episode or audiobook",
            description=DESCRIPTION,
            parameters=PRODUCE_SCHEMA,
            fn_metadata=FuncMetadata(arg_model=_Raw, output_schema=schema),
            is_async=True,
            context_kwarg="ctx",
            meta=meta,
        ),
        Tool(
            fn=redo,
            name="redo_part",
            title="Redo one part of a production",
            description="Render one part of a finished production again (new take; text or voice may change), "
            "reassemble and re-check delivery; nothing else is sent again. A new production job.",
            parameters=REDO_SCHEMA,
            fn_metadata=FuncMetadata(arg_model=_Raw, output_schema=schema),
            is_async=True,
            context_kwarg="ctx",
            meta=meta,
        ),
    ]
