"""Which addresses a fetched URL may reach (files/fetch.py): only globally routable unicast ones.
The private ranges are checked here as values: no test connects to them."""

from __future__ import annotations

import pytest

from mcp_audio.files.fetch import FetchPolicy, is_public

NOT_PUBLIC = [
    "127.0.0.1", "127.255.0.9", "0.0.0.0", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
    "100.64.0.1", "100.127.255.254", "224.0.0.1", "240.0.0.1", "255.255.255.255", "192.0.0.8", "198.18.0.1",
    "::1", "::", "fd00::1", "fc00::1", "fe80::1", "fe80::1%eth0", "ff0e::1", "::ffff:127.0.0.1",
    "::ffff:8.8.8.8", "::127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::", "2001::1", "not an address",
]  # fmt: skip


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_special_addresses_are_not_public(address: str) -> None:
    assert not is_public(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "2a00:1450:4001::200e"])
def test_public_addresses_are(address: str) -> None:
    assert is_public(address)


def test_upstream_origins_and_allowed_hosts_are_exempt_only_as_named() -> None:
    policy = FetchPolicy.of(["http://127.0.0.1:8123", "https://queue.fal.run"], "media.lan, cache.lan:8080, [::1]")
    assert policy.exempt("127.0.0.1", 8123, "http") and not policy.exempt("127.0.0.1", 8124, "http")
    assert not policy.exempt("127.0.0.1", 8123, "https")
    assert policy.exempt("queue.fal.run", 443, "https") and not policy.exempt("queue.fal.run", 80, "http")
    assert policy.exempt("MEDIA.lan", 1) and policy.exempt("cache.lan", 8080) and not policy.exempt("cache.lan", 80)
    assert policy.exempt("::1", 9) and not policy.exempt("localhost", 9)
