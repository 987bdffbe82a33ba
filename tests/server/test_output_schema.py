"""Every tool's outputSchema, and every structured result against it (checked here with
jsonschema, and by the SDK client, which validates each non-error result it receives): finished
results of every tool of every upstream (fal, Voice API, Eigen, the local finishing tools), job
handles while queued, and failed, unknown and cancelled jobs."""

from __future__ import annotations

import io
import json
import math
import struct
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from mcp import Client

from mcp_audio.catalog import Capability
from mcp_audio.config import ServerSettings
from mcp_audio.core.manifest import InputSpec
from mcp_audio.sandbox._base import CUT
from mcp_audio.sandbox.eigen import FakeEigen
from mcp_audio.sandbox.fal_queue import FakeFal
from tests.helpers import CATALOG, body_of, server, text_of

pytestmark = pytest.mark.anyio

# Tools whose finished result another test needs first (a transcript for subtitles).
TRANSCRIBER = "whisper_transcribe"
# Optional length inputs, set short: the fakes synthesize (and encode) what is asked for, up to
# 190 s by default, and no schema depends on a result's length. Raised to an input's minimum.
SHORT = {"duration": 5, "seconds_total": 5, "music_length_ms": 5000, "duration_seconds": 1, "append_duration": 2}
# Inputs with a pattern: a value that matches it.
PATTERNED = {"lyrics": {"diffrhythm_song": "[00:00.00]la la\n[00:02.00]la", "yue_song": "[verse]\nla la\n[chorus]\nla"}}


