"""Build the MCP server from the catalog: one tool per capability, job tools, resources.

Capability tools carry the manifest's compact JSON schema and validate with the capability's
own model, so an agent gets messages that name the field, the value and what is allowed.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import warnings
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse
from urllib.request import url2pathname

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_types import AudioContent, CallToolResult, ResourceLink, TextContent, ToolAnnotations
from pydantic import ConfigDict, Field

from mcp_audio import __version__
from mcp_audio.catalog import Capability, Catalog, load_catalog
from mcp_audio.config import Settings
from mcp_audio.errors import ConfigError, McpAudioError
from mcp_audio.inputs import resolve_file_inputs
from mcp_audio.jobs import JobRunner, not_found_message
from mcp_audio.outputs import OutputSaver
from mcp_audio.pricing import SpendGuard
from mcp_audio.prompts import add_prompts
from mcp_audio.providers.base import Provider
from mcp_audio.redaction import redact
from mcp_audio.results import summary_text
from mcp_audio.store import Job, JobStore

log = logging.getLogger("mcp_audio.server")

INSTRUCTIONS = (
    "Audio tools: speech (TTS, voice cloning), transcription, music, sound effects. Each call starts a "
    "job and waits for it; a long job returns a job_id instead: call get_job(job_id, wait_s) until it "
    "finishes. Audio/video inputs (*_url) take an https URL, a data: URI or a local file path inside the "
    "user's shared folders. Results give file URLs and local paths. Saved cloned voices: voices://cloned."
)


@dataclass
class AppState:
    settings: Settings
    catalog: Catalog
    store: JobStore
    runner: JobRunner


class _Runtime:
    """Holds the state the lifespan opened, for tools and resources built before it existed."""

    state: AppState | None = None

    def get(self) -> AppState:
        if self.state is None:
            raise ToolError("the server is still starting; try again in a moment")
        return self.state


class _RawArguments(ArgModelBase):
    """Pass a capability call's arguments through untouched: the capability validates them."""

    model_config = ConfigDict(extra="allow")

    def model_dump_one_level(self) -> dict[str, Any]:
        return {"arguments": dict(self.model_extra or {})}


def provider_factories(settings: Settings) -> dict[str, Callable[[], Provider]]:
    """How to build each provider; the runner builds one on first use, keeping start-up fast."""

    def fal() -> Provider:
        from mcp_audio.providers.fal import FalProvider  # httpx and friends load on first use

        key = settings.fal_key.get_secret_value() if settings.fal_key else None
        return FalProvider(
            api_key=key,
            queue_url=settings.fal_queue_url,
            run_url=settings.fal_run_url,
            rest_url=settings.fal_rest_url,
            cdn_url=settings.fal_cdn_url,
        )

    return {"fal": fal}


def build_server(
    settings: Settings, catalog: Catalog | None = None, *, transport: Literal["stdio", "http"] = "stdio"
) -> MCPServer[AppState]:
    catalog = catalog or load_catalog()
    runtime = _Runtime()
    secrets = settings.secrets()

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
        store = JobStore(settings.database_path)
        runner: JobRunner | None = None
        try:
            async with anyio.create_task_group() as task_group:
                runner = JobRunner(
                    store,
                    catalog,
                    provider_factories(settings),
                    task_group,
                    secrets=secrets,
                    spend=SpendGuard(settings.max_spend_usd),
                    saver=OutputSaver(settings.output_dir),
                    download=settings.downloads_for(transport),
                )
                runtime.state = AppState(settings=settings, catalog=catalog, store=store, runner=runner)
                resumed = runner.resume_unfinished()
                if resumed:
                    log.info("re-attached to %d unfinished job(s)", resumed)
                yield runtime.state
                # Stopping: followers are cancelled, rows stay unfinished, the next start resumes them.
                task_group.cancel_scope.cancel()
        finally:
            runtime.state = None
            if runner is not None:
                with anyio.CancelScope(shield=True):
                    await runner.aclose()
            store.close()

    # Toolsets limit what is offered; jobs of any tool still resume, so the full catalog stays.
    exposed = [cap for cap in catalog.capabilities.values() if cap.spec.kind in settings.enabled_kinds]
    tools = [_capability_tool(cap, runtime, secrets) for cap in exposed]
    server: MCPServer[AppState] = MCPServer(
        name="mcp-audio",
        title="mcp-audio",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        tools=tools + _job_tools(runtime, secrets),
    )
    _add_resources(server, runtime, catalog, exposed)
    add_prompts(server, {cap.name for cap in exposed})
    return server


# --- capability tools ---------------------------------------------------------------------


