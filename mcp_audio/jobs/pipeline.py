"""One tool call, from arguments to a running job: validate, resolve the file inputs, write the
job row and start it. The MCP tool handler only adapts this to MCP (roots, progress, results).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcp_audio.catalog import Capability, PreparedCall
from mcp_audio.core.pricing import Confirm
from mcp_audio.files.inputs import InputResolver
from mcp_audio.files.uploads import SCHEME, Uploads
from mcp_audio.jobs.runner import JobRunner
from mcp_audio.providers.base import UpstreamRequest
from mcp_audio.store import LOCAL_PRINCIPAL, Job, JobStore

if TYPE_CHECKING:
    import httpx


class CallPipeline:
    def __init__(self, store: JobStore, runner: JobRunner, uploads: Uploads | None = None) -> None:
        self._store = store
        self._runner = runner
        self._uploads = uploads
        self._http: httpx.AsyncClient | None = None  # for file inputs given as URLs, made on first use

    async def start(
        self,
        capability: Capability,
        arguments: dict[str, Any],
        roots: list[Path],
        principal: str = LOCAL_PRINCIPAL,
        confirm: Confirm | None = None,
    ) -> Job:
        """Raises InvalidArguments, ConfigError, SpendLimitExceeded or UpstreamError (an upload)
        before any job exists; afterwards every failure is recorded on the job. Saved voices are
        `principal`'s own: another's can't be used, nor seen in an error's list. `confirm` may ask
        the user about the estimated cost (NotConfirmed)."""
        request = await self.request(capability, arguments, roots, principal)
        return await self._runner.start(capability, request, principal, confirm)

    def prepare(self, capability: Capability, arguments: dict[str, Any], principal: str) -> PreparedCall:
        """Validate a call's arguments (voices: presets, `principal`'s saved voices) without I/O."""
        return capability.prepare(
            arguments,
            lambda name: self._store.find_voice(name, principal),
            lambda family: self._store.voice_names(family, principal),
        )

    async def request(
        self, capability: Capability, arguments: dict[str, Any], roots: list[Path], principal: str = LOCAL_PRINCIPAL
    ) -> UpstreamRequest:
        """A call made ready for its upstream: validated, its key checked, its file inputs resolved."""
        call = self.prepare(capability, arguments, principal)
        self._runner.providers.get(
            capability.provider
        ).check_configured()  # a missing key fails before any file is read or uploaded
        roots = await self._with_uploads(capability, call.body, roots, principal)
        return await self.resolve(capability, call, roots, principal)

    async def resolve(
        self, capability: Capability, call: PreparedCall, roots: list[Path], principal: str = LOCAL_PRINCIPAL
    ) -> UpstreamRequest:
        """A prepared call's file inputs made into what its upstream takes (read, checked, uploaded)."""
        provider = self._runner.providers.get(capability.provider)
        return await InputResolver(self._store, self._client, principal).resolve(capability, call, provider, roots)

    async def _with_uploads(
        self, capability: Capability, body: dict[str, Any], roots: list[Path], principal: str
    ) -> list[Path]:
        """`upload://ID` file inputs become the caller's uploaded files (its own folder only)."""
        if self._uploads is None:
            return roots
        for spec in capability.file_inputs:
            value = body.get(spec.sent_name)  # the body is keyed by upstream field names
            if isinstance(value, str) and value.startswith(SCHEME):
                body[spec.sent_name] = str(await self._uploads.resolve(principal, spec.name, value))
                roots = [*roots, self._uploads.folder(principal)]
        return roots

    def _client(self) -> httpx.AsyncClient:
        import httpx

        from mcp_audio.net import http_client

        if self._http is None:
            self._http = http_client(timeout=httpx.Timeout(60.0, connect=10.0))
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
