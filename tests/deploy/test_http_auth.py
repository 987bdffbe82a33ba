"""HTTP mode's bearer tokens, as a deployer and a caller meet them: `mcp-audio tokens`, 401s
with `WWW-Authenticate: Bearer`, a revoke on a running server, and no token in any log or row."""

from __future__ import annotations

import json
import time

import anyio
import httpx
import pytest

from mcp_audio.config import ServerSettings
from tests.helpers import FAL_KEY, assert_secret_kept, text_of
from tests.http_harness import INITIALIZE, MCP_HEADERS, TRUST, add_token_by_cli, http_server, mcp_client, run_cli

pytestmark = pytest.mark.anyio


def test_tokens_add_list_revoke(settings: ServerSettings) -> None:
    done = run_cli(settings, "tokens", "add", "alice", "--max-spend-usd", "2.5")
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip().splitlines()[-1]
    assert token.startswith("mcpa_") and len(token) > 40
    assert token not in done.stderr
    stored = (settings.data_dir / "tokens.json").read_text()
    assert token not in stored and "alice" in stored  # hashed, not kept
    assert (settings.data_dir / "tokens.json").stat().st_mode & 0o077 == 0

    add_token_by_cli(settings, "bob")
    listed = run_cli(settings, "tokens", "list", "--json")
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(row["name"], row["max_spend_usd"]) for row in rows] == [("alice", 2.5), ("bob", None)]
    assert token not in listed.stdout

    again = run_cli(settings, "tokens", "add", "alice")
    assert again.returncode == 1 and "tokens revoke alice" in again.stderr and again.stdout == ""
    bad = run_cli(settings, "tokens", "add", "../etc")
    assert bad.returncode == 1 and "not allowed" in bad.stderr
    negative = run_cli(settings, "tokens", "add", "carol", "--max-spend-usd", "-1")
    assert negative.returncode == 2 and "0 or more" in negative.stderr

    assert run_cli(settings, "tokens", "revoke", "alice").returncode == 0
    unknown = run_cli(settings, "tokens", "revoke", "alice")
    assert unknown.returncode == 1 and "no token named 'alice'; tokens: bob" in unknown.stderr
    assert [json.loads(line)["name"] for line in run_cli(settings, "tokens", "list", "--json").stdout.splitlines()] == [
        "bob"
    ]


def _post(url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(url, json=INITIALIZE, headers=MCP_HEADERS | (headers or {}), timeout=10, verify=TRUST)


async def test_a_token_is_required_once_one_exists(settings: ServerSettings) -> None:
    token = add_token_by_cli(settings, "alice")
    with http_server(settings) as served:
        for headers in (
            {},
            {"Authorization": "Bearer mcpa_not-a-real-token"},
            {"Authorization": "Bearer " + token[:-2]},
            {"Authorization": "Bearer x"},
            {"Authorization": f"Basic {token}"},
            {"Authorization": token},
        ):
            refused = _post(served.mcp, headers)
            assert refused.status_code == 401, (headers, refused.text)
            assert refused.headers["www-authenticate"].startswith("Bearer ")
            assert "resource_metadata" not in refused.headers["www-authenticate"]  # OAuth is off
            assert token not in refused.text
        assert _post(served.mcp, {"Authorization": f"Bearer {token}"}).status_code == 200
        async with mcp_client(served.mcp, token) as client:
            result = await client.call_tool("elevenlabs_sound_effect", {"text": "thunder", "duration_seconds": 3})
        assert not result.is_error, text_of(result)
        with pytest.raises(Exception):  # noqa: B017 - the SDK client surfaces the 401 as an error
            async with mcp_client(served.mcp, "mcpa_wrong") as client:
                await client.list_tools()
    assert_secret_kept(token, settings, served.stderr, text_of(result))
    assert FAL_KEY not in served.stderr


async def test_no_token_on_loopback_needs_no_header(settings: ServerSettings) -> None:
    with http_server(settings) as served:
        assert _post(served.mcp).status_code == 200
        token = add_token_by_cli(settings, "late")  # added while running: required from the next request
        assert _post(served.mcp).status_code == 401
        assert _post(served.mcp, {"Authorization": f"Bearer {token}"}).status_code == 200


async def test_a_revoke_applies_to_a_running_server_within_10_s(settings: ServerSettings) -> None:
    alice, bob = add_token_by_cli(settings, "alice"), add_token_by_cli(settings, "bob")
    with http_server(settings) as served:
        async with mcp_client(served.mcp, alice) as client:
            assert (await client.list_tools()).tools
            assert run_cli(settings, "tokens", "revoke", "alice").returncode == 0
            revoked_at = time.monotonic()
            while _post(served.mcp, {"Authorization": f"Bearer {alice}"}).status_code != 401:
                assert time.monotonic() - revoked_at < 10, "the revoked token is still accepted"
                await anyio.sleep(0.2)
            with pytest.raises(Exception):  # noqa: B017 - the open session is refused too
                await client.list_tools()
        assert _post(served.mcp, {"Authorization": f"Bearer {bob}"}).status_code == 200
