"""Every listed tool's outputSchema, and every structured result against it (checked here with
jsonschema, and by the SDK client, which validates each non-error result of a listed tool):
finished results of every tool of every upstream (fal, Voice API, Eigen, the local finishing
tools), a family tool's with each of its `model` choices, job handles while queued, and failed,
unknown and cancelled jobs. A family member called by its own name answers in the shape its
family's schema states."""

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
from mcp_audio.catalog.family import CHOOSER, Member
from mcp_audio.config import ServerSettings
from mcp_audio.core.manifest import InputSpec
from mcp_audio.sandbox._base import CUT
from mcp_audio.sandbox.eigen import FakeEigen
from mcp_audio.sandbox.fal_queue import FakeFal
from tests.helpers import CATALOG, LISTED_KINDS, body_of, server, text_of

pytestmark = pytest.mark.anyio

# Tools whose finished result another test needs first (a transcript for subtitles); called by
# its own name (a family member stays callable), its family lists it.
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


def minimal_arguments(
    capability: Capability, rec_dir: Path, transcript_job: str | None = None, fixed: str | None = None
) -> dict[str, Any]:
    """A call of the capability's own tool; with `fixed`, of the family choice that fixes its
    endpoint choice (the family sets that input: the call leaves it out)."""
    inputs = Member(choice="", capability=capability, fixed=fixed).inputs()
    arguments = {
        spec.name: value_for(spec, capability.name, rec_dir, transcript_job)
        for spec in inputs
        if spec.required and not spec.advanced
    }
    for spec in inputs:
        if spec.name in SHORT and spec.name not in arguments and not spec.advanced:
            short = max(SHORT[spec.name], spec.minimum or 0)
            arguments[spec.name] = int(short) if spec.type == "integer" else float(short)
    # What the chosen model or mode (fixed, given, or its default) also requires (manifest `per_model`).
    choice_input = capability.spec.endpoint_input
    choice = fixed or (arguments.get(choice_input, capability.inputs[choice_input].default) if choice_input else None)
    for spec in inputs:
        rule = (spec.per_model or {}).get(str(choice))
        if rule is not None and rule.required and not spec.advanced:
            arguments[spec.name] = value_for(spec, capability.name, rec_dir, transcript_job)
    if capability.spec.saves_voice is not None:  # a clone tool: save under a name
        arguments[capability.spec.saves_voice.name_input] = f"voice_{capability.name}"[:40]
    return arguments


def listed_as(tool: str) -> str:
    """The tools/list name of a capability: its family's, or its own."""
    family = CATALOG.listed_as(tool)
    return family[0].name if family is not None else tool


# --- the schemas ----------------------------------------------------------------------------


async def test_every_tool_has_a_valid_compact_output_schema(every: Client) -> None:
    found = await schemas(every)
    expected = {"get_job", "cancel_job", "list_jobs", "find_audio_tools", "produce_audio", "redo_part"}
    assert set(found) == set(LISTED_KINDS) | expected
    assert set(CATALOG.families) <= set(found) and "whisper_transcribe" not in found
    for name, schema in found.items():
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["type"] == "object", name
        assert "description" not in json.dumps(schema), name  # they are in every conversation: kept short
    # Each result field is named: the upstream's output fields (fal's published output schema) and
    # files; a family tool's, those of each of its models (whisper's, minimax's among them), untyped.
    transcribe = found["transcribe"]["properties"]["output"]["properties"]
    assert {"chunks", "diarization_segments", "inferred_languages", "text"} <= set(transcribe)
    assert "saved_voice" in found["qwen3_tts_clone_voice"]["properties"]
    # The job shape is the README's; only what a tool adds is named.
    assert found["merge_audios"] == {"type": "object", "properties": {"files": {}}}
    speak = found["speak"]
    assert set(speak) == {"type", "properties"} and set(speak["properties"]) == {"files", "output"}
    assert speak["properties"]["files"] == {} and speak["properties"]["output"]["properties"]["duration_ms"] == {}
    for name in CATALOG.families:
        fields = found[name]["properties"]["output"]
        assert set(fields) == {"properties"} and all(field == {} for field in fields["properties"].values()), name
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


def listed_calls() -> list[tuple[str, str | None, Capability, str | None]]:
    """Every call tools/list offers: (tool, its `model` choice, the capability that runs, the
    endpoint choice the family fixes): each capability no family lists, each family's choices."""
    calls: list[tuple[str, str | None, Capability, str | None]] = [
        (name, None, CATALOG.capabilities[name], None)
        for name in CATALOG.capabilities
        if name in LISTED_KINDS and name != TRANSCRIBER
    ]
    for family in CATALOG.families.values():
        calls += [(family.name, choice, m.capability, m.fixed) for choice, m in family.members.items()]
    return sorted(calls, key=lambda call: (call[0], call[1] or ""))


