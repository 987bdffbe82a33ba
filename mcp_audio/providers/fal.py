"""fal.ai: the queue (submit, follow over the SSE status stream, polling if it breaks, result),
streaming runs on fal.run, and storage uploads through fal-client.

A completed job costs three requests whatever its length (submit, one stream, result); the
fal-client library would poll ten times a second instead. Protocol facts:
../shared/notes/fal-queue-protocol.md.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
import httpx
from httpx_sse import SSEError, aconnect_sse
from pydantic import BaseModel, ConfigDict

from mcp_audio.core.errors import UpstreamError, UpstreamJobFailed, UpstreamUnavailable
from mcp_audio.core.upstreams import FAL
from mcp_audio.net import ssl_context
from mcp_audio.providers._http import (
    HttpProvider,
    describe_error_body,
    error_detail,
    json_object,
    raise_for_status,
    transport_error,
)
from mcp_audio.providers.base import FileBytes, FileSink, Pacing, Report, Submitted, Update, UpstreamRequest

log = logging.getLogger("mcp_audio.fal")


class FalHandle(BaseModel):
    """What following a fal queue job needs; stored with the job, validated when it is resumed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request_id: str
    status_url: str
    response_url: str
    cancel_url: str
    webhook: bool = False  # submitted with fal_webhook: the end is announced, no stream is held


_NO_SUCH_REQUEST = "00000000-0000-0000-0000-000000000000"


def _created_nothing(response: httpx.Response) -> bool:
    """fal-client's rule: 408, 409 and 429, and 502/503/504 from the ingress (no request id), create no job."""
    status = response.status_code
    return status in (408, 409, 429) or (status in (502, 503, 504) and not response.headers.get("x-fal-request-id"))


def _created_anyway(response: httpx.Response) -> bool:
    """A 5xx that carries a request id: the job exists and runs (and bills) whatever the answer said."""
    return response.status_code >= 500 and bool(response.headers.get("x-fal-request-id"))


def queue_app_path(endpoint: str) -> str:
    """Status/result/cancel URLs use only `{owner}/{alias}` of an endpoint id."""
    parts = endpoint.strip("/").split("/")
    keep = 3 if parts[0] in ("workflows", "comfy") else 2
    return "/".join(parts[:keep])


