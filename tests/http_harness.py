"""Real `mcp-audio serve --http` processes for the HTTP deployment tests, an MCP client that
sends a bearer token, and the `mcp-audio tokens` command."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_audio.config import ServerSettings
from tests.forked import ForkedProcess, run_mcp_audio
from tests.helpers import body_of, env_for, stop, text_of

# What an MCP client POSTs first (2025 era), for raw HTTP checks.
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_cli(
    settings: ServerSettings, *args: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`mcp-audio ARGS` in a process of its own (forked warm: see tests/forked.py)."""
    return run_mcp_audio(list(args), env_for(settings) | (extra_env or {}))


def add_token(settings: ServerSettings, name: str, max_spend_usd: float | None = None) -> str:
    """A bearer token for caller `name`, written by the token store `mcp-audio tokens add` uses,
    in this process (a CLI process costs about a CPU-second; the command has tests of its own)."""
    from mcp_audio.store.tokens import open_tokens

    tokens = open_tokens(settings)
    try:
        return tokens.add(name, max_spend_usd)
    finally:
        tokens.close()


def add_token_by_cli(settings: ServerSettings, name: str, *extra: str) -> str:
    """A bearer token for caller `name`, made by `mcp-audio tokens add` as a user would."""
    done = run_cli(settings, "tokens", "add", name, *extra)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@dataclass
class Served:
    url: str  # base URL, without /mcp
    proc: subprocess.Popen[str] | ForkedProcess
    stderr: str = ""  # what the server logged, once it stopped

    @property
    def mcp(self) -> str:
        return self.url + "/mcp"

    def log(self) -> str:
        """The server's stderr (it must have exited)."""
        if isinstance(self.proc, ForkedProcess):
            return self.proc.stderr_text()
        return self.proc.stderr.read() if self.proc.stderr else ""


@contextmanager
def http_server(
    settings: ServerSettings,
    *args: str,
    extra_env: dict[str, str] | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    cold: bool = False,
) -> Iterator[Served]:
    """A `mcp-audio serve --http` process, forked warm (tests/forked.py), or with `cold` started
    as `python -m mcp_audio` in a fresh interpreter (for what only a fresh one shows: its memory)."""
    port = port or free_port()
    argv = ["serve", "--http", "--host", host, "--port", str(port), *args]
    env = env_for(settings) | (extra_env or {})
    proc: subprocess.Popen[str] | ForkedProcess
    if cold:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mcp_audio", *argv],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
    else:
        proc = ForkedProcess(argv, env)
    served = Served(f"http://127.0.0.1:{port}", proc)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None, served.log()
                assert time.monotonic() < deadline, "HTTP server did not start"
                time.sleep(0.05)
        yield served
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except (subprocess.TimeoutExpired, TimeoutError):
                proc.kill()
                proc.wait(timeout=10)
        served.stderr = served.log()
        if isinstance(proc, ForkedProcess):
            proc.clean_up()
        else:
            stop(proc)


# The trust store for the tests' HTTP clients, built once: each client building its own (loading
# every CA certificate) cost seconds of CPU over the suite, for loopback servers that speak plain HTTP.
TRUST = ssl.create_default_context()


@asynccontextmanager
async def mcp_client(url: str, token: str | None = None, **client_options: Any) -> AsyncIterator[Client]:
    """The SDK's client over streamable HTTP, sending `Authorization: Bearer <token>`."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=120.0), verify=TRUST)
    async with http, Client(streamable_http_client(url, http_client=http), **client_options) as client:
        yield client


async def call_ok(replica: Served, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """One tool call on its own session to a `serve --http` process: the structured result,
    which must not be an error."""
    async with mcp_client(replica.mcp) as client:
        result = await client.call_tool(tool, arguments)
    assert not result.is_error, text_of(result)
    return body_of(result)
