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
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

    from mcp_audio.config import ServerSettings

__all__ = [
    "MAX_REDIRECTS",
    "FetchPolicy",
    "FetchRefused",
    "fetch_policy",
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

    origins: tuple[str, ...] = ()  # configured upstream origins (`trusted` is what they name)
    allowed_hosts: frozenset[str] = frozenset()  # `name` (any port) or `name:port`, as the operator wrote them

    @classmethod
    def of(cls, origins: Iterable[str], allowed_hosts: str | None = None) -> FetchPolicy:
        hosts = {part.strip().lower() for part in (allowed_hosts or "").split(",") if part.strip()}
        return cls(tuple(origins), frozenset(hosts))

    @cached_property
    def trusted(self) -> frozenset[tuple[str, str, int]]:
        """(scheme, host, port) of the configured upstreams: parsed at the first fetch, as httpx
        parses them (httpx is not loaded before a fetch: it costs start-up time)."""
        import httpx

        trusted = set()
        for origin in self.origins:
            try:
                url = httpx.URL(origin)
            except httpx.InvalidURL:
                continue
            if url.scheme in _DEFAULT_PORTS and url.host:
                trusted.add((url.scheme, _host_key(url.raw_host.decode("ascii")), _port(url)))
        return frozenset(trusted)

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
