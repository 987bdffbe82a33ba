"""MCP resources: the catalog, voices, jobs and saved files; and the README's tool table."""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.server.mcpserver.resources import FunctionResource
from mcp_types import ReadResourceResult

from mcp_audio.catalog import ADVANCED, CHOOSER, Capability, Catalog, Family, advanced_schema
from mcp_audio.core.errors import McpAudioError
from mcp_audio.core.manifest import VoiceFamily
from mcp_audio.core.redaction import redact
from mcp_audio.core.results import OutputFile
from mcp_audio.files.s3 import TooLargeToRead, read_saved
from mcp_audio.jobs import not_found_message
from mcp_audio.providers.base import VoiceCatalog
from mcp_audio.server.principal import current_principal
from mcp_audio.server.render import job_result, job_summary
from mcp_audio.server.state import AppState, Runtime


def _static(
    server: MCPServer[AppState], uri: str, *, name: str, title: str, mime_type: str, description: str
) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    """`@server.resource` for a URI without variables, minus the validating wrapper the SDK builds
    per function (a few ms each at every start-up, for functions that take no arguments)."""

    def add(fn: Callable[[], Any]) -> Callable[[], Any]:
        resource = FunctionResource(
            uri=uri, name=name, title=title, mime_type=mime_type, description=description, fn=fn
        )
        server.add_resource(resource)
        return fn

    return add


def add_resources(
    server: MCPServer[AppState],
    runtime: Runtime,
    catalog: Catalog,
    exposed: list[Capability],
    transport: str = "stdio",
) -> None:
    @_static(
        server,
        "audio://catalog",
        name="catalog",
        title="Audio model catalog",
        mime_type="application/json",
        description="Every audio tool: provider, upstream endpoints, kind, price, and its `advanced` settings' schema.",
    )
    def catalog_resource() -> str:
        return json.dumps(catalog_entries(exposed, catalog.families.values()), indent=1)

    live = any(cap.provider == "voice_api" for cap in exposed)
    if live:
        _add_voice_api_models(server, runtime)
    for family_name, family in catalog.voice_families.items():
        if live and family_name == VOICE_API_FAMILY:
            continue  # its voices are the upstream's live list: a static copy would shadow it
        _add_voice_family(server, family_name, family, _voice_users(exposed, family_name, catalog))

    @_static(
        server,
        "voices://cloned",
        name="voices-cloned",
        title="Saved cloned voices",
        mime_type="application/json",
        description="Voices saved by clone tools, usable by name as `voice` in the matching TTS tool.",
    )
    async def cloned_voices() -> str:
        voices = await runtime.get().store.list_voices(current_principal())
        return json.dumps([{"name": v.name, "family": v.family, "provider": v.provider} for v in voices], indent=1)

    @_static(
        server,
        "jobs://recent",
        name="jobs-recent",
        title="Recent jobs",
        mime_type="application/json",
        description="Your 20 most recent jobs, newest first.",
    )
    async def recent_jobs() -> str:
        jobs = await runtime.get().store.list_jobs(limit=20, principal=current_principal())
        return json.dumps([job_summary(job) for job in jobs], indent=1)

    @server.resource(
        "jobs://{job_id}",
        name="job",
        title="Job",
        mime_type="application/json",
        description="One job: status, progress, outputs or error.",
    )
    async def job_resource(job_id: str) -> str:
        state = runtime.get()
        job = await state.store.get_job(job_id, current_principal())  # another's job: as if there were none
        if job is None:
            raise ResourceNotFoundError(not_found_message(job_id))
        result = job_result(state.catalog, job, note=state.runner.waiting_note(job), remote=state.remote)
        return json.dumps(result.structured_content, indent=1)

    @server.resource(
        "files://{job_id}/{name}",
        name="saved-file",
        title="Saved output file",
        mime_type="application/octet-stream",
        description="The bytes of an output file this server saved, for clients on another machine; "
        "read with the file's own type (audio/wav, audio/mpeg, ...).",
    )
    async def saved_file(job_id: str, name: str) -> bytes:
        item = await _saved(runtime, job_id, name)
        if item is None or item.path is None:
            raise ResourceNotFoundError(f"No saved file '{name[:100]}' for job '{job_id[:64]}'")
        settings = runtime.get().settings
        # A resource read travels whole, base64 in one message, and is held so until the client reads
        # it: larger files are fetched by a route that streams (transport="http") or read from disk.
        limit = int(settings.max_resource_mb * 2**20)
        try:
            return read_saved(item.path, settings, max_bytes=limit)  # a local file, or an object in the bucket
        except TooLargeToRead as exc:
            raise ResourceError(_too_large(item, exc.size, settings.max_resource_mb, transport)) from None

    # A template declares one type for all its resources; each file's read gets its own.
    server.middleware.append(_SavedFileTypes(runtime))