def _capability_tool(capability: Capability, runtime: _Runtime, secrets: list[str]) -> Tool:
    spec = capability.spec

    async def run(arguments: dict[str, Any], ctx: Context) -> CallToolResult:
        state = runtime.get()
        try:
            call = capability.prepare(arguments, state.store.find_voice)
            provider = state.runner.provider(capability.provider)
            provider.check_configured()
            roots = await client_roots(ctx) or state.settings.input_roots()
            call = await resolve_file_inputs(capability, call, provider, state.store, roots)
            job = await state.runner.start(capability, call)
        except McpAudioError as exc:
            raise ToolError(redact(str(exc), secrets)) from exc
        return await _await_job(ctx, state, job.id, state.settings.wait_s, cancel_on_abort=True)

    return Tool(
        fn=run,
        name=spec.name,
        title=spec.title,
        description=spec.description,
        parameters=capability.input_schema,
        fn_metadata=FuncMetadata(arg_model=_RawArguments),
        is_async=True,
        context_kwarg="ctx",
        # Not read-only, not destructive (it creates new files), open-world (a paid upstream call).
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=True),
        meta={"mcp-audio/provider": capability.provider, "mcp-audio/endpoints": spec.all_endpoints},
    )


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
                await state.runner.cancel(job_id)
        raise
    return job_result(state.catalog, job, inline_max_kb=state.settings.inline_max_kb)


def job_result(catalog: Catalog, job: Job, *, inline_max_kb: int | None = None) -> CallToolResult:
    """The tool result for a job in any state."""
    body = job.summary()
    content: list[Any] = []
    if job.state == "completed" and job.result is not None:
        body.update(job.result)
        capability = catalog.get(job.tool)
        text = (
            summary_text(capability, job.id, job.result, job.result.get("saved_voice"))
            if capability
            else f"{job.tool} finished (job {job.id})."
        )
        content.append(TextContent(type="text", text=text))
        for item in job.result["files"]:
            # A saved file is linked through this server (files://), which any client can read.
            content.append(
                ResourceLink(
                    type="resource_link",
                    uri=item.get("resource") or item["url"],
                    name=item.get("file_name") or item["url"].rsplit("/", 1)[-1],
                    mime_type=item.get("content_type"),
                    size=item.get("file_size"),
                )
            )
            inline = _inline_audio(item, inline_max_kb)
            if inline is not None:
                content.append(inline)
        return CallToolResult(content=content, structured_content=body)
    if job.state == "failed":
        text = f"{job.tool} failed (job {job.id}): {job.error}"
        return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=body, is_error=True)
    if job.state == "cancelled":
        return CallToolResult(
            content=[TextContent(type="text", text=f"{job.tool} job {job.id} was cancelled.")], structured_content=body
        )
    body["resource"] = f"jobs://{job.id}"
    where = f"in queue (position {job.queue_position})" if job.queue_position is not None else job.state
    text = (
        f"{job.tool} is still {where} (job {job.id}). It keeps running: call get_job with "
        f'job_id="{job.id}" and wait_s=60 to wait for the result, or cancel_job to stop it.'
    )
    return CallToolResult(
        content=[
            TextContent(type="text", text=text),
            ResourceLink(
                type="resource_link", uri=f"jobs://{job.id}", name=f"job {job.id}", mime_type="application/json"
            ),
        ],
        structured_content=body,
    )


def _inline_audio(item: dict[str, Any], inline_max_kb: int | None) -> AudioContent | None:
    """Audio content for clients that play it directly, when the saved file is small enough."""
    path, content_type = item.get("path"), str(item.get("content_type") or "")
    if inline_max_kb is None or path is None or not content_type.startswith("audio/"):
        return None
    if int(item.get("file_size") or 0) > inline_max_kb * 1024:
        return None
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return AudioContent(type="audio", data=data, mime_type=content_type)


# --- job tools ----------------------------------------------------------------------------

JobStatusFilter = Literal["queued", "running", "completed", "failed", "cancelled", "unfinished", "any"]


def _job_tools(runtime: _Runtime, secrets: list[str]) -> list[Tool]:
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    async def get_job(
        ctx: Context,
        job_id: str = Field(description="The job_id a tool returned", max_length=64),
        wait_s: float = Field(0, ge=0, le=600, description="Seconds to wait for it to finish"),
    ) -> CallToolResult:
        state = runtime.get()
        if state.store.get_job(job_id) is None:
            raise ToolError(not_found_message(job_id))
        return await _await_job(ctx, state, job_id, wait_s, cancel_on_abort=False)

    async def cancel_job(job_id: str = Field(description="The job_id to cancel", max_length=64)) -> CallToolResult:
        state = runtime.get()
        try:
            job = await state.runner.cancel(job_id)
        except McpAudioError as exc:
            raise ToolError(redact(str(exc), secrets)) from exc
        return job_result(state.catalog, job, inline_max_kb=state.settings.inline_max_kb)

    async def list_jobs(
        status: JobStatusFilter = Field("any", description="unfinished = queued or running"),
        limit: int = Field(20, ge=1, le=200),
    ) -> CallToolResult:
        state = runtime.get()
        states = {"any": None, "unfinished": ["queued", "running"]}.get(status, [status])
        jobs = [job.summary() for job in state.store.list_jobs(states=states, limit=limit)]
        lines = [f"{j['job_id']} {j['tool']} {j['status']} {j['created_at']}" for j in jobs] or ["No jobs."]
        return CallToolResult(
            content=[TextContent(type="text", text="\n".join(lines))], structured_content={"jobs": jobs}
        )

    tools = [
        Tool.from_function(
            get_job,
            title="Get a job's status or result",
            description="Status or result of an audio job another tool started; wait_s waits for it (with progress).",
            annotations=read_only,
        ),
        Tool.from_function(
            cancel_job,
            title="Cancel a job",
            description="Cancel a queued or running audio job, upstream too. A finished job is left as it is.",
            annotations=ToolAnnotations(destructive_hint=True, idempotent_hint=True, open_world_hint=True),
        ),
        Tool.from_function(
            list_jobs,
            title="List recent jobs",
            description="Recent audio jobs, newest first, optionally filtered by status.",
            annotations=read_only,
        ),
    ]
    for tool in tools:
        tool.parameters = _without_titles(tool.parameters)
    return tools


