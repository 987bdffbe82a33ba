"""One tool call, from arguments to a running job: validate, resolve the file inputs, write the
job row and start it. The MCP tool handler only adapts this to MCP (roots, progress, results).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcp_audio.catalog import Capability, PreparedCall
from mcp_audio.core.job import IdempotencyKey
from mcp_audio.core.pricing import Confirm
from mcp_audio.core.voices import SavedVoice
from mcp_audio.files.fetch import FetchPolicy
from mcp_audio.files.inputs import InputResolver
from mcp_audio.files.uploads import SCHEME, Uploads
from mcp_audio.jobs.runner import JobRunner
from mcp_audio.providers.base import UpstreamRequest
from mcp_audio.store import LOCAL_PRINCIPAL, Job, JobStore

if TYPE_CHECKING:
    import httpx


# The folders local file inputs may be read from (the client's roots or MCP_AUDIO_ALLOWED_DIRS).
Roots = Callable[[], Awaitable[list[Path]]]


class CallPipeline:
    def __init__(
        self, store: JobStore, runner: JobRunner, uploads: Uploads | None = None, policy: FetchPolicy | None = None
    ) -> None:
        self._store = store
        self._runner = runner
        self._uploads = uploads
        self._policy = policy or FetchPolicy()  # which input URLs may be fetched (files/fetch.py)
        self._http: httpx.AsyncClient | None = None  # for file inputs given as URLs, made on first use

    async def start(
        self,
        capability: Capability,
        arguments: dict[str, Any],
        roots: Roots,
        principal: str = LOCAL_PRINCIPAL,
        confirm: Confirm | None = None,
        idempotency_key: str | None = None,
        traceparent: str | None = None,
    ) -> Job:
        """Raises InvalidArguments, ConfigError, SpendLimitExceeded or UpstreamError (an upload)
        before any job exists; afterwards every failure is recorded on the job. Saved voices are
        `principal`'s own: another's can't be used, nor seen in an error's list. `confirm` may ask
        the user about the estimated cost (NotConfirmed). `roots()` gives the folders local paths
        may be read from: asked only once the arguments are valid and one of them is a local path
        (asking a client for its roots is a round trip, and pointless for a URL or a text).
        `idempotency_key`: the caller's key for this call; a call sent again with it (same tool and
        arguments) gets the first call's job back before anything is read, uploaded or sent.
        `traceparent`: the call's W3C trace, kept with the job."""
        # Hashed as the caller sent them, before anything below fills in or rewrites a value.
        key = IdempotencyKey.of(idempotency_key, capability.name, arguments) if idempotency_key else None
        if key is not None and (replayed := await self._runner.replay(principal, key)) is not None:
            return replayed
        call = self.prepare(capability, arguments, await self.voices_for(capability, principal))
        request = await self._ready(capability, call, roots, principal)
        return await self._runner.start(
            capability, request, principal, confirm, cost=call.estimated_cost_usd, key=key, traceparent=traceparent
        )

    async def voices_for(self, capability: Capability, principal: str) -> list[SavedVoice]:
        """The caller's saved voices, read once and only for a tool that takes or saves one (a
        clone's name must not silently replace another voice)."""
        uses_voices = capability.spec.voice is not None or capability.spec.saves_voice is not None
        return await self._store.list_voices(principal) if uses_voices else []

    async def saved_voices(self, principal: str) -> list[SavedVoice]:
        """All of `principal`'s saved voices (a production checks every speaker's at once)."""
        return await self._store.list_voices(principal)

    @staticmethod
    def prepare(capability: Capability, arguments: dict[str, Any], voices: Sequence[SavedVoice]) -> PreparedCall:
        """Validate a call's arguments (voices: presets, or these saved voices) without I/O."""
        return capability.prepare(
            arguments,
            lambda name: next((voice for voice in voices if voice.name == name), None),
            lambda family: [voice.name for voice in voices if voice.family == family],
        )

    async def request(
        self, capability: Capability, arguments: dict[str, Any], roots: Roots, principal: str = LOCAL_PRINCIPAL
    ) -> UpstreamRequest:
        """A call made ready for its upstream: validated, its file inputs resolved."""
        call = self.prepare(capability, arguments, await self.voices_for(capability, principal))
        return await self._ready(capability, call, roots, principal)

    async def _ready(self, capability: Capability, call: PreparedCall, roots: Roots, principal: str) -> UpstreamRequest:
        provider = self._runner.providers.get(capability.provider)
        provider.check_configured()  # a missing key fails before any file is read or uploaded
        readable = await roots() if _names_local_path(capability, call.body) else []
        readable = await self._with_uploads(capability, call.body, readable, principal)
        return await self.resolve(capability, call, readable, principal)

    async def resolve(
        self, capability: Capability, call: PreparedCall, roots: list[Path], principal: str = LOCAL_PRINCIPAL
    ) -> UpstreamRequest:
        """A prepared call's file inputs made into what its upstream takes (read, checked, uploaded)."""
        provider = self._runner.providers.get(capability.provider)
        resolver = InputResolver(self._store, self._client, principal, self._runner.catalog)
        request = await resolver.resolve(capability, call, provider, roots)
        return replace(request, principal=principal)  # local renders are shared out per caller

    async def _with_uploads(
        self, capability: Capability, body: dict[str, Any], roots: list[Path], principal: str
    ) -> list[Path]:
        """`upload://ID` file inputs become the caller's uploaded files (its own folder only)."""
        if self._uploads is None:
            return roots
        used = False
        for spec in capability.file_inputs:
            value = body.get(spec.sent_name)  # the body is keyed by upstream field names
            if isinstance(value, str) and value.startswith(SCHEME):
                body[spec.sent_name] = str(await self._uploads.resolve(principal, spec.name, value))
                used = True
            elif isinstance(value, list):  # a list input (audio_join's files): each item may be an upload
                items = []
                for i, item in enumerate(value):
                    if isinstance(item, str) and item.startswith(SCHEME):
                        item = str(await self._uploads.resolve(principal, f"{spec.name}[{i}]", item))
                        used = True
                    items.append(item)
                body[spec.sent_name] = items
        return [*roots, self._uploads.folder(principal)] if used else roots

    def _client(self) -> httpx.AsyncClient:
        import httpx

        from mcp_audio.files.guarded import guarded_client

        if self._http is None:
            self._http = guarded_client(self._policy, httpx.Timeout(60.0, connect=10.0))
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()


def _names_local_path(capability: Capability, body: dict[str, Any]) -> bool:
    """Whether a file input is given as a local path (no scheme: not a URL, data: URI, upload or reference)."""
    for spec in capability.file_inputs:
        value = body.get(spec.sent_name)  # the body is keyed by upstream field names
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and "://" not in item and not item.startswith("data:"):
                return True
    return False


def fixed_roots(paths: Sequence[Path]) -> Roots:
    """Roots known beforehand (a production keeps its caller's with its row)."""

    async def roots() -> list[Path]:
        return list(paths)

    return roots
