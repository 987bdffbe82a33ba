"""fal.ai's queue: submit, follow over the SSE status stream (polling if it breaks), fetch.

A completed job costs three requests whatever its length (submit, one stream, result); the
fal-client library would poll ten times a second instead. Protocol facts:
../shared/notes/fal-queue-protocol.md.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

import anyio
import httpx
from httpx_sse import SSEError, aconnect_sse

from mcp_audio.errors import ProviderError, UpstreamJobFailed, UpstreamUnavailable
from mcp_audio.providers._http import (
    NOT_SENT_ERRORS,
    SAFE_SUBMIT_STATUSES,
    HttpProvider,
    describe_error_body,
    error_detail,
    raise_for_status,
    require_key,
    send,
)
from mcp_audio.providers.base import FileSink, Report, Submitted, Update

log = logging.getLogger("mcp_audio.fal")
KEY_ENV = "FAL_KEY"


def queue_app_path(endpoint: str) -> str:
    """Status/result/cancel URLs use only `{owner}/{alias}` of an endpoint id."""
    parts = endpoint.strip("/").split("/")
    keep = 3 if parts[0] in ("workflows", "comfy") else 2
    return "/".join(parts[:keep])


class FalProvider(HttpProvider):
    name = "fal"
    max_upload_bytes = 100 * 2**20  # fal-client's single-request upload limit (larger needs multipart)
    takes_file_bytes = False  # local files go to fal storage; the model reads the URL
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
        poll_interval: tuple[float, float] = (0.5, 5.0),
        stream_read_timeout_s: float = 60.0,
        retry_attempts: int = 5,
        retry_backoff: tuple[float, float] = (0.5, 8.0),
    ) -> None:
        self._queue_url = queue_url.rstrip("/")
        self._run_url = run_url.rstrip("/")
        self._storage_urls = (rest_url.rstrip("/"), cdn_url.rstrip("/"))
        self._fal_client: Any = None  # fal_client.AsyncClient, created on the first upload
        super().__init__(api_key, http, httpx.Timeout(30.0, connect=10.0))
        self._poll_interval = poll_interval
        self._stream_timeout = httpx.Timeout(30.0, connect=10.0, read=stream_read_timeout_s)
        self._retry: dict[str, Any] = {"attempts": retry_attempts, "backoff": retry_backoff}

    async def health(self) -> str:
        """fal has no health endpoint: a request to the queue host proves DNS, TLS and routing."""
        try:
            response = await self._http.get(self._queue_url, headers=self._headers())
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(f"fal queue unreachable ({type(exc).__name__})", provider="fal") from exc
        return f"queue reachable (HTTP {response.status_code})"

    def _headers(self) -> dict[str, str]:
        key = require_key(self._api_key, KEY_ENV, "fal.ai, which needs an API key (get one at fal.ai/dashboard/keys)")
        return {"Authorization": f"Key {key}"}

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("headers", self._headers())
        return await send(self._http, method, url, provider="fal", key_env=KEY_ENV, **(self._retry | kwargs))

    async def submit(self, endpoint: str, payload: dict[str, Any]) -> Submitted:
        # Only answers that prove no job was created (429, ingress 5xx) and connection
        # failures before sending are retried: a read timeout may hide a billed job.
        response = await self._send(
            "POST",
            f"{self._queue_url}/{endpoint}",
            json=payload,
            retry_statuses=SAFE_SUBMIT_STATUSES,
            retry_errors=NOT_SENT_ERRORS,
        )
        data = response.json()
        request_id = str(data["request_id"])
        base = f"{self._queue_url}/{queue_app_path(endpoint)}/requests/{request_id}"
        handle = {
            "request_id": request_id,
            "status_url": data.get("status_url") or f"{base}/status",
            "response_url": data.get("response_url") or base,
            "cancel_url": data.get("cancel_url") or f"{base}/cancel",
        }
        return Submitted(upstream_id=request_id, handle=handle)

    async def follow(self, endpoint: str, handle: dict[str, Any], report: Report, files: FileSink) -> dict[str, Any]:
        watcher = _StatusWatcher(report)
        if not await self._stream(handle, watcher):
            await self._poll(handle, watcher)
        if watcher.error is not None:
            # The run failed: the result URL answers with the model's own error body.
            response = await self._http.get(handle["response_url"], headers=self._headers())
            detail = error_detail(response) if response.status_code >= 400 else ""
            raise UpstreamJobFailed(f"fal job failed: {detail or watcher.error}", provider="fal")
        response = await self._send("GET", handle["response_url"])
        output: dict[str, Any] = response.json()
        return output

    async def _stream(self, handle: dict[str, Any], watcher: _StatusWatcher) -> bool:
        """Follow the SSE status stream; True once COMPLETED was seen, False if it broke."""
        url = f"{handle['status_url']}/stream"
        try:
            async with aconnect_sse(
                self._http, "GET", url, params={"logs": "1"}, headers=self._headers(), timeout=self._stream_timeout
            ) as source:
                if source.response.status_code in (401, 403):
                    await self._send("GET", handle["status_url"], attempts=1)  # raises AuthenticationFailed
                if source.response.status_code != 200:
                    log.info("status stream answered HTTP %d; polling instead", source.response.status_code)
                    return False
                async for event in source.aiter_sse():
                    if event.data and await watcher.see(json.loads(event.data)):
                        return True
        except (httpx.TransportError, SSEError, ValueError) as exc:
            log.info("status stream broke (%s); polling instead", type(exc).__name__)
        return False

    async def _poll(self, handle: dict[str, Any], watcher: _StatusWatcher) -> None:
        """Poll the status URL with growing intervals until COMPLETED."""
        interval, ceiling = self._poll_interval
        while True:
            response = await self._send("GET", handle["status_url"], params={"logs": "1"})
            if await watcher.see(response.json()):
                return
            await anyio.sleep(interval)
            interval = min(ceiling, interval * 1.5)

    async def stream(
        self, endpoint: str, payload: dict[str, Any], report: Report, partial_path: str | None, files: FileSink
    ) -> dict[str, Any]:
        """POST to fal.run and read its SSE: every event is an output so far; the last is final."""
        last: dict[str, Any] | None = None
        try:
            async with aconnect_sse(
                self._http,
                "POST",
                f"{self._run_url}/{endpoint}",
                json=payload,
                headers=self._headers(),
                timeout=self._stream_timeout,
            ) as source:
                if source.response.status_code >= 400:
                    await source.response.aread()
                    raise_for_status(source.response, provider="fal", key_env=KEY_ENV)
                async for event in source.aiter_sse():
                    if not event.data:
                        continue
                    last = json.loads(event.data)
                    partial = _dig(last, partial_path) if partial_path else None
                    await report(Update(state="running", partial=partial if isinstance(partial, str) else None))
        except (httpx.TransportError, SSEError, ValueError) as exc:
            # Resending could bill twice; the agent decides whether to call again.
            raise UpstreamUnavailable(
                f"fal's stream broke ({type(exc).__name__}) before the final result; call the tool again.",
                provider="fal",
            ) from exc
        if last is None:
            raise UpstreamJobFailed("fal's stream ended without a result", provider="fal")
        return last

    async def upload(self, data: bytes, content_type: str, file_name: str) -> str:
        """Upload through fal-client (token, then CDN), pointed at the configured storage hosts."""
        import fal_client
        import fal_client.client

        # fal-client reads its hosts from module globals; this is its only seam for proxies and tests.
        fal_client.client.REST_URL, fal_client.client.CDN_URL = self._storage_urls
        if self._fal_client is None:
            self._fal_client = fal_client.AsyncClient(key=self._headers()["Authorization"].removeprefix("Key "))
        try:
            url: str = await self._fal_client.upload(data, content_type, file_name)
        except httpx.HTTPStatusError as exc:
            raise_for_status(exc.response, provider="fal", key_env=KEY_ENV)
            raise
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(
                f"fal storage could not be reached ({type(exc).__name__}).", provider="fal"
            ) from exc
        return url

    async def cancel(self, endpoint: str, handle: dict[str, Any]) -> bool:
        try:
            await self._send("PUT", handle["cancel_url"], attempts=2)
        except ProviderError as exc:
            if exc.status_code in (400, 404):  # ALREADY_COMPLETED / NOT_FOUND
                return False
            raise
        return True


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
