"""The one guarded fetch of a URL someone else chose: a caller's file input, an upstream's output file.

A URL is fetched only if it is `https` and every address its host resolves to is public, or it
is on a configured upstream's origin (proxies, the loopback sandbox) or a host the operator
allows (MCP_AUDIO_ALLOWED_FETCH_HOSTS). No credentials in URLs, at most MAX_REDIRECTS, each hop
checked the same way. The address check happens where the connection is made: the host is
resolved once, checked, and the socket connected to that checked address (TLS still verifies
the name), so a DNS answer that changes between check and connect (rebinding) reaches nothing.
Every refusal and every failure to connect reads the same (`refused_text`): an answer must not
tell an open port inside the network from a closed one.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpcore
import httpx

from mcp_audio.net import CONNECTION_LIMITS, ssl_context

if TYPE_CHECKING:
    from mcp_audio.config import ServerSettings

__all__ = [
    "MAX_REDIRECTS",
    "FetchPolicy",
    "FetchRefused",
    "fetch_policy",
    "guarded_client",
    "is_public",
    "refused_text",
]

MAX_REDIRECTS = 3
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Ranges `is_global` lets through on Python 3.11: IPv6 forms that reach an IPv4 address (or none)
# inside, and IANA's special-purpose IPv4 blocks (protocol assignments, the 6to4 relay).
_SPECIAL = tuple(
    ipaddress.ip_network(net)
    for net in ("::/96", "64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "2001::/32", "192.0.0.0/24", "192.88.99.0/24")
)


class FetchRefused(Exception):
    """A URL this server does not fetch, or whose host could not be reached (one text for both)."""


def refused_text(url: str) -> str:
    return (
        f"not fetched: {url[:100]} (this server fetches only https URLs of public hosts, or hosts in "
        "MCP_AUDIO_ALLOWED_FETCH_HOSTS; this one was refused or could not be reached)"
    )


def is_public(address: str) -> bool:
    """A globally routable unicast address: not loopback, private, link-local, CGNAT, unique-local,
    multicast, reserved, unspecified, nor an IPv6 form of an IPv4 address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return False
    if any(ip.version == net.version and ip in net for net in _SPECIAL):
        return False
    return ip.is_global and not ip.is_multicast and not ip.is_reserved


def _host_key(host: str) -> str:
    return f"[{host}]" if ":" in host else host.lower()


@dataclass(frozen=True)
class FetchPolicy:
    """Which URLs skip the public-address rule: configured upstream origins and allowed hosts."""

    trusted: frozenset[tuple[str, str, int]] = frozenset()  # (scheme, host, port) of configured upstreams
    allowed_hosts: frozenset[str] = frozenset()  # `name` (any port) or `name:port`, as the operator wrote them

    @classmethod
    def of(cls, origins: Iterable[str], allowed_hosts: str | None = None) -> FetchPolicy:
        trusted = set()
        for origin in origins:
            try:
                url = httpx.URL(origin)
            except httpx.InvalidURL:
                continue
            if url.scheme in _DEFAULT_PORTS and url.host:
                trusted.add((url.scheme, _host_key(url.raw_host.decode("ascii")), _port(url)))
        hosts = {part.strip().lower() for part in (allowed_hosts or "").split(",") if part.strip()}
        return cls(frozenset(trusted), frozenset(hosts))

    def exempt(self, host: str, port: int, scheme: str | None = None) -> bool:
        """May `host:port` be reached over http or on any address? (`scheme` None: either)."""
        key = _host_key(host)
        if key in self.allowed_hosts or f"{key}:{port}" in self.allowed_hosts:
            return True
        return any(h == key and p == port and scheme in (None, s) for s, h, p in self.trusted)

    def check_url(self, url: httpx.URL) -> None:
        """The URL-level rules (scheme, credentials, host); the addresses are checked at connect."""
        if url.scheme not in _DEFAULT_PORTS or not url.host or url.userinfo:
            raise FetchRefused(refused_text(str(url)))
        if url.scheme != "https" and not self.exempt(url.raw_host.decode("ascii"), _port(url), url.scheme):
            raise FetchRefused(refused_text(str(url)))


def _port(url: httpx.URL) -> int:
    return url.port or _DEFAULT_PORTS[url.scheme]


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


def fetch_policy(settings: ServerSettings) -> FetchPolicy:
    """This server's rule: its configured upstream origins, and MCP_AUDIO_ALLOWED_FETCH_HOSTS."""
    from mcp_audio.core.upstreams import UPSTREAMS

    origins = [
        settings.url_of(upstream, url.param)
        for upstream in UPSTREAMS.values()
        for url in upstream.urls
        if "://" in settings.url_of(upstream, url.param)
    ]
    return FetchPolicy.of(origins, settings.allowed_fetch_hosts)