class FalProvider(HttpProvider):
    upstream = FAL
    handle_type = FalHandle
    # Over 100 MiB fal-client uploads in 10 MiB parts (fal's multipart upload); fal publishes no
    # maximum. 1 GiB holds 1.5 hours of 48 kHz stereo WAV, and the file is read into memory.
    max_upload_bytes = 2**30
    upload_lifetime_s = 24 * 3600.0  # conservative: fal keeps uploads for days, we re-upload after one

    def __init__(
        self,
        *,
        api_key: str | None,
        queue_url: str = "https://queue.fal.run",
        run_url: str = "https://fal.run",
        rest_url: str = "https://rest.fal.ai",
        cdn_url: str = "https://v3.fal.media",
        http: httpx.AsyncClient | None = None,
        pacing: Pacing | None = None,
        webhook_url: str | None = None,
    ) -> None:
        super().__init__(api_key, http, httpx.Timeout(30.0, connect=10.0), pacing)
        self._webhook_url = webhook_url
        self._queue_url = queue_url.rstrip("/")
        self._run_url = run_url.rstrip("/")
        self._storage = _FalStorage(rest_url.rstrip("/"), cdn_url.rstrip("/"))
        self._stream_timeout = httpx.Timeout(30.0, connect=10.0, read=self._pacing.stream_read_timeout_s)

    async def aclose(self) -> None:
        await self._storage.aclose()
        await super().aclose()

    async def health(self) -> str:
        """fal has no health endpoint: a request to the queue host proves DNS, TLS and routing."""
        try:
            response = await self._http.get(self._queue_url, headers=self._headers())
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(
                f"queue unreachable ({type(exc).__name__})", provider=self.upstream.label
            ) from exc
        return f"queue reachable (HTTP {response.status_code})"

    async def verify_key(self) -> str:
        """A status request for a job that does not exist: fal checks the key before it looks."""
        url = f"{self._queue_url}/fal-ai/whisper/requests/{_NO_SUCH_REQUEST}/status"
        try:
            response = await self._http.get(url, headers=self._headers())
        except httpx.TransportError as exc:
            raise transport_error(exc, self.upstream, sent_once=False) from exc
        if response.status_code in (401, 403):
            raise_for_status(response, self.upstream)
        return f"accepted (a status request for no job answered HTTP {response.status_code}, not 401)"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Key {self._key()}"}

    async def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("headers", self._headers())
        return await self._send(method, url, **kwargs)

    # --- queued ------------------------------------------------------------------------------

    async def submit(self, request: UpstreamRequest) -> Submitted:
        endpoint = request.endpoint
        response = await self._call(
            "POST",
            f"{self._queue_url}/{endpoint}",
            json=request.body,
            params={"fal_webhook": self._webhook_url} if self._webhook_url else None,
            idempotent=False,
            proves_nothing_ran=_created_nothing,
            accept=_created_anyway,
        )
        if response.status_code >= 400:
            # The gateway failed after fal created the job: follow that job, never submit another.
            request_id = response.headers["x-fal-request-id"]
            log.warning(
                "submit of %s answered HTTP %d after fal created request %s: following it",
                endpoint,
                response.status_code,
                request_id,
            )
            data: dict[str, Any] = {"request_id": request_id}
        else:
            data = json_object(response, self.upstream, f"the submit of {endpoint}")
        request_id = str(data.get("request_id") or "")
        if not request_id:
            raise UpstreamError(
                f"fal accepted the submit of {endpoint} but sent no request_id: {str(data)[:200]}",
                provider=self.upstream.label,
                may_have_run=True,
            )
        base = f"{self._queue_url}/{queue_app_path(endpoint)}/requests/{request_id}"
        handle = FalHandle(
            request_id=request_id,
            status_url=data.get("status_url") or f"{base}/status",
            response_url=data.get("response_url") or base,
            cancel_url=data.get("cancel_url") or f"{base}/cancel",
            webhook=self._webhook_url is not None,
        )
        return Submitted(upstream_id=request_id, handle=handle)

    # --- webhooks: the delivery was verified and stored by webhooks.py ------------------------

    def hears(self, handle: FalHandle) -> bool:
        return handle.webhook

    def webhook_output(self, delivery: dict[str, Any]) -> dict[str, Any] | None:
        payload = delivery.get("payload")
        if delivery.get("status") != "OK":
            detail = delivery.get("error") or (describe_error_body(payload) if payload else "") or "no detail"
            raise UpstreamJobFailed(f"fal job failed: {str(detail)[:500]}", provider=self.upstream.label)
        # A payload fal could not attach comes as null with `payload_error`: fetch the result then.
        return payload if isinstance(payload, dict) else None

    async def is_finished(self, endpoint: str, handle: FalHandle) -> bool:
        response = await self._call("GET", handle.status_url)
        return json_object(response, self.upstream, "a status request").get("status") == "COMPLETED"

    async def follow(self, endpoint: str, handle: FalHandle, report: Report, files: FileSink) -> dict[str, Any]:
        watcher = _StatusWatcher(report)
        if not await self._stream(handle, watcher):
            await self._poll(handle, watcher)
        if watcher.error is not None:
            # The run failed: the result URL answers with the model's own error body.
            response = await self._http.get(handle.response_url, headers=self._headers())
            detail = error_detail(response) if response.status_code >= 400 else ""
            raise UpstreamJobFailed(f"fal job failed: {detail or watcher.error}", provider=self.upstream.label)
        response = await self._call("GET", handle.response_url)
        return json_object(response, self.upstream, "the result request")

    async def _stream(self, handle: FalHandle, watcher: _StatusWatcher) -> bool:
        """Follow the SSE status stream; True once COMPLETED was seen, False if it broke.

        While the stream sends no status for `stream_idle_check_s`, one status request checks
        that the job has not finished unseen behind a stream of keep-alives.
        """
        idle = self._pacing.stream_idle_check_s
        last_seen = anyio.current_time()
        completed = False

        def touch() -> None:
            nonlocal last_seen
            last_seen = anyio.current_time()

        async def cross_check(scope: anyio.CancelScope) -> None:
            nonlocal completed
            while True:
                await anyio.sleep(max(0.0, last_seen + idle - anyio.current_time()))
                if anyio.current_time() - last_seen < idle:
                    continue
                touch()
                try:
                    response = await self._call("GET", handle.status_url, params={"logs": "1"})
                    done = await watcher.see(json_object(response, self.upstream, "a status request"))
                except UpstreamError as exc:  # the stream may still deliver; check again later
                    log.info("status check during a silent stream failed: %s", exc.detail)
                    continue
                if done:
                    log.info("status stream was silent for %.0f s; a status request found the job done", idle)
                    completed = True
                    scope.cancel()
                    return

        async with anyio.create_task_group() as checks:
            checks.start_soon(cross_check, checks.cancel_scope)
            completed = await self._read_stream(handle, watcher, touch) or completed
            checks.cancel_scope.cancel()
        return completed

    async def _read_stream(self, handle: FalHandle, watcher: _StatusWatcher, seen: Callable[[], None]) -> bool:
        url = f"{handle.status_url}/stream"
        try:
            async with (
                self._long_held() as http,
                aconnect_sse(
                    http, "GET", url, params={"logs": "1"}, headers=self._headers(), timeout=self._stream_timeout
                ) as source,
            ):
                if source.response.status_code in (401, 403):
                    await self._call("GET", handle.status_url, attempts=1)  # raises AuthenticationFailed
                if source.response.status_code != 200:
                    log.info("status stream answered HTTP %d; polling instead", source.response.status_code)
                    return False
                async for event in source.aiter_sse():
                    seen()
                    if event.data and await watcher.see(json.loads(event.data)):
                        return True
        except (httpx.TransportError, SSEError, ValueError) as exc:
            log.info("status stream broke (%s); polling instead", type(exc).__name__)
        return False

    async def _poll(self, handle: FalHandle, watcher: _StatusWatcher) -> None:
        """Poll the status URL with growing intervals until COMPLETED."""
        interval, ceiling = self._pacing.poll_initial_s, self._pacing.poll_max_s
        while True:
            response = await self._call("GET", handle.status_url, params={"logs": "1"})
            if await watcher.see(json_object(response, self.upstream, "a status request")):
                return
            await anyio.sleep(interval)
            interval = min(ceiling, interval * 1.5)

    async def cancel(self, endpoint: str, handle: FalHandle) -> bool:
        try:
            await self._call("PUT", handle.cancel_url, attempts=2)
        except UpstreamError as exc:
            if exc.status in (400, 404):  # ALREADY_COMPLETED / NOT_FOUND
                return False
            raise
        return True

    # --- one-shot ----------------------------------------------------------------------------

    async def run(self, request: UpstreamRequest, report: Report, files: FileSink) -> dict[str, Any]:
        """POST to fal.run and read its SSE: every event is an output so far; the last is final."""
        last: dict[str, Any] | None = None
        try:
            async with (
                self._long_held() as http,
                aconnect_sse(
                    http,
                    "POST",
                    f"{self._run_url}/{request.endpoint}",
                    json=request.body,
                    headers=self._headers(),
                    timeout=self._stream_timeout,
                ) as source,
            ):
                if source.response.status_code >= 400:
                    await source.response.aread()
                    raise_for_status(source.response, self.upstream, may_have_run=True)
                async for event in source.aiter_sse():
                    if not event.data:
                        continue
                    last = json.loads(event.data)
                    partial = _dig(last, request.partial_path) if request.partial_path else None
                    await report(Update(state="running", partial=partial if isinstance(partial, str) else None))
        except (SSEError, ValueError) as exc:
            raise UpstreamUnavailable(
                f"'s stream broke ({type(exc).__name__}) before the final result",
                provider=self.upstream.label,
                may_have_run=True,
            ) from exc
        except httpx.TransportError as exc:
            raise transport_error(exc, self.upstream, sent_once=True) from exc
        if last is None:
            raise UpstreamJobFailed("fal's stream ended without a result", provider=self.upstream.label)
        return last

    # --- storage -----------------------------------------------------------------------------

    async def upload(self, endpoint: str, file: FileBytes) -> str:
        """Upload to fal storage (token, then CDN); return the file's URL."""
        import fal_client

        try:
            url: str = await self._storage.client(self._key()).upload(file.data, file.content_type, file.name)
            return url
        except httpx.HTTPStatusError as exc:
            raise_for_status(exc.response, self.upstream)
            raise
        except fal_client.client.FalClientHTTPError as exc:
            raise_for_status(exc.response, self.upstream)
            raise
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(
                f"storage could not be reached ({type(exc).__name__}).", provider=self.upstream.label
            ) from exc


