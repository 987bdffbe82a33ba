"""Where HTTP mode may be called from: Host and Origin checks (DNS rebinding), and the refusal
to serve a non-loopback address with no authentication."""

from __future__ import annotations

import httpx
import pytest

from mcp_audio.config import ServerSettings
from tests.http_harness import INITIALIZE, MCP_HEADERS, TRUST, add_token, free_port, http_server, run_cli

pytestmark = pytest.mark.anyio


def _post(url: str, **headers: str) -> httpx.Response:
    return httpx.post(url, json=INITIALIZE, headers=MCP_HEADERS | headers, timeout=10, verify=TRUST)


def test_loopback_refuses_a_foreign_host_or_origin(settings: ServerSettings) -> None:
    with http_server(settings) as served:
        rebound = _post(served.mcp, Host="evil.example", Origin="http://evil.example")
        assert rebound.status_code == 421
        assert "'evil.example' is not served here" in rebound.text and "MCP_AUDIO_ALLOWED_HOSTS" in rebound.text
        foreign_page = _post(served.mcp, Origin="http://evil.example")
        assert foreign_page.status_code == 403 and "MCP_AUDIO_ALLOWED_ORIGINS" in foreign_page.text
        port = served.url.rsplit(":", 1)[1]
        assert _post(served.mcp, Origin=f"http://localhost:{port}").status_code == 200
        assert _post(served.mcp, Host=f"localhost:{port}").status_code == 200
        assert _post(served.mcp).status_code == 200
        # The check guards every path, not only /mcp.
        assert httpx.get(served.url + "/anything", headers={"Host": "evil.example"}).status_code == 421


def test_a_public_bind_without_authentication_refuses_to_start(settings: ServerSettings) -> None:
    done = run_cli(settings, "serve", "--http", "--host", "0.0.0.0", "--port", str(free_port()))
    assert done.returncode == 1
    assert "refusing to serve 0.0.0.0 without authentication" in done.stderr
    assert "mcp-audio tokens add" in done.stderr and "MCP_AUDIO_OAUTH_ISSUER" in done.stderr
    assert "--no-auth" in done.stderr


def test_a_public_bind_accepts_only_the_configured_host_and_origins(settings: ServerSettings) -> None:
    token = add_token(settings, "team")
    bearer = f"Bearer {token}"
    env = {
        "MCP_AUDIO_PUBLIC_URL": "https://audio.example.com",
        "MCP_AUDIO_ALLOWED_HOSTS": "internal.example:8443",
        "MCP_AUDIO_ALLOWED_ORIGINS": "https://app.example.com",
    }
    with http_server(settings, host="0.0.0.0", extra_env=env) as served:
        assert _post(served.mcp, Host="audio.example.com", Authorization=bearer).status_code == 200
        assert _post(served.mcp, Host="internal.example:8443", Authorization=bearer).status_code == 200
        assert _post(served.mcp, Host="internal.example:9000", Authorization=bearer).status_code == 421
        # Rebinding is refused before authentication, even with a good token.
        assert _post(served.mcp, Host="evil.example", Authorization=bearer).status_code == 421
        assert _post(served.mcp, Host="evil.example").status_code == 421
        ok = _post(served.mcp, Host="audio.example.com", Origin="https://app.example.com", Authorization=bearer)
        assert ok.status_code == 200
        own = _post(served.mcp, Host="audio.example.com", Origin="https://audio.example.com", Authorization=bearer)
        assert own.status_code == 200
        refused = _post(served.mcp, Host="audio.example.com", Origin="http://localhost:3000", Authorization=bearer)
        assert refused.status_code == 403
        assert _post(served.mcp, Host="audio.example.com").status_code == 401


def test_no_auth_serves_a_public_bind_with_host_checks_on(settings: ServerSettings) -> None:
    env = {"MCP_AUDIO_ALLOWED_HOSTS": "audio.example.com"}
    with http_server(settings, "--no-auth", host="0.0.0.0", extra_env=env) as served:
        assert _post(served.mcp, Host="audio.example.com").status_code == 200
        assert _post(served.mcp, Host="evil.example").status_code == 421


def test_pages_from_the_allowed_hosts_are_accepted_without_listing_their_origins(settings: ServerSettings) -> None:
    # A wildcard bind with only MCP_AUDIO_ALLOWED_HOSTS: a browser on those names sends their Origin.
    env = {"MCP_AUDIO_ALLOWED_HOSTS": "audio.example.com,studio.example:8443"}
    with http_server(settings, "--no-auth", host="0.0.0.0", extra_env=env) as served:
        for origin in ("https://audio.example.com", "http://audio.example.com:8080", "https://studio.example:8443"):
            host = origin.split("://", 1)[1]
            assert _post(served.mcp, Host=host, Origin=origin).status_code == 200, origin
        assert _post(served.mcp, Host="audio.example.com", Origin="https://evil.example").status_code == 403
        assert _post(served.mcp, Host="audio.example.com", Origin="https://studio.example:9000").status_code == 403


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MCP_AUDIO_ALLOWED_HOSTS", "https://audio.example.com", "is not `name` or `name:port`"),
        ("MCP_AUDIO_ALLOWED_ORIGINS", "audio.example.com", "is not `scheme://name[:port]`"),
        ("MCP_AUDIO_PUBLIC_URL", "audio.example.com", "invalid setting MCP_AUDIO_PUBLIC_URL"),
    ],
)
def test_malformed_host_settings_are_named(settings: ServerSettings, name: str, value: str, message: str) -> None:
    done = run_cli(settings, "serve", "--http", "--port", str(free_port()), extra_env={name: value})
    assert done.returncode == 1 and message in done.stderr and name in done.stderr
