"""The server as a real process: over stdio, over streamable HTTP, and surviving kill -9."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from mcp import Client

from mcp_audio.config import Settings
from mcp_audio.sandbox.fal_queue import FakeFal
from tests.helpers import (
    FAL_KEY,
    HANDSHAKE,
    env_for,
    stdio_params,
    stop,
    text_of,
)
from tests.http_harness import http_server

pytestmark = pytest.mark.anyio


async def test_stdio_end_to_end(settings: Settings, fake_fal: FakeFal) -> None:
    arguments = {"text": "Hello world.", "voice": "Vivian", "language": "English"}
    async with Client(stdio_params(settings), mode="legacy") as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert "qwen3_tts" not in tools  # listed as the speak tool's model 'qwen3'
        assert "qwen3" in tools["speak"].input_schema["properties"]["model"]["enum"]
        chosen = await client.call_tool("speak", arguments | {"model": "qwen3"})
        by_name = await client.call_tool("qwen3_tts", arguments)  # members stay callable by name
    for result in (chosen, by_name):
        assert not result.is_error, text_of(result)
        assert result.structured_content is not None
        assert result.structured_content["files"][0]["content_type"] == "audio/wav"
        assert result.structured_content["tool"] == "qwen3_tts"  # the job is the member's
    assert [r.json for r in fake_fal.requests if r.kind == "submit"] == [arguments, arguments]


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
    stop(proc)
    lines += rest.splitlines()
    parsed = [json.loads(line) for line in lines if line.strip()]  # raises if anything else was printed
    assert [m.get("id") for m in parsed] == [1, 2]
    assert FAL_KEY not in "".join(lines) + errors


async def test_streamable_http_end_to_end(settings: Settings, fake_fal: FakeFal) -> None:
    with http_server(settings) as served:
        async with Client(served.mcp) as client:
            result = await client.call_tool("elevenlabs_sound_effect", {"text": "thunder", "duration_seconds": 3})
            resource = await client.read_resource("audio://catalog")
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None and result.structured_content["status"] == "completed"
    assert "lyria2_music" in resource.contents[0].text  # type: ignore[union-attr]


async def test_over_stdio_a_call_sent_again_after_a_restart_gets_the_same_job(
    settings: Settings, fake_fal: FakeFal
) -> None:
    # The client lost the first answer (the server process went away) and sends the call again,
    # with the same idempotency key in `_meta`, to the next process on the same data dir.
    meta = {"io.mcp-audio/idempotency-key": "8d3c9e0a-take-1"}
    answers = []
    for _ in range(2):
        async with Client(stdio_params(settings), mode="legacy") as client:
            answers.append(await client.call_tool("qwen3_tts", {"text": "Hello world."}, meta=meta))  # type: ignore[arg-type]
    first, again = answers
    assert not first.is_error and not again.is_error, (text_of(first), text_of(again))
    assert again.structured_content == first.structured_content
    assert len(fake_fal.requests_of("submit")) == 1


def test_json_logs_are_one_object_a_line_with_the_job_and_its_trace(settings: Settings, fake_fal: FakeFal) -> None:
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    fake_fal.inject("result", 503)  # the follower retries: a log line of the job's own
    env = env_for(settings) | {"MCP_AUDIO_LOG_FORMAT": "json"}
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "qwen3_tts", "arguments": {"text": "Hi."}, "_meta": {"traceparent": trace}},
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcp_audio"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdin.write("".join(json.dumps(m) + "\n" for m in (*HANDSHAKE, call)))
    proc.stdin.flush()
    answers = [json.loads(proc.stdout.readline()) for _ in range(2)]
    proc.stdin.close()
    proc.wait(timeout=30)
    lines = proc.stderr.read().splitlines()
    stop(proc)
    job_id = answers[1]["result"]["structuredContent"]["job_id"]
    logged = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"ts", "level", "logger", "message"} <= set(entry) for entry in logged)
    of_job = [entry for entry in logged if entry.get("job_id") == job_id]
    assert of_job and all(entry["traceparent"] == trace for entry in of_job), logged
    assert any("retrying" in entry["message"] for entry in of_job)
    assert FAL_KEY not in "\n".join(lines)