class _Rerouted(httpx.AsyncBaseTransport):
    """Sends requests for fal's storage hosts to the configured ones (proxies, loopback tests)."""

    def __init__(self, routes: dict[str, httpx.URL]) -> None:
        self._routes = routes
        self._inner = httpx.AsyncHTTPTransport(verify=ssl_context())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        target = self._routes.get(request.url.host)
        if target is not None:
            request.url = request.url.copy_with(scheme=target.scheme, host=target.host, port=target.port)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class _FalStorage:
    """One fal-client AsyncClient for uploads, its hosts routed to the configured storage URLs.

    fal-client names its storage hosts in module constants; rather than rewrite those (process
    globals), every HTTP client it uses for storage is given a transport that reroutes them.
    """

    def __init__(self, rest_url: str, cdn_url: str) -> None:
        self._routes = {"rest.fal.ai": httpx.URL(rest_url), "v3.fal.media": httpx.URL(cdn_url)}
        self._client: Any = None
        self._transport: _Rerouted | None = None

    def client(self, key: str) -> Any:
        if self._client is None:
            self._transport = _Rerouted(self._routes)
            self._client = _routed_fal_client(key, self._transport)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None and "_client" in vars(self._client):  # fal-client's cached REST client
            rest = await self._client._client
            await rest.aclose()
        if self._transport is not None:
            await self._transport.aclose()