def _too_large(item: OutputFile, size: int, limit_mb: float, transport: str) -> str:
    """Where a file too large for a resource read can be had instead."""
    job_id, name = (item.resource or "").removeprefix(SAVED_FILES).partition("/")[::2]
    if transport == "http":
        where = f"download it with `GET /files/{job_id}/{name}` on this server (same bearer token; range requests work)"
    else:
        where = f"read it at {item.path}"
    if item.url.startswith("https://"):
        where += f", or from {item.url[:300]} while the upstream keeps it"
    return (
        f"{item.file_name} is {size / 2**20:.1f} MB, over the {limit_mb:g} MB a files:// read returns "
        f"(MCP_AUDIO_MAX_RESOURCE_MB): {where}."
    )


async def _saved(runtime: Runtime, job_id: str, name: str) -> OutputFile | None:
    """A file the caller's job saved. Only paths the job itself recorded are served: the name is
    a key, never a path."""
    job = await runtime.get().store.get_job(job_id, current_principal())
    files = job.result.files if job and job.result else []
    return next((f for f in files if f.file_name == name and f.path), None)


class _SavedFileTypes:
    """Middleware: a `files://` read answers with the saved file's content type."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        result = await call_next(ctx)
        uri = str((ctx.params or {}).get("uri", ""))
        if ctx.method != "resources/read" or not uri.startswith(SAVED_FILES):
            return result
        job_id, _, name = uri.removeprefix(SAVED_FILES).partition("/")
        item = await _saved(self._runtime, unquote(job_id), unquote(name))
        content_type = (item.content_type if item is not None else None) or mimetypes.guess_type(name)[0]
        if content_type is None:
            return result
        if isinstance(result, ReadResourceResult):
            contents = [content.model_copy(update={"mime_type": content_type}) for content in result.contents]
            return result.model_copy(update={"contents": contents})
        if isinstance(result, dict) and isinstance(result.get("contents"), list):  # the result as sent
            return result | {"contents": [c | {"mimeType": content_type} for c in result["contents"]]}
        return result


SAVED_FILES = "files://"
VOICE_API_FAMILY = "voice-api"


def _add_voice_api_models(server: MCPServer[AppState], runtime: Runtime) -> None:
    # Listed as a resource (resources/list shows no templates) and as a template for filters.
    @_static(
        server,
        "voices://voice-api",
        name="voices-voice-api",
        title="Voice API voice models",
        mime_type="application/json",
        description="The Voice API's voice models (live, GET /v1/models), for voice_api_tts model_ids. "
        "Cached for 5 minutes.",
    )
    async def all_voice_api_models() -> str:
        return await voice_api_models()

    @server.resource(
        "voices://voice-api{?title,language,tag,sort}",
        name="voices-voice-api-search",
        title="Voice API voice models, filtered",
        mime_type="application/json",
        description="Voice models for voice_api_tts model_ids (GET /v1/models): filter by title (fuzzy), "
        "language, tag, sort. Cached for 5 minutes.",
    )
    async def voice_api_models(title: str = "", language: str = "", tag: str = "", sort: str = "") -> str:
        state = runtime.get()
        provider = state.runner.providers.get("voice_api")
        assert isinstance(provider, VoiceCatalog)
        try:
            provider.check_configured()
            models = await provider.list_models(
                title=title or None, language=language or None, tag=tag or None, sort=sort or None
            )
        except McpAudioError as exc:
            raise ResourceError(redact(str(exc), state.settings.secrets())) from exc
        return json.dumps(models, indent=1)


def _voice_users(exposed: list[Capability], family: str, catalog: Catalog) -> list[str]:
    """ "`voice` of speak with model 'qwen3'": each offered tool's argument that takes this family's
    voices, named as tools/list shows the tool."""
    users = []
    for cap in exposed:
        if cap.spec.voice and cap.spec.voice.family == family:
            listed = catalog.listed_as(cap.name)
            tool = f"{listed[0].name} with {CHOOSER} '{listed[1]}'" if listed else cap.name
            users.append(f"`{cap.spec.voice.input}` of {tool}")
    return users


def _add_voice_family(server: MCPServer[AppState], name: str, family: VoiceFamily, users: list[str]) -> None:
    where = f" for {', '.join(users)}" if users else ""
    if family.presets:
        description = f"{len(family.presets)} preset voices{where}: each one's name and notes."
    else:
        description = f"No presets: voices saved by clone tools (voices://cloned) go by name{where}."
    body = family.model_dump()

    @_static(
        server,
        f"voices://{name}",
        name=f"voices-{name}",
        title=family.title,
        mime_type="application/json",
        description=description,
    )
    def voices() -> str:
        return json.dumps(body, indent=1)


def catalog_entries(capabilities: Iterable[Capability], families: Iterable[Family] = ()) -> list[dict[str, Any]]:
    """Each tool's provider, endpoints and price, the JSON schema of its `advanced` group
    (tools/list states that group's members in words, to save context), and for a capability a
    family lists, that family's tool and the `model` choices that run it."""
    families = list(families)
    entries = []
    for cap in capabilities:
        entry: dict[str, Any] = {
            "tool": cap.name,
            "title": cap.spec.title,
            "kind": cap.spec.kind,
            "provider": cap.provider,
            "endpoints": cap.spec.all_endpoints,
            "price": cap.spec.price.model_dump(exclude_none=True) if cap.spec.price else None,
        }
        listed = _listed_as(cap.name, families)
        if listed:
            entry["listed_as"] = [{"tool": name, CHOOSER: choices} for name, choices in listed]
        advanced = advanced_schema(cap.spec)
        if advanced is not None:
            entry[ADVANCED] = advanced
        entries.append(entry)
    return entries


def _listed_as(tool: str, families: Iterable[Family]) -> list[tuple[str, list[str]]]:
    """Each family tool that lists `tool`, with the `model` choices that run it."""
    return [(family.name, choices) for family in families if (choices := family.member_of(tool))]


def tools_markdown(catalog: Catalog) -> str:
    """The README's tool table, generated from the manifests (a test keeps the README in sync)."""
    lines = [
        "| Tool | Listed as | Kind | What it does | Upstream endpoint(s) | Price |",
        "|---|---|---|---|---|---|",
    ]
    for cap in catalog.capabilities.values():
        price_text = cap.spec.price.describe() if cap.spec.price else "-"
        endpoints = "<br>".join(f"`{e}`" for e in cap.spec.all_endpoints)
        listed = "<br>".join(
            f"`{family}` {CHOOSER} {', '.join(f'`{c}`' for c in choices)}"
            for family, choices in _listed_as(cap.name, catalog.families.values())
        )
        lines.append(
            f"| `{cap.name}` | {listed or 'itself'} | {cap.spec.kind} | {cap.spec.title} | {endpoints} | {price_text} |"
        )
    return "\n".join(lines) + "\n"
