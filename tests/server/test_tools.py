"""The capability tools through a real MCP client (both protocol eras) against the fal fake."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from mcp import Client
from mcp_types import ResourceLink

from mcp_audio.sandbox.fal_queue import FakeFal
from tests.helpers import CATALOG, CORE_TOOLS, FAMILY_MEMBERS, LISTED_KINDS, server, text_of

pytestmark = pytest.mark.anyio
EXAMPLES = CATALOG.examples


def tool_arguments(example: Any) -> dict[str, Any]:
    """A documented upstream body as the tool takes it (advanced settings nested)."""
    capability = CATALOG.get(example.tool)
    assert capability is not None
    return capability.tool_arguments(example.request) | example.arguments


# A family schema's rules on its choices (catalog/family.py): "Only model=a|b: x, y." and the like.
# A chosen model's own rules ("With model=ace-step: Only mode=song: ...") name `mode`, not `model`.
RULE = re.compile(r"(Only|Not|Required with|Required except with) model=([\w.|-]+): ([\w, ]+)\.")


def as_stated_for(schema: dict[str, Any], choice: str) -> tuple[set[str], set[str]]:
    """The arguments a family tool's schema says `choice` takes, and those it says it requires."""
    takes = set(schema["properties"]) - {"model"}
    required = set(schema.get("required", []))
    for rule, choices, names in RULE.findall(schema.get("description", "")):
        named, about = choice in choices.split("|"), set(names.split(", "))
        if (rule == "Only" and not named) or (rule == "Not" and named):
            takes -= about
        if (rule == "Required with" and named) or (rule == "Required except with" and not named):
            required |= about
    grouped = schema["properties"].get("advanced", {}).get("description", "")
    groups = [group.split(", ") for group in re.findall(r"\[([^\]]+)\]", grouped)]
    if groups and not any(choice in group for group in groups):  # "[a, b] <a's and b's settings> [c] ..."
        takes.discard("advanced")
    return takes, required


async def test_tools_list_shows_typed_annotated_tools(client: Client) -> None:
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) >= (CORE_TOOLS - FAMILY_MEMBERS) | {"transcribe", "make_music", "make_sound_effect"}
    assert not set(tools) & FAMILY_MEMBERS  # listed by their family tools, callable by name
    assert {"get_job", "cancel_job", "list_jobs"} <= set(tools)
    tts = tools["speak"]  # qwen3_tts is speak with model 'qwen3'
    assert tts.title is None and len(tts.description or "") > 40  # the name says it; audio://catalog has titles
    assert tts.input_schema["additionalProperties"] is False
    assert "qwen3" in tts.input_schema["properties"]["model"]["enum"]
    takes, required = as_stated_for(tts.input_schema, "qwen3")
    assert tts.input_schema["required"] == ["text"] and required == {"text"}
    assert tts.input_schema["properties"]["model_size"]["enum"] == ["1.7b", "0.6b"]
    qwen3 = CATALOG.capabilities["qwen3_tts"].spec.inputs
    assert takes == {spec.name for spec in qwen3 if not spec.advanced} | {"advanced"} and "model_size" in takes
    assert "voice_instruction" not in takes  # seed-speech's: the rules say who takes what
    # Only what differs from the spec's defaults: an upstream tool is open-world and, as it spends
    # money, left to hosts' confirmation of destructive tools; a local one says it is neither.
    assert tts.annotations is None
    local = tools["audio_master"].annotations
    assert local is not None
    assert local.model_dump(exclude_none=True) == {"destructive_hint": False, "open_world_hint": False}
    assert tts.meta == {"ui": {"resourceUri": "ui://mcp-audio/player"}}  # provider, endpoints: audio://catalog


