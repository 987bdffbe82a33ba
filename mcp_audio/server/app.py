"""Build the MCP server from the catalog: one tool per capability, job tools, resources.

Capability tools carry the manifest's compact JSON schema and validate with the capability's
own model, so an agent gets messages that name the field, the value and what is allowed.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse
from urllib.request import url2pathname

import anyio
from mcp.server.apps import Apps, ResourceCsp
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_types import CallToolResult, InputRequiredResult, TextContent, ToolAnnotations
from pydantic import Field

from mcp_audio import __version__
from mcp_audio.catalog import (
    DEFAULT_MAX_ITEMS,
    DEFAULT_MAX_TEXT_CHARS,
    Capability,
    Catalog,
    Family,
    listings,
    load_catalog,
)
from mcp_audio.config import ServerSettings
from mcp_audio.core.errors import McpAudioError, UpstreamError
from mcp_audio.core.redaction import redact
from mcp_audio.core.trace import JobContext, current_job
from mcp_audio.jobs import not_found_message, open_engine
from mcp_audio.jobs.production_plan import PRODUCE_TOOL
from mcp_audio.providers.base import Pacing
from mcp_audio.server.aliases import Unlisted, alias_arguments, deprecation_note, deprecation_text
from mcp_audio.server.call_meta import idempotency_key, traceparent
from mcp_audio.server.completions import add_completions, add_protocol_details
from mcp_audio.server.confirmation import NeedsApproval, cost_confirmation
from mcp_audio.server.finder import finder_tool
from mcp_audio.server.job_events import JobEventBus
from mcp_audio.server.output_schema import capability_schema, family_schema, job_list_schema, job_schema
from mcp_audio.server.player import PLAYER_URI, player_html
from mcp_audio.server.principal import current_principal
from mcp_audio.server.productions import production_tools
from mcp_audio.server.prompts import add_prompts
from mcp_audio.server.ratelimit import RateLimit
from mcp_audio.server.render import job_result, job_summary
from mcp_audio.server.resources import add_resources
from mcp_audio.server.state import AppState, Runtime
from mcp_audio.server.strict import RawArguments, strict_tool
from mcp_audio.server.tasks import Tasks, started_as_task
from mcp_audio.server.toolsets import DYNAMIC, DynamicToolsets, add_dynamic_toolsets
from mcp_audio.store import Job

log = logging.getLogger("mcp_audio.server")

INSTRUCTIONS = (
    "Audio tools: speech (TTS, voice cloning), transcription, music, sound effects. Each call starts a "
    "job and waits for it; a long job returns a job_id instead: call get_job(job_id, wait_s) until it "
    "finishes. Audio/video inputs (*_url) take an https URL, a data: URI or a local file path inside the "
    "user's shared folders, or an earlier output: jobs://{job_id} or files://{job_id}/{name}. Results give "
    "file URLs and local paths. Saved cloned voices: voices://cloned. Finishing (info, join, mix, master, "
    "trim, subtitles) runs locally and is free. Times and durations are in seconds (unless named *_ms). "
    f"A text takes at most {DEFAULT_MAX_TEXT_CHARS} characters and a list {DEFAULT_MAX_ITEMS} items, unless "
    "its schema says less."
)


# Over HTTP the server reads none of the caller's local paths (see the README, "Deploying over HTTP").
REMOTE_FILES = (
    " This server is remote: it cannot read the user's local files. Pass a recording as an https URL, a "
    "data: URI, or the upload:// reference that POST /uploads (same bearer token) returns for the file."
)


def build_server(
    settings: ServerSettings,
    catalog: Catalog | None = None,
    *,
    transport: Literal["stdio", "http"] = "stdio",
    pacing: Pacing | None = None,
    runtime: Runtime | None = None,
) -> MCPServer[AppState]:
    """The MCP server. `pacing` sets the providers' poll and retry intervals (tests shorten them);
    `runtime`, if given, is where the running state is kept (the health check reads it)."""
    catalog = catalog or load_catalog()
    pacing = pacing or Pacing(lease_s=settings.lease_s)  # MCP_AUDIO_LEASE_S (tests pass their own pacing)
    runtime = runtime or Runtime()
    job_events = JobEventBus()  # subscriptions/listen streams: list changes, and jobs:// updates
    secrets = settings.secrets()

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
        async with open_engine(
            settings, catalog, transport=transport, pacing=pacing, on_job_change=job_events.job_changed
        ) as engine:
            runtime.state = AppState(
                settings=settings,
                catalog=catalog,
                store=engine.store,
                runner=engine.runner,
                pipeline=engine.pipeline,
                remote=transport == "http",
                productions=engine.productions,
            )
            tasks.attach(engine.task_group)
            job_events.attach(engine.task_group)
            try:
                yield runtime.state
            finally:
                runtime.state = None
                tasks.attach(None)
                job_events.attach(None)

    # Toolsets limit what is offered; jobs of any tool still resume, so the full catalog stays.
    exposed = [cap for cap in catalog.capabilities.values() if cap.spec.kind in settings.enabled_kinds]
    aliases = [(cap, alias) for cap in exposed for alias in cap.spec.aliases]
    # Family tools list their members under one name; the members stay callable, unlisted.
    families = [f for f in (f.limited_to(cap.name for cap in exposed) for f in catalog.families.values()) if f]
    members = set(listings(families))
    names = [cap.name for cap in exposed] + [alias for _, alias in aliases] + [family.name for family in families]
    tasks = Tasks(runtime, names, settings.secrets)
    # Sorted by name: a stable order (clients cache the list, and diffs of it stay readable).
    tools = [_capability_tool(cap, runtime, secrets, transport) for cap in exposed]
    tools += [_family_tool(family, runtime, secrets, transport) for family in families]
    tools.sort(key=lambda tool: tool.name)
    # Former names of merged tools: callable for one release, left out of tools/list.
    tools += [_capability_tool(cap, runtime, secrets, transport, alias, families) for cap, alias in aliases]
    listed: list[tuple[str, str]] = [(cap.name, cap.spec.kind) for cap in exposed if cap.name not in members]
    # A family comes with each toolset one of its members belongs to (video_sound: sfx and music).
    listed += [
        (family.name, kind)
        for family in families
        for kind in dict.fromkeys([family.kind, *(m.capability.spec.kind for m in family.members.values())])
    ]
    # Productions come with speech: in dynamic mode the tts family brings them.
    dynamic = None
    if settings.toolsets == DYNAMIC:
        dynamic = DynamicToolsets(listed, {"tts": ["produce_audio", "redo_part"]})
    finder = finder_tool(exposed, families, dynamic)
    if "tts" in settings.enabled_kinds:

        async def roots_of(ctx: Context, state: AppState) -> list[Path]:
            trusted = await client_roots(ctx) if transport == "stdio" else None
            return trusted or state.settings.input_roots(transport)

        async def await_production(ctx: Context, state: AppState, job_id: str, wait_s: float) -> CallToolResult:
            # A production outlives a client that stops waiting: cancel_job stops it.
            return await _await_job(ctx, state, job_id, wait_s, cancel_on_abort=False)

        tools += production_tools(runtime, secrets, await_production, roots_of)
        tools.sort(key=lambda tool: tool.name)  # one stable order, the productions among the others
    server: MCPServer[AppState] = MCPServer(
        name="mcp-audio",
        title="mcp-audio",
        version=__version__,
        instructions=INSTRUCTIONS if transport == "stdio" else INSTRUCTIONS + REMOTE_FILES,
        lifespan=lifespan,
        tools=[finder, *_job_tools(runtime, secrets), *tools],
        extensions=[_player(settings), tasks.extension()],
        middleware=(
            [RateLimit(settings.rate_limit_per_minute, lambda: runtime.get().store)]
            if settings.rate_limit_per_minute
            else None
        ),
        subscriptions=job_events,
    )
    if dynamic is not None:  # tools/list starts small; families are enabled at run time (toolsets.py)
        add_dynamic_toolsets(server, dynamic)
    if aliases or members:
        server.middleware.append(Unlisted({alias for _, alias in aliases} | members))
    add_resources(server, runtime, catalog, exposed, transport)
    add_prompts(
        server,
        {cap.name for cap in exposed} | ({"produce_audio"} if "tts" in settings.enabled_kinds else set()),
        families,
    )
    add_completions(server, runtime, catalog)
    add_protocol_details(server)
    tasks.install(server._lowlevel_server)  # the SDK's MCPServer has no handler registration of its own
    if not (transport == "http" and settings.http_stateless):  # a stateless session is gone after its request
        job_events.install_legacy(server._lowlevel_server)
    return server


# --- the in-chat player (MCP Apps) -----------------------------------------------------------

# Tools whose results a person wants to hear: their results open the player where hosts render it.
PLAYER_KINDS = frozenset({"tts", "music", "sfx", "edit", "post"})
# Where upstream audio files live, so the host's sandbox lets the player load them.
MEDIA_DOMAINS = ("https://*.fal.media", "https://fal.media", "https://storage.googleapis.com")


def _player(settings: ServerSettings) -> Apps:
    """The MCP Apps extension with the player resource (`ui://mcp-audio/player`)."""
    from mcp_audio.core.upstreams import FAL

    configured = {_origin(settings.url_of(FAL, url.param)) for url in FAL.urls}
    apps = Apps()
    apps.add_html_resource(
        PLAYER_URI,
        player_html(),
        name="player",
        title="Audio player",
        description="Plays a job's audio files side by side, with waveform, cost and a transcript in time.",
        csp=ResourceCsp(resource_domains=sorted({*MEDIA_DOMAINS, *configured})),
    )
    return apps


def _origin(url: str) -> str:
    parsed = urlparse(url)
    return f"{parsed.scheme}://{parsed.netloc}"


def _player_meta(kind: str) -> dict[str, Any]:
    """The nested `_meta` that `Apps.tool(resource_uri=...)` stamps on a tool bound to the player."""
    return {"ui": {"resourceUri": PLAYER_URI}} if kind in PLAYER_KINDS else {}


# --- capability tools ---------------------------------------------------------------------


def _capability_tool(
    capability: Capability,
    runtime: Runtime,
    secrets: list[str],
    transport: str,
    alias: str | None = None,
    families: list[Family] | None = None,
) -> Tool:
    """The tool of a capability; with `alias`, one of its former names (the endpoint choice fixed),
    whose notes name the call that replaces it as tools/list shows it (a family's, if any)."""
    spec = capability.spec
    families = families or []

    async def run(arguments: dict[str, Any], ctx: Context) -> CallToolResult | InputRequiredResult:
        if alias is not None:
            try:
                arguments = alias_arguments(capability, alias, arguments, families)
            except McpAudioError as exc:
                raise ToolError(redact(str(exc), secrets)) from exc
        result = await _run_capability(capability, arguments, ctx, runtime, secrets, transport)
        if alias is None or not isinstance(result, CallToolResult):
            return result
        return deprecation_note(result, capability, alias, families)

    return Tool(
        fn=run,
        name=alias or spec.name,
        # No title: the name says it (tools/list is paid for in every conversation); audio://catalog has it.
        description=spec.description if alias is None else deprecation_text(capability, alias, families),
        parameters=capability.input_schema,
        fn_metadata=FuncMetadata(arg_model=RawArguments, output_schema=capability_schema(capability)),
        is_async=True,
        context_kwarg="ctx",
        # The spec's defaults go unsaid (tools/list is paid for in every conversation; a tool's
        # provider and endpoints are in audio://catalog): an upstream tool is open-world and, as
        # it spends money, left to hosts' confirmation of destructive tools. A local one is
        # closed-world and not destructive (it only writes new files).
        annotations=ToolAnnotations(destructive_hint=False, open_world_hint=False)
        if capability.upstream.local
        else None,
        meta=_player_meta(spec.kind if spec.kind != "post" or "audio" in spec.files else "none") or None,
    )


def _family_tool(family: Family, runtime: Runtime, secrets: list[str], transport: str) -> Tool:
    """A family's tool: `model` picks the capability, which then runs as its own tool would."""

    async def run(arguments: dict[str, Any], ctx: Context) -> CallToolResult | InputRequiredResult:
        try:
            capability, arguments = family.route(arguments)
        except McpAudioError as exc:
            raise ToolError(redact(str(exc), secrets)) from exc
        return await _run_capability(capability, arguments, ctx, runtime, secrets, transport)

    return Tool(
        fn=run,
        name=family.name,
        description=family.spec.description,
        parameters=family.input_schema,
        fn_metadata=FuncMetadata(arg_model=RawArguments, output_schema=family_schema(family)),
        is_async=True,
        context_kwarg="ctx",
        # As its members': a family of local tools only is closed-world and not destructive.
        annotations=ToolAnnotations(destructive_hint=False, open_world_hint=False)
        if all(member.capability.upstream.local for member in family.members.values())
        else None,
        meta=_player_meta(family.kind) or None,
    )


async def _run_capability(
    capability: Capability,
    arguments: dict[str, Any],
    ctx: Context,
    runtime: Runtime,
    secrets: list[str],
    transport: str,
) -> CallToolResult | InputRequiredResult:
    """Start the capability's job for a call and wait for it (or hand back its task)."""
    state = runtime.get()
    try:

        async def roots() -> list[Path]:
            # Over HTTP the client's roots name folders of its own machine: never trusted here.
            trusted = await client_roots(ctx) if transport == "stdio" else None
            return trusted or state.settings.input_roots(transport)

        confirm = cost_confirmation(ctx, state.settings.confirm_above_usd)
        meta = ctx.request_context.meta
        key = idempotency_key(meta, ctx.headers)  # a call sent again gets its job back
        trace = traceparent(meta)
        current_job.set(JobContext(traceparent=trace))  # this call's own log lines and uploads carry it
        job = await state.pipeline.start(capability, arguments, roots, current_principal(), confirm, key, trace)
    except NeedsApproval as needed:  # 2026 era: the question goes back; the client retries with the answer
        return needed.question()
    except McpAudioError as exc:
        raise ToolError(redact(str(exc), secrets)) from exc
    except Exception as exc:  # unforeseen: the agent still learns what failed, never just "Error executing tool"
        log.exception("%s failed before its job started", capability.name)
        detail = redact(str(exc).splitlines()[0][:200], secrets) if str(exc) else ""
        raise ToolError(
            f"{capability.name} could not start: {type(exc).__name__}{': ' + detail if detail else ''}"
        ) from exc
    if started_as_task(job):  # a task-augmented call: the client follows the task
        return job_result(state.catalog, job, remote=state.remote)
    return await _await_job(ctx, state, job.id, state.settings.wait_s, cancel_on_abort=True)


async def client_roots(ctx: Context) -> list[Path] | None:
    """The folders the client shares (MCP roots), when it offers them; None otherwise."""
    try:
        capabilities = ctx.request_context.session.client_capabilities
        if capabilities is None or capabilities.roots is None:
            return None
        with warnings.catch_warnings():
            # Roots are deprecated in the 2026 era, but the desktop and IDE clients of the 2025
            # era that share folders this way are the ones we serve.
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            result = await ctx.request_context.session.list_roots()
    except Exception as exc:  # an era or transport without roots: fall back to the settings
        log.info("client roots unavailable (%s); using MCP_AUDIO_ALLOWED_DIRS", exc)
        return None
    paths = [
        Path(url2pathname(urlparse(str(root.uri)).path)) for root in result.roots if str(root.uri).startswith("file:")
    ]
    return paths or None


async def _await_job(
    ctx: Context, state: AppState, job_id: str, wait_s: float, *, cancel_on_abort: bool
) -> CallToolResult:
    counter = itertools.count(1)

    async def forward(job: Job, message: str) -> None:
        await ctx.report_progress(next(counter), None, message)

    try:
        job = await state.runner.wait(job_id, wait_s, forward)
    except anyio.get_cancelled_exc_class():
        if cancel_on_abort:
            # The client cancelled the call that started the job: cancel it upstream too.
            with anyio.CancelScope(shield=True), anyio.move_on_after(15):
                try:
                    await state.runner.cancel(job_id)
                except McpAudioError as exc:  # e.g. an upstream that cannot cancel: the job runs on
                    log.warning(
                        "could not cancel job %s upstream: %s", job_id, redact(str(exc), state.settings.secrets())
                    )
        raise
    note = state.runner.waiting_note(job)
    result = job_result(state.catalog, job, inline_max_kb=state.settings.inline_max_kb, note=note, remote=state.remote)
    if job.tool == PRODUCE_TOOL:  # the parts made so far, for the player (UIs read _meta; models do not)
        result.meta = (result.meta or {}) | {"mcp-audio/parts": await state.productions.part_jobs(job)}
    return result


# --- job tools ----------------------------------------------------------------------------

JobStatusFilter = Literal["queued", "running", "completed", "failed", "cancelled", "unknown", "unfinished", "any"]


def _job_tools(runtime: Runtime, secrets: list[str]) -> list[Tool]:
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    async def get_job(
        ctx: Context,
        job_id: str = Field(description="The job_id a tool returned", max_length=64),
        wait_s: float = Field(0, ge=0, le=600, description="Seconds to wait for it to finish"),
    ) -> CallToolResult:
        state = runtime.get()
        if await state.store.get_job(job_id, current_principal()) is None:  # another's job: as if there were none
            raise ToolError(not_found_message(job_id))
        return await _await_job(ctx, state, job_id, wait_s, cancel_on_abort=False)

    async def cancel_job(job_id: str = Field(description="The job_id to cancel", max_length=64)) -> CallToolResult:
        state = runtime.get()
        if await state.store.get_job(job_id, current_principal()) is None:
            raise ToolError(not_found_message(job_id))
        try:
            job = await state.runner.cancel(job_id)
        except UpstreamError as exc:  # the job was not cancelled: it runs on, and is still followed
            raise ToolError(
                f"Job {job_id} was not cancelled: {redact(str(exc), secrets)} It keeps running upstream: call "
                "cancel_job again later, or get_job to wait for its result."
            ) from exc
        except McpAudioError as exc:
            raise ToolError(redact(str(exc), secrets)) from exc
        return job_result(state.catalog, job, inline_max_kb=state.settings.inline_max_kb, remote=state.remote)

    async def list_jobs(
        status: JobStatusFilter = Field("any", description="unfinished = queued or running"),
        limit: int = Field(20, ge=1, le=200),
    ) -> CallToolResult:
        state = runtime.get()
        states = {"any": None, "unfinished": ["queued", "running"]}.get(status, [status])
        jobs = [
            job_summary(job)
            for job in await state.store.list_jobs(states=states, limit=limit, principal=current_principal())
        ]
        lines = [f"{j['job_id']} {j['tool']} {j['status']} {j['created_at']}" for j in jobs] or ["No jobs."]
        return CallToolResult(
            content=[TextContent(type="text", text="\n".join(lines))], structured_content={"jobs": jobs}
        )

    return [
        strict_tool(
            get_job,
            job_schema(typed=True),
            title="Get a job's status or result",
            description="Status or result of an audio job another tool started; wait_s waits for it (with progress).",
            annotations=read_only,
            meta=_player_meta("tts"),  # a finished job's audio plays in the player too
        ),
        strict_tool(
            cancel_job,
            job_schema(typed=True),
            title="Cancel a job",
            description="Cancel a queued or running audio job, upstream too. A finished job is left as it is.",
            annotations=ToolAnnotations(destructive_hint=True, idempotent_hint=True, open_world_hint=True),
        ),
        strict_tool(
            list_jobs,
            job_list_schema(),
            title="List recent jobs",
            description="Recent audio jobs, newest first, optionally filtered by status.",
            annotations=read_only,
        ),
    ]