def _routed_fal_client(key: str, transport: httpx.AsyncBaseTransport) -> Any:
    """fal_client.AsyncClient whose three storage HTTP clients (REST, CDN token, CDN) use `transport`."""
    import asyncio
    from datetime import datetime

    import fal_client
    from asyncstdlib import cached_property as async_cached_property  # what fal-client itself uses
    from fal_client import client as fal

    def routed(**kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=transport, **kwargs)  # TLS is the transport's

    class TokenManager(fal.AsyncCDNTokenManager):
        async def _refresh_token(self) -> Any:
            async with routed() as http:
                response = await http.post(self._url, headers=self._headers, json={})
                response.raise_for_status()
                data = response.json()
            return fal.CDNToken(
                token=data["token"],
                token_type=data["token_type"],
                base_upload_url=data["base_url"],
                expires_at=datetime.fromisoformat(data["expires_at"]),
            )

    class RoutedClient(fal_client.AsyncClient):
        @async_cached_property(asyncio.Lock)
        async def _client(self) -> httpx.AsyncClient:
            auth = await self._auth
            return routed(headers={"Authorization": auth.header_value, "User-Agent": fal.USER_AGENT})

        @async_cached_property(asyncio.Lock)
        async def _token_manager(self) -> Any:
            return TokenManager(await self._auth)

        @asynccontextmanager
        async def _cdn_client(self) -> AsyncIterator[httpx.AsyncClient]:
            async with routed(headers={"User-Agent": fal.USER_AGENT}, timeout=self.default_timeout) as http:
                yield http

    return RoutedClient(key=key)


def _dig(data: Any, path: str) -> Any:
    for key in path.split("."):
        data = data.get(key) if isinstance(data, dict) else None
    return data


class _StatusWatcher:
    """Turns fal status objects into Updates, reporting only what changed."""

    def __init__(self, report: Report) -> None:
        self._report = report
        self._seen_logs: set[tuple[Any, Any]] = set()
        self._last: tuple[str, Any] | None = None
        self.error: str | None = None

    async def see(self, status: dict[str, Any]) -> bool:
        """Report a status object; True when the job is COMPLETED (successfully or not)."""
        state = status.get("status")
        new_logs = []
        for entry in status.get("logs") or []:
            if not isinstance(entry, dict):
                continue
            key = (entry.get("timestamp"), entry.get("message"))
            if key not in self._seen_logs:
                self._seen_logs.add(key)
                new_logs.append(str(entry.get("message", "")))
        if state == "COMPLETED":
            if status.get("error"):
                self.error = describe_error_body({"detail": status["error"]})
            return True
        mapped: Literal["queued", "running"] = "queued" if state == "IN_QUEUE" else "running"
        position = status.get("queue_position") if state == "IN_QUEUE" else None
        if new_logs or self._last != (mapped, position):
            self._last = (mapped, position)
            await self._report(Update(state=mapped, queue_position=position, logs=new_logs))
        return False