async def test_tools_that_return_audio_open_the_player(client: Client) -> None:
    tools = (await client.list_tools()).tools
    linked = {tool.name for tool in tools if (tool.meta or {}).get("ui") == {"resourceUri": "ui://mcp-audio/player"}}
    expected = {name for name, kind in LISTED_KINDS.items() if kind in ("tts", "music", "sfx", "edit")} | {"get_job"}
    finishing = {"audio_join", "audio_mix", "audio_master", "audio_trim"}  # local tools that make audio
    finishing |= {"produce_audio", "redo_part"}  # productions
    assert linked == expected | finishing
    assert "transcribe" not in linked and "qwen3_tts_clone_voice" not in linked
    assert "audio_info" not in linked and "transcript_subtitles" not in linked
    player = await client.read_resource("ui://mcp-audio/player")
    [content] = player.contents
    assert content.mime_type == "text/html;profile=mcp-app"
    assert "ui/initialize" in content.text  # type: ignore[union-attr]
    listed = {str(r.uri): r for r in (await client.list_resources()).resources}
    csp = (listed["ui://mcp-audio/player"].meta or {})["ui"]["csp"]["resourceDomains"]
    assert "https://*.fal.media" in csp


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"{e.tool}:{e.endpoint}:{i}" for i, e in enumerate(EXAMPLES)])
async def test_seed_example_is_sent_upstream_unchanged(client: Client, fake_fal: FakeFal, example: Any) -> None:
    result = await client.call_tool(example.tool, tool_arguments(example))
    assert not result.is_error, text_of(result)
    capability = CATALOG.get(example.tool)
    assert capability is not None
    submits = [r for r in fake_fal.requests if r.kind in ("submit", "run")]
    assert len(submits) == 1
    prefix = "/run/" if capability.shape == "one_shot" else "/"
    assert submits[0].path == f"{prefix}{example.endpoint}"
    assert submits[0].json == example.request
    assert result.structured_content is not None
    assert result.structured_content["status"] == "completed"


async def test_completed_result_has_files_links_and_fields(client: Client, fake_fal: FakeFal) -> None:
    result = await client.call_tool("lyria2_music", {"prompt": "lush ambient river, piano", "seed": 7})
    assert not result.is_error, text_of(result)
    body = result.structured_content
    assert body is not None
    assert body["status"] == "completed" and len(body["job_id"]) == 32
    [audio] = body["files"]
    assert audio["url"].startswith(fake_fal.base_url + "/files/")
    assert audio["content_type"] == "audio/wav" and audio["file_size"] > 0
    links = [item for item in result.content if isinstance(item, ResourceLink)]
    assert [str(link.uri) for link in links] == [audio["url"]]
    assert audio["url"] in text_of(result)


async def test_transcript_reaches_the_model_as_text_and_structure(client: Client, fake_fal: FakeFal) -> None:
    fake_fal.script(
        "fal-ai/whisper",
        output={
            "text": "Hello there, general.",
            "chunks": [
                {"timestamp": [0.0, 1.2], "text": "Hello there,"},
                {"timestamp": [1.2, 2.0], "text": " general."},
            ],
            "inferred_languages": ["en"],
            "diarization_segments": [],
        },
    )
    result = await client.call_tool(
        "whisper_transcribe", {"audio_url": "https://example.com/a.mp3", "chunk_level": "word"}
    )
    assert not result.is_error, text_of(result)
    assert "Transcript:\nHello there, general." in text_of(result)
    assert result.structured_content is not None
    assert result.structured_content["output"]["chunks"][1]["timestamp"] == [1.2, 2.0]
    assert result.structured_content["files"] == []


async def test_progress_reports_queue_position_running_and_logs(client: Client, fake_fal: FakeFal) -> None:
    fake_fal.script("fal-ai/lyria2", queue_s=0.6, run_s=0.6, logs=["loading model", "sampling"], queue_positions=2)
    seen: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, message))

    result = await client.call_tool("lyria2_music", {"prompt": "jazz trio"}, progress_callback=on_progress)
    assert not result.is_error, text_of(result)
    messages = [message or "" for _, message in seen]
    assert any(m.startswith("In queue (position") for m in messages), messages
    assert any("loading model" in m for m in messages), messages
    assert any("sampling" in m for m in messages), messages
    progress_values = [p for p, _ in seen]
    assert progress_values == sorted(progress_values) and len(set(progress_values)) == len(progress_values)


async def test_completed_job_costs_at_most_four_upstream_requests(client: Client, fake_fal: FakeFal) -> None:
    fake_fal.script("fal-ai/lyria2", queue_s=0.5, run_s=1.5, logs=["a", "b", "c"])
    result = await client.call_tool("lyria2_music", {"prompt": "slow ballad"})
    assert result.structured_content is not None
    upstream_id = fake_fal.requests[0].request_id or next(iter(fake_fal.jobs))
    kinds = [r.kind for r in fake_fal.requests_for(upstream_id)]
    assert kinds == ["submit", "stream", "result"]