@pytest.mark.parametrize("chunk", range(CHUNKS))
@pytest.mark.parametrize("wait_s", [30, 0], ids=["finished", "handle-first"])
async def test_every_tools_results_match_its_schema(
    every_settings: ServerSettings, rec_dir: Path, wait_s: float, chunk: int
) -> None:
    """Each tool's answer (with wait_s 0: the job handle), then the job through get_job once it
    finished, against the listed tool's schema and get_job's. Every chunk starts with the
    transcriber, called by its own name: the subtitle tools need a transcript job."""
    calls = listed_calls()
    assert {capability.name for _, _, capability, _ in calls} | {TRANSCRIBER} == set(CATALOG.capabilities)
    transcriber = (TRANSCRIBER, None, CATALOG.capabilities[TRANSCRIBER], None)
    order = [transcriber, *(call for i, call in enumerate(calls) if i % CHUNKS == chunk)]
    transcript: str | None = None
    problems: list[str] = []
    handles = 0
    async with Client(server(every_settings.model_copy(update={"wait_s": wait_s}))) as client:
        found = await schemas(client)
        for tool, choice, capability, fixed in order:
            arguments = minimal_arguments(capability, rec_dir, transcript, fixed)
            if choice is not None:
                arguments[CHOOSER] = choice
            name = f"{tool} {CHOOSER}={choice}" if choice is not None else tool
            schema = found[listed_as(tool)]
            result = await client.call_tool(tool, arguments)
            if result.structured_content is None:
                problems.append(f"{name}: {text_of(result)[:300]}")
                continue
            first = body_of(result)
            check(schema, first)
            handles += first["status"] in ("queued", "running")
            done = body_of(await client.call_tool("get_job", {"job_id": first["job_id"], "wait_s": 30}))
            if done["status"] != "completed":
                problems.append(f"{name}: {done}")
                continue
            check(found["get_job"], done)
            check(schema, done)
            named = set(schema.get("properties", {}).get("output", {}).get("properties", {}))
            # Every result field is named in the schema; the fakes' placeholder note is no upstream field.
            unnamed = set(done["output"]) - named - {"sandbox"}
            if unnamed:
                problems.append(f"{name}: output fields not in its outputSchema: {sorted(unnamed)}")
            assert done["files"] or not capability.spec.files or capability.spec.kind == "stt", name
            if tool == TRANSCRIBER:
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
    """Through the family tool and by the member's own name: both answer in make_music's shape."""
    fake_fal.script("fal-ai/lyria2", queue_s=30, queue_positions=3)
    async with Client(server(every_settings.model_copy(update={"wait_s": 0.2}))) as client:
        found = await schemas(client)
        for tool, arguments in [("make_music", {"model": "lyria2"}), ("lyria2_music", {})]:
            handle = body_of(await client.call_tool(tool, arguments | {"prompt": "calm"}))
            assert handle["status"] in ("queued", "running") and handle["resource"].startswith("jobs://")
            check(found["make_music"], handle)
            polled = body_of(await client.call_tool("get_job", {"job_id": handle["job_id"], "wait_s": 0}))
            check(found["get_job"], polled)
            unfinished = body_of(await client.call_tool("list_jobs", {"status": "unfinished"}))
            check(found["list_jobs"], unfinished)
            cancelled = body_of(await client.call_tool("cancel_job", {"job_id": handle["job_id"]}))
            assert cancelled["status"] == "cancelled"
            check(found["cancel_job"], cancelled)
            check(found["make_music"], cancelled)


@pytest.mark.parametrize(("status", "outcome"), [(400, "failed"), (500, "unknown")])
async def test_failed_and_unknown_jobs_match_the_schemas(
    every: Client, fake_eigen: FakeEigen, status: int, outcome: str
) -> None:
    found = await schemas(every)
    for tool, arguments in [("speak", {"model": "eigen-higgs"}), ("eigen_higgs_tts", {})]:
        fake_eigen.inject("tts", status, times=10, headers={"Retry-After": "0"}, body={"detail": "no"})
        result = await every.call_tool(tool, arguments | {"text": "Hello."})
        assert result.is_error and body_of(result)["status"] == outcome, tool
        check(found["speak"], body_of(result))
        check(found["get_job"], body_of(await every.call_tool("get_job", {"job_id": body_of(result)["job_id"]})))


async def test_a_cut_fal_submit_ends_unknown_and_matches(every: Client, fake_fal: FakeFal) -> None:
    found = await schemas(every)
    for tool, arguments in [("make_music", {"model": "lyria2"}), ("lyria2_music", {})]:
        fake_fal.inject("submit", CUT)
        result = await every.call_tool(tool, arguments | {"prompt": "calm"})
        assert body_of(result)["status"] == "unknown", tool
        check(found["make_music"], body_of(result))