def _without_titles(schema: dict[str, Any]) -> dict[str, Any]:
    """Pydantic titles repeat the names; every byte of tools/list is paid for in each conversation."""
    compact = {k: v for k, v in schema.items() if k != "title"}
    if "properties" in compact:
        compact["properties"] = {name: _without_titles(prop) for name, prop in compact["properties"].items()}
    return compact


# --- resources ----------------------------------------------------------------------------


def _add_resources(server: MCPServer[AppState], runtime: _Runtime, catalog: Catalog, exposed: list[Capability]) -> None:
    @server.resource(
        "audio://catalog",
        title="Audio model catalog",
        mime_type="application/json",
        description="Every audio tool: provider, upstream endpoints, kind and price.",
    )
    def catalog_resource() -> str:
        return json.dumps(catalog_entries(exposed), indent=1)

    for family_name, family in catalog.voice_families.items():
        _add_voice_family(server, family_name, family.model_dump())

    @server.resource(
        "voices://cloned",
        title="Saved cloned voices",
        mime_type="application/json",
        description="Voices saved by clone tools, usable by name as `voice` in the matching TTS tool.",
    )
    def cloned_voices() -> str:
        voices = runtime.get().store.list_voices()
        return json.dumps([{"name": v.name, "family": v.family, "provider": v.provider} for v in voices], indent=1)

    @server.resource(
        "jobs://recent",
        title="Recent jobs",
        mime_type="application/json",
        description="The 20 most recent jobs, newest first.",
    )
    def recent_jobs() -> str:
        return json.dumps([job.summary() for job in runtime.get().store.list_jobs(limit=20)], indent=1)

    @server.resource(
        "jobs://{job_id}",
        title="Job",
        mime_type="application/json",
        description="One job: status, progress, outputs or error.",
    )
    def job_resource(job_id: str) -> str:
        state = runtime.get()
        job = state.store.get_job(job_id)
        if job is None:
            raise ValueError(not_found_message(job_id))
        return json.dumps(job_result(state.catalog, job).structured_content, indent=1)

    @server.resource(
        "files://{job_id}/{name}",
        title="Saved output file",
        mime_type="application/octet-stream",
        description="The bytes of an output file this server saved, for clients on another machine.",
    )
    def saved_file(job_id: str, name: str) -> bytes:
        job = runtime.get().store.get_job(job_id)
        files = (job.result or {}).get("files", []) if job else []
        # Only paths the job itself recorded are served: the name is a key, never a path.
        path = next((f["path"] for f in files if f.get("file_name") == name and f.get("path")), None)
        if path is None:
            raise ValueError(f"No saved file '{name[:100]}' for job '{job_id[:64]}'")
        return Path(path).read_bytes()


def _add_voice_family(server: MCPServer[AppState], name: str, family: dict[str, Any]) -> None:
    @server.resource(
        f"voices://{name}",
        title=family["title"],
        mime_type="application/json",
        description=f"Preset voices of {family['title']}.",
    )
    def voices() -> str:
        return json.dumps(family, indent=1)


def catalog_entries(capabilities: Iterable[Capability]) -> list[dict[str, Any]]:
    return [
        {
            "tool": cap.name,
            "title": cap.spec.title,
            "kind": cap.spec.kind,
            "provider": cap.provider,
            "endpoints": cap.spec.all_endpoints,
            "price": cap.spec.price.model_dump(exclude_none=True) if cap.spec.price else None,
        }
        for cap in capabilities
    ]


def tools_markdown(catalog: Catalog) -> str:
    """The README's tool table, generated from the manifests (a test keeps the README in sync)."""
    lines = ["| Tool | Kind | What it does | Upstream endpoint(s) | Price |", "|---|---|---|---|---|"]
    for cap in catalog.capabilities.values():
        price_text = cap.spec.price.describe() if cap.spec.price else "-"
        endpoints = "<br>".join(f"`{e}`" for e in cap.spec.all_endpoints)
        lines.append(f"| `{cap.name}` | {cap.spec.kind} | {cap.spec.title} | {endpoints} | {price_text} |")
    return "\n".join(lines) + "\n"


__all__ = ["AppState", "ConfigError", "build_server", "catalog_entries", "job_result"]
