"""Through the real CLI (subprocesses): `doctor` checks the job database of
MCP_AUDIO_DATABASE_URL (an unreachable one fails, its password never shown), and a token made
with `tokens add` protects `serve --http --sandbox` too (the sandbox keeps its jobs apart, not
its tokens)."""

from __future__ import annotations

import httpx
import pytest

from mcp_audio.config import ServerSettings
from tests.http_harness import INITIALIZE, MCP_HEADERS, add_token_by_cli, free_port, http_server, run_cli
from tests.pg_harness import PgServer

pytestmark = pytest.mark.anyio


def test_doctor_fails_an_unreachable_database_without_showing_its_password(settings: ServerSettings) -> None:
    closed = free_port()  # nothing listens there
    url = f"postgresql://mcp:s3cret-pw@127.0.0.1:{closed}/jobs?connect_timeout=3"
    done = run_cli(settings, "doctor", extra_env={"MCP_AUDIO_DATABASE_URL": url})
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    [line] = [line for line in out.splitlines() if "job database" in line]
    assert line.startswith("FAIL") and f"postgresql://mcp:***@127.0.0.1:{closed}/jobs" in line, line
    assert "unreachable (OperationalError" in line
    assert "s3cret-pw" not in out


def test_doctor_passes_a_reachable_database(settings: ServerSettings, pg_server: PgServer) -> None:
    done = run_cli(settings, "doctor", extra_env={"MCP_AUDIO_DATABASE_URL": pg_server.fresh_database()})
    [line] = [line for line in (done.stdout + done.stderr).splitlines() if "job database" in line]
    assert line.startswith("PASS") and "reachable, migrated and writable" in line, line


async def test_a_token_protects_the_sandbox_too(settings: ServerSettings) -> None:
    token = add_token_by_cli(settings, "alice")
    with http_server(settings, "--sandbox") as served:
        async with httpx.AsyncClient(trust_env=False, timeout=30) as http:
            anonymous = await http.post(served.mcp, json=INITIALIZE, headers=MCP_HEADERS)
            allowed = await http.post(
                served.mcp, json=INITIALIZE, headers=MCP_HEADERS | {"Authorization": f"Bearer {token}"}
            )
    assert anonymous.status_code == 401, anonymous.text
    assert allowed.status_code == 200, allowed.text
    assert "(1 token(s))" in served.stderr
    assert not (settings.data_dir / "sandbox" / "tokens.json").exists()  # one token file: the real one
