"""A file input given as a URL reaches only https hosts on public addresses (or hosts the operator
allows, and the configured upstreams): no spelling of a loopback service inside the server's
network is fetched, redirects are checked the same way, and refusals read alike whether a port
is open or closed (issue 20, finding 1)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from mcp import Client

from mcp_audio.config import ServerSettings
from mcp_audio.files.fetch import refused_text
from tests.helpers import body_of, server, text_of
from tests.internal_service import internal_service

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Numeric spellings (`2130706433`, `127.1`, `0x7f000001`) resolve without any name server, so
    they are let through to the real resolver: the server's own check must stop them."""
    real_getaddrinfo = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        try:
            real_getaddrinfo(name, None, flags=socket.AI_NUMERICHOST)
        except (OSError, TypeError):
            if name not in ("127.0.0.1", "localhost", "::1", None):
                raise OSError(f"test tried to reach {host!r}: only loopback is allowed") from None
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)


@pytest.fixture
def internal() -> Iterator[Any]:
    with internal_service() as service:
        yield service


SPELLINGS = [
    "http://127.0.0.1:{port}",
    "http://localhost:{port}",
    "https://127.0.0.1:{port}",
    "https://localhost:{port}",
    "https://0.0.0.0:{port}",
    "https://2130706433:{port}",
    "https://0x7f000001:{port}",
    "https://127.1:{port}",
    "https://0177.0.0.1:{port}",
    "https://[::ffff:127.0.0.1]:{port}",
    "https://[::127.0.0.1]:{port}",
    "https://[::1]:{port}",
    "https://a@127.0.0.1:{port}",
    "https://a:b@localhost:{port}",
]


async def _info(settings: ServerSettings, url: str) -> Any:
    async with Client(server(settings)) as client:
        return await client.call_tool("audio_info", {"audio_url": url})


@pytest.mark.parametrize("spelling", SPELLINGS)
async def test_no_spelling_of_a_loopback_service_is_fetched_or_connected_to(
    settings: ServerSettings, internal: Any, spelling: str
) -> None:
    url = spelling.format(port=internal.port) + "/secret.wav"
    result = await _info(settings, url)
    assert result.is_error
    assert text_of(result).endswith(f": `audio_url`: {refused_text(url)}.")
    assert internal.accepted == 0  # not even a TCP connection


async def test_an_allowed_host_is_fetched_and_only_by_its_name(settings: ServerSettings, internal: Any) -> None:
    allowed = settings.model_copy(update={"allowed_fetch_hosts": f"127.0.0.1:{internal.port}"})
    fetched = await _info(allowed, f"http://127.0.0.1:{internal.port}/secret.wav")
    assert not fetched.is_error, text_of(fetched)
    assert body_of(fetched)["output"]["duration_s"] == pytest.approx(0.5, abs=0.01)
    other_spelling = f"https://127.1:{internal.port}/secret.wav"
    assert text_of(await _info(allowed, other_spelling)).endswith(f"`audio_url`: {refused_text(other_spelling)}.")
    assert internal.accepted == 1


async def test_a_redirect_to_v6_loopback_is_refused(settings: ServerSettings) -> None:
    with internal_service("::1") as inner:
        target = f"http://[::1]:{inner.port}/secret.wav"
        with internal_service(redirect_to=target) as outer:
            allowed = settings.model_copy(update={"allowed_fetch_hosts": f"127.0.0.1:{outer.port}"})
            url = f"http://127.0.0.1:{outer.port}/redirect"
            result = await _info(allowed, url)
    assert text_of(result).endswith(f": `audio_url`: {refused_text(url)}.")
    assert (outer.accepted, inner.accepted) == (1, 0)


async def test_an_open_port_and_a_closed_one_read_the_same(settings: ServerSettings, internal: Any) -> None:
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        closed = spare.getsockname()[1]
    for scheme in ("http", "https"):
        open_url, closed_url = (f"{scheme}://127.0.0.1:{port}/x.wav" for port in (internal.port, closed))
        opened, shut = await _info(settings, open_url), await _info(settings, closed_url)
        assert text_of(opened).replace(str(internal.port), "PORT") == text_of(shut).replace(str(closed), "PORT")
    assert internal.accepted == 0


async def test_a_body_declared_over_the_limit_is_refused_before_it_is_read(
    settings: ServerSettings, internal: Any
) -> None:
    allowed = settings.model_copy(update={"allowed_fetch_hosts": "127.0.0.1"})
    url = f"http://127.0.0.1:{internal.port}/huge.wav"
    result = await _info(allowed, url)  # the service would hold the line 5 s: the refusal comes first
    assert text_of(result).endswith(
        f"`audio_url`: {url} is over 1024 MiB, the most this server sends to this server's local tools."
    )