async def test_broken_stream_falls_back_to_polling(client: Client, fake_fal: FakeFal) -> None:
    fake_fal.script("fal-ai/lyria2", queue_s=0.3, run_s=0.8)
    fake_fal.break_stream_after(1)
    result = await client.call_tool("lyria2_music", {"prompt": "drum and bass"})
    assert not result.is_error, text_of(result)
    kinds = [r.kind for r in fake_fal.requests]
    assert kinds[:2] == ["submit", "stream"] and "status" in kinds and kinds[-1] == "result"


async def test_long_job_returns_a_handle_then_get_job_returns_the_result(settings: Any, fake_fal: FakeFal) -> None:

    fake_fal.script("fal-ai/lyria2", run_s=1.5)
    async with Client(server(settings.model_copy(update={"wait_s": 0.3}))) as client:
        first = await client.call_tool("lyria2_music", {"prompt": "epic trailer"})
        assert not first.is_error
        handle = first.structured_content
        assert handle is not None and handle["status"] in ("queued", "running")
        job_id = handle["job_id"]
        assert handle["resource"] == f"jobs://{job_id}"
        assert f'get_job with job_id="{job_id}"' in text_of(first)
        links = [str(item.uri) for item in first.content if isinstance(item, ResourceLink)]
        assert links == [f"jobs://{job_id}"]

        resource = await client.read_resource(f"jobs://{job_id}")
        assert json.loads(resource.contents[0].text)["status"] in ("queued", "running")  # type: ignore[union-attr]

        done = await client.call_tool("get_job", {"job_id": job_id, "wait_s": 10})
        assert done.structured_content is not None
        assert done.structured_content["status"] == "completed"
        assert done.structured_content["files"][0]["url"].startswith(fake_fal.base_url)
        assert len([r for r in fake_fal.requests if r.kind == "submit"]) == 1


async def test_list_jobs_and_recent_jobs_resource(client: Client, fake_fal: FakeFal) -> None:
    await client.call_tool("elevenlabs_sound_effect", {"text": "glass shatters"})
    listed = await client.call_tool("list_jobs", {"status": "completed", "limit": 5})
    assert listed.structured_content is not None
    [job] = listed.structured_content["jobs"]
    assert job["tool"] == "elevenlabs_sound_effect" and job["status"] == "completed"
    recent = await client.read_resource("jobs://recent")
    assert json.loads(recent.contents[0].text)[0]["job_id"] == job["job_id"]  # type: ignore[union-attr]
    none = await client.call_tool("list_jobs", {"status": "failed"})
    assert none.structured_content == {"jobs": []}


async def test_catalog_and_voice_resources(client: Client) -> None:
    catalog = json.loads((await client.read_resource("audio://catalog")).contents[0].text)  # type: ignore[union-attr]
    by_tool = {entry["tool"]: entry for entry in catalog}
    assert by_tool["qwen3_tts"]["provider"] == "fal"
    assert by_tool["qwen3_tts"]["kind"] == "tts"
    assert "fal-ai/qwen-3-tts/text-to-speech/0.6b" in by_tool["qwen3_tts"]["endpoints"]
    presets = json.loads((await client.read_resource("voices://qwen3-tts")).contents[0].text)  # type: ignore[union-attr]
    names = [preset["name"] for preset in presets["presets"]]
    assert names == ["Vivian", "Serena", "Uncle_Fu", "Dylan", "Eric", "Ryan", "Aiden", "Ono_Anna", "Sohee"]
    assert all(preset["notes"] for preset in presets["presets"])
    cloned = json.loads((await client.read_resource("voices://cloned")).contents[0].text)  # type: ignore[union-attr]
    assert cloned == []


async def test_cloned_voice_is_saved_and_usable_by_name(client: Client, fake_fal: FakeFal) -> None:
    clone = await client.call_tool(
        "qwen3_tts_clone_voice",
        {"audio_url": "https://example.com/me.mp3", "reference_text": "This is my voice.", "name": "narrator"},
    )
    assert not clone.is_error, text_of(clone)
    assert clone.structured_content is not None and clone.structured_content["saved_voice"] == "narrator"
    assert "Saved as voice 'narrator'" in text_of(clone)
    embedding_url = clone.structured_content["files"][0]["url"]
    cloned = json.loads((await client.read_resource("voices://cloned")).contents[0].text)  # type: ignore[union-attr]
    assert cloned == [{"name": "narrator", "family": "qwen3-tts", "provider": "fal"}]

    speak = await client.call_tool("qwen3_tts", {"text": "Hello in my voice.", "voice": "narrator"})
    assert not speak.is_error, text_of(speak)
    last_submit = [r for r in fake_fal.requests if r.kind == "submit"][-1]
    assert last_submit.path == "/fal-ai/qwen-3-tts/text-to-speech/1.7b"
    assert last_submit.json == {
        "text": "Hello in my voice.",
        "speaker_voice_embedding_file_url": embedding_url,
        "reference_text": "This is my voice.",
    }