def tone_wav(seconds: float, rate: int = 16000) -> bytes:
    """A 440 Hz tone (the finishing tools refuse silence)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        samples = (int(8000 * math.sin(2 * math.pi * 440 * n / rate)) for n in range(int(seconds * rate)))
        out.writeframes(b"".join(struct.pack("<h", sample) for sample in samples))
    return buffer.getvalue()


@pytest.fixture
async def every(every_settings: ServerSettings) -> AsyncIterator[Client]:
    async with Client(server(every_settings)) as connected:
        yield connected


async def schemas(client: Client) -> dict[str, dict[str, Any]]:
    listed = (await client.list_tools()).tools
    missing = [tool.name for tool in listed if tool.output_schema is None]
    assert not missing, f"tools without an outputSchema: {missing}"
    return {tool.name: tool.output_schema for tool in listed if tool.output_schema is not None}


def check(schema: dict[str, Any], body: Any) -> None:
    jsonschema.Draft202012Validator(schema).validate(body)


# --- the arguments of a minimal call of any tool --------------------------------------------


def value_for(spec: InputSpec, tool: str, rec_dir: Path, transcript_job: str | None) -> Any:
    if spec.job is not None:
        return transcript_job
    if spec.file == "video":  # fal reads URLs itself
        return "https://example.com/clip.mp4"
    if spec.file is not None:
        seconds = max(spec.min_duration_s or 0, 2.0) + 1
        recording = rec_dir / f"clip-{seconds:g}.wav"
        if not recording.exists():
            recording.write_bytes(tone_wav(seconds))
        return [str(recording), str(recording)] if spec.type == "array" else str(recording)
    if spec.pattern is not None:
        return PATTERNED[spec.name][tool]
    if spec.default is not None:
        return spec.default
    if spec.enum:
        return spec.enum[0]
    if spec.fields is not None:
        item = {m.name: value_for(m, tool, rec_dir, transcript_job) for m in spec.fields if m.required}
        return [item] if spec.type == "array" else item
    if spec.type in ("integer", "number"):
        bound = spec.minimum if spec.minimum is not None else spec.maximum
        number = bound if bound is not None else (spec.exclusive_minimum or 0) + 1
        return int(number) if spec.type == "integer" else float(number)
    if spec.type == "boolean":
        return False
    if spec.type == "array":
        return ["calm"] * max(spec.min_items or 1, 1)
    return "Hello there." if (spec.min_length or 0) <= 12 else "Hello there. " * (spec.min_length or 1)


def minimal_arguments(capability: Capability, rec_dir: Path, transcript_job: str | None = None) -> dict[str, Any]:
    arguments = {
        spec.name: value_for(spec, capability.name, rec_dir, transcript_job)
        for spec in capability.spec.inputs
        if spec.required and not spec.advanced
    }
    for spec in capability.spec.inputs:
        if spec.name in SHORT and spec.name not in arguments and not spec.advanced:
            short = max(SHORT[spec.name], spec.minimum or 0)
            arguments[spec.name] = int(short) if spec.type == "integer" else float(short)
    # What the chosen model or mode (given, or its default) also requires (manifest `per_model`).
    choice_input = capability.spec.endpoint_input
    choice = arguments.get(choice_input, capability.inputs[choice_input].default) if choice_input else None
    for spec in capability.spec.inputs:
        rule = (spec.per_model or {}).get(str(choice))
        if rule is not None and rule.required and not spec.advanced:
            arguments[spec.name] = value_for(spec, capability.name, rec_dir, transcript_job)
    if capability.spec.saves_voice is not None:  # a clone tool: save under a name
        arguments[capability.spec.saves_voice.name_input] = f"voice_{capability.name}"[:40]
    return arguments


# --- the schemas ----------------------------------------------------------------------------


async def test_every_tool_has_a_valid_compact_output_schema(every: Client) -> None:
    found = await schemas(every)
    expected = {"get_job", "cancel_job", "list_jobs", "find_audio_tools", "produce_audio", "redo_part"}
    assert set(found) == set(CATALOG.capabilities) | expected
    for name, schema in found.items():
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["type"] == "object", name
        assert "description" not in json.dumps(schema), name  # they are in every conversation: kept short
    # Each result field is named: the upstream's output fields (fal's published output schema) and files.
    assert found["whisper_transcribe"]["properties"]["output"]["properties"] == {
        "chunks": {},
        "diarization_segments": {},
        "inferred_languages": {},
        "text": {},
    }
    assert "saved_voice" in found["qwen3_tts_clone_voice"]["properties"]
    # The job shape is the README's; only what a tool adds is named.
    assert found["qwen3_tts"] == {"type": "object", "properties": {"files": {}}}
    assert found["minimax_tts"]["properties"]["output"] == {"properties": {"duration_ms": {}}}
    assert found["get_job"]["properties"]["status"]["enum"] == [
        "queued",
        "running",
        "completed",
        "failed",
        "cancelled",
        "unknown",
    ]


# --- finished results of every tool ----------------------------------------------------------


CHUNKS = 4  # the catalog in four parts, so the workers share this long walk


@pytest.mark.parametrize("chunk", range(CHUNKS))
@pytest.mark.parametrize("wait_s", [30, 0], ids=["finished", "handle-first"])
async def test_every_tools_results_match_its_schema(
    every_settings: ServerSettings, rec_dir: Path, wait_s: float, chunk: int
) -> None:
    """Each tool's answer (with wait_s 0: the job handle), then the job through get_job once it
    finished, against the tool's schema and get_job's. Every chunk starts with the transcriber:
    the subtitle tools need a transcript job."""
    others = sorted(name for name in CATALOG.capabilities if name != TRANSCRIBER)
    order = [TRANSCRIBER, *(name for i, name in enumerate(others) if i % CHUNKS == chunk)]
    transcript: str | None = None
    problems: list[str] = []
    handles = 0
    async with Client(server(every_settings.model_copy(update={"wait_s": wait_s}))) as client:
        found = await schemas(client)
        for name in order:
            capability = CATALOG.capabilities[name]
            result = await client.call_tool(name, minimal_arguments(capability, rec_dir, transcript))
            if result.structured_content is None:
                problems.append(f"{name}: {text_of(result)[:300]}")
                continue
            first = body_of(result)
            check(found[name], first)
            handles += first["status"] in ("queued", "running")
            done = body_of(await client.call_tool("get_job", {"job_id": first["job_id"], "wait_s": 30}))
            if done["status"] != "completed":
                problems.append(f"{name}: {done}")
                continue
            check(found["get_job"], done)
            check(found[name], done)
            named = set(found[name].get("properties", {}).get("output", {}).get("properties", {}))
            # Every result field is named in the schema; the fakes' placeholder note is no upstream field.
            unnamed = set(done["output"]) - named - {"sandbox"}
            if unnamed:
                problems.append(f"{name}: output fields not in its outputSchema: {sorted(unnamed)}")
            assert done["files"] or not capability.spec.files or capability.spec.kind == "stt", name
            if name == TRANSCRIBER:
                transcript = done["job_id"]
        listed = body_of(await client.call_tool("list_jobs", {"limit": 200}))
    assert not problems, "\n".join(problems)
    check(found["list_jobs"], listed)
    assert len(listed["jobs"]) == len(order)
    if wait_s == 0:  # most calls answered before their job ended: handles were checked
        assert handles > len(order) // 2, handles


# --- handles, failures, cancellations -------------------------------------------------------


async def test_a_job_handle_and_its_cancellation_match_the_schemas(
    every_settings: ServerSettings, fake_fal: FakeFal
) -> None:
    fake_fal.script("fal-ai/lyria2", queue_s=30, queue_positions=3)
    async with Client(server(every_settings.model_copy(update={"wait_s": 0.2}))) as client:
        found = await schemas(client)
        handle = body_of(await client.call_tool("lyria2_music", {"prompt": "calm"}))
        assert handle["status"] in ("queued", "running") and handle["resource"].startswith("jobs://")
        check(found["lyria2_music"], handle)
        polled = body_of(await client.call_tool("get_job", {"job_id": handle["job_id"], "wait_s": 0}))
        check(found["get_job"], polled)
        unfinished = body_of(await client.call_tool("list_jobs", {"status": "unfinished"}))
        check(found["list_jobs"], unfinished)
        cancelled = body_of(await client.call_tool("cancel_job", {"job_id": handle["job_id"]}))
        assert cancelled["status"] == "cancelled"
        check(found["cancel_job"], cancelled)
        check(found["lyria2_music"], cancelled)


@pytest.mark.parametrize(("status", "outcome"), [(400, "failed"), (500, "unknown")])
async def test_failed_and_unknown_jobs_match_the_schemas(
    every: Client, fake_eigen: FakeEigen, status: int, outcome: str
) -> None:
    found = await schemas(every)
    fake_eigen.inject("tts", status, times=10, headers={"Retry-After": "0"}, body={"detail": "no"})
    result = await every.call_tool("eigen_higgs_tts", {"text": "Hello."})
    assert result.is_error and body_of(result)["status"] == outcome
    check(found["eigen_higgs_tts"], body_of(result))
    check(found["get_job"], body_of(await every.call_tool("get_job", {"job_id": body_of(result)["job_id"]})))


async def test_a_cut_fal_submit_ends_unknown_and_matches(every: Client, fake_fal: FakeFal) -> None:
    found = await schemas(every)
    fake_fal.inject("submit", CUT)
    result = await every.call_tool("lyria2_music", {"prompt": "calm"})
    assert body_of(result)["status"] == "unknown"
    check(found["lyria2_music"], body_of(result))
