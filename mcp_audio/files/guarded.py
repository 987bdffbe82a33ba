"""The guarded transport behind `fetch.py`'s rules: httpx and httpcore, loaded at the first fetch
(not at start-up). The host is resolved once, every address checked, and the socket connected to
a checked address, so a DNS answer that changes between check and connect reaches nothing."""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from mcp_audio.files.fetch import MAX_REDIRECTS, FetchPolicy, FetchRefused, is_public, refused_text
from mcp_audio.net import CONNECTION_LIMITS, ssl_context

__all__ = ["guarded_client"]


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves the host once, checks every address, and connects to a checked one."""

    def __init__(self, policy: FetchPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        import anyio

        if self._policy.exempt(host, port):
            return await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        try:
            with anyio.fail_after(timeout or 10.0):
                found = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError, UnicodeError) as exc:
            raise FetchRefused(refused_text(host)) from exc
        addresses = list(dict.fromkeys(str(sockaddr[0]) for *_, sockaddr in found))
        if not addresses or not all(is_public(address) for address in addresses):
            raise FetchRefused(refused_text(host))
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout, OSError):
                continue
        raise FetchRefused(refused_text(host))

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise FetchRefused(refused_text(path))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncBaseTransport):
    """Checks each request's URL (redirects are requests too), then sends it on the guarded pool."""

    def __init__(self, policy: FetchPolicy) -> None:
        self._policy = policy
        # httpx takes no network backend: its transport is kept for the request mapping, and its pool
        # replaced by one on the guarded backend (same settings as httpx would give it).
        self._inner = httpx.AsyncHTTPTransport(verify=ssl_context(), trust_env=False)
        self._inner._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context(),
            max_connections=CONNECTION_LIMITS.max_connections,
            max_keepalive_connections=CONNECTION_LIMITS.max_keepalive_connections,
            keepalive_expiry=CONNECTION_LIMITS.keepalive_expiry,
            network_backend=_GuardedBackend(policy),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._policy.check_url(request.url)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def guarded_client(policy: FetchPolicy, timeout: httpx.Timeout) -> httpx.AsyncClient:
    """A client that fetches only what `policy` allows (no proxy from the environment: a proxy
    would resolve the host itself, past the address check)."""
    return httpx.AsyncClient(
        transport=_GuardedTransport(policy),
        timeout=timeout,
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        trust_env=False,
    )