async def test_unknown_voice_lists_the_valid_names(client: Client, fake_fal: FakeFal) -> None:
    result = await client.call_tool("qwen3_tts", {"text": "Hi", "voice": "Bob"})
    assert result.is_error
    message = text_of(result)
    assert (
        "`voice`: unknown voice 'Bob'. Allowed: one of Vivian, Serena, Uncle_Fu, Dylan, Eric, Ryan, Aiden, "
        "Ono_Anna, Sohee, or a voice saved by a qwen3-tts clone tool (none saved yet)." in message
    )
    assert fake_fal.requests == []


async def test_saved_voices_are_offered_and_other_families_refused(client: Client, fake_fal: FakeFal) -> None:
    await client.call_tool("qwen3_tts_clone_voice", {"audio_url": "https://example.com/a.mp3", "name": "ann"})
    other = await client.call_tool("elevenlabs_tts", {"text": "Hi", "voice": "ann"})
    assert other.is_error
    assert "`voice`: unknown voice 'ann'; 'ann' is a saved qwen3-tts voice, which this tool cannot use." in text_of(
        other
    )
    unknown = await client.call_tool("qwen3_tts", {"text": "Hi", "voice": "bob"})
    assert "or a saved qwen3-tts voice (ann)." in text_of(unknown)


OUTPUT_EXAMPLES = [e for e in EXAMPLES if e.output is not None]


@pytest.mark.parametrize("example", OUTPUT_EXAMPLES, ids=[f"{e.tool}:{i}" for i, e in enumerate(OUTPUT_EXAMPLES)])
async def test_seed_example_output_becomes_the_structured_result(
    client: Client, fake_fal: FakeFal, example: Any
) -> None:
    fake_fal.script(example.endpoint, output=example.output)
    result = await client.call_tool(example.tool, tool_arguments(example))
    assert not result.is_error, text_of(result)
    body = result.structured_content
    assert body is not None
    capability = CATALOG.get(example.tool)
    assert capability is not None
    roots = {path.split(".")[0].removesuffix("[]") for path in capability.spec.files}
    documented_files = []
    for root in roots:
        value = example.output[root]
        documented_files.extend(value if isinstance(value, list) else [value])
    assert [f["url"] for f in body["files"]] == [f["url"] for f in documented_files]
    for documented, returned in zip(documented_files, body["files"], strict=True):
        assert returned == {
            k: v for k, v in documented.items() if k in ("url", "content_type", "file_name", "file_size")
        }
    assert body["output"] == {k: v for k, v in example.output.items() if k not in roots}
    links = [str(item.uri) for item in result.content if isinstance(item, ResourceLink)]
    assert links == [f["url"] for f in documented_files]


async def test_streaming_transcription_sends_partials_as_progress(client: Client, fake_fal: FakeFal) -> None:
    fake_fal.script(
        "fal-ai/speech-to-text/turbo/stream",
        run_s=0.6,
        stream_events=[{"output": "Hello", "partial": True}, {"output": "Hello wor", "partial": True}],
        output={"output": "Hello world.", "partial": False},
    )
    seen: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message or "")

    result = await client.call_tool(
        "turbo_transcribe_stream", {"audio_url": "https://example.com/talk.mp3"}, progress_callback=on_progress
    )
    assert not result.is_error, text_of(result)
    assert "Partial: Hello" in seen and "Partial: Hello wor" in seen
    assert "Transcript:\nHello world." in text_of(result)
    assert result.structured_content is not None
    assert result.structured_content["output"] == {"output": "Hello world.", "partial": False}
    assert [r.kind for r in fake_fal.requests] == ["run"]


async def test_streaming_upstream_error_is_reported(client: Client, fake_fal: FakeFal) -> None:
    fake_fal.script(
        "fal-ai/speech-to-text/turbo/stream",
        error=(422, {"detail": [{"loc": ["body", "audio_url"], "msg": "Could not download audio", "type": "x"}]}),
    )
    result = await client.call_tool("turbo_transcribe_stream", {"audio_url": "https://example.com/missing.mp3"})
    assert result.is_error
    assert "fal rejected the input:\n- `audio_url`: Could not download audio" in text_of(result)
