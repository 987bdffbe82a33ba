"""The server as a real process: over stdio, over streamable HTTP, and surviving kill -9."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from mcp_audio.config import Settings
from mcp_audio.sandbox.fal_queue import FakeFal
from tests.conftest import FAL_KEY, env_for
from tests.test_tools import text_of

pytestmark = pytest.mark.anyio

# What a 2025-era stdio client sends first.
HANDSHAKE: list[dict[str, Any]] = [
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
    },
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
]


def start_tool_call(
    env: dict[str, str], name: str, arguments: dict[str, Any], stderr: Any = subprocess.DEVNULL
) -> subprocess.Popen[str]:
    """A stdio server process that has been sent the handshake and one tools/call (id 2)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcp_audio"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    assert proc.stdin is not None
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": name, "arguments": arguments}}
    for message in (*HANDSHAKE, call):
        proc.stdin.write(json.dumps(message) + "\n")
    proc.stdin.flush()
    return proc


async def finish_the_unfinished_job(client: Client) -> dict[str, Any]:
    """After a restart: the one unfinished job, waited for through get_job; its result."""
    listed = await client.call_tool("list_jobs", {"status": "unfinished"})
    assert listed.structured_content is not None
    [job] = listed.structured_content["jobs"]
    done = await client.call_tool("get_job", {"job_id": job["job_id"], "wait_s": 20})
    body: dict[str, Any] = done.structured_content or {}
    assert body["status"] == "completed", text_of(done)
    return body


def stdio_params(settings: Settings) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "mcp_audio"], env=env_for(settings))


async def test_stdio_end_to_end(settings: Settings, fake_fal: FakeFal) -> None:
    async with Client(stdio_params(settings), mode="legacy") as client:
        tools = (await client.list_tools()).tools
        assert "qwen3_tts" in [tool.name for tool in tools]
        result = await client.call_tool("qwen3_tts", {"text": "Hello world.", "voice": "Vivian", "language": "English"})
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    assert result.structured_content["files"][0]["content_type"] == "audio/wav"
    assert [r.json for r in fake_fal.requests if r.kind == "submit"] == [
        {"text": "Hello world.", "voice": "Vivian", "language": "English"}
    ]


def test_stdio_stdout_carries_only_protocol_messages(settings: Settings) -> None:
    messages = [*HANDSHAKE, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcp_audio"],
        env=env_for(settings),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("".join(json.dumps(m) + "\n" for m in messages))
    proc.stdin.flush()
    lines = [proc.stdout.readline(), proc.stdout.readline()]  # stdin stays open until both answers came
    proc.stdin.close()  # EOF: the server shuts down; anything it prints on the way out is read too
    proc.wait(timeout=30)
    rest, errors = proc.stdout.read(), proc.stderr.read() if proc.stderr else ""
    lines += rest.splitlines()
    parsed = [json.loads(line) for line in lines if line.strip()]  # raises if anything else was printed
    assert [m.get("id") for m in parsed] == [1, 2]
    assert FAL_KEY not in "".join(lines) + errors


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_streamable_http_end_to_end(settings: Settings, fake_fal: FakeFal) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcp_audio", "serve", "--http", "--port", str(port)],
        env=env_for(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "HTTP server did not start"
                await anyio.sleep(0.1)
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            result = await client.call_tool("elevenlabs_sound_effect", {"text": "thunder", "duration_seconds": 3})
            resource = await client.read_resource("audio://catalog")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None and result.structured_content["status"] == "completed"
    assert "lyria2_music" in resource.contents[0].text  # type: ignore[union-attr]


async def test_kill_9_mid_job_then_restart_returns_the_result(settings: Settings, fake_fal: FakeFal) -> None:
    fake_fal.script("fal-ai/lyria2", queue_s=0.5, run_s=3.0)
    proc = start_tool_call(env_for(settings), "lyria2_music", {"prompt": "x"})
    with anyio.fail_after(30):
        while not any(r.kind == "stream" for r in fake_fal.requests):
            await anyio.sleep(0.05)
    proc.kill()  # SIGKILL: no clean-up runs
    proc.wait(timeout=10)
    [upstream_id] = fake_fal.jobs

    async with Client(stdio_params(settings), mode="legacy") as client:
        body = await finish_the_unfinished_job(client)
    assert body["files"][0]["url"].startswith(fake_fal.base_url)
    assert [r.kind for r in fake_fal.requests].count("submit") == 1  # re-attached, never resubmitted
    assert fake_fal.jobs[upstream_id].endpoint_id == "fal-ai/lyria2"
