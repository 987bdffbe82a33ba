"""Estimated cost and the spend limit, toolsets, and the workflow prompts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from mcp import Client

from mcp_audio.config import Settings
from mcp_audio.sandbox.fal_queue import FakeFal
from tests.helpers import CATALOG, env_for, server, text_of

pytestmark = pytest.mark.anyio


async def test_result_carries_estimated_cost(client: Client) -> None:
    result = await client.call_tool("qwen3_tts", {"text": "x" * 500, "voice": "Ryan"})
    assert result.structured_content is not None
    assert result.structured_content["estimated_cost_usd"] == pytest.approx(0.045)


async def test_spend_limit_refuses_the_call_that_would_pass_it(settings: Settings, fake_fal: FakeFal) -> None:
    limited = settings.model_copy(update={"max_spend_usd": 0.1})
    async with Client(server(limited)) as client:
        first = await client.call_tool("qwen3_tts", {"text": "y" * 1000})
        second = await client.call_tool("qwen3_tts", {"text": "z" * 200})
        assert not first.is_error, text_of(first)
        assert second.is_error
        assert (
            "qwen3_tts would cost about $0.0180, taking this server's spend to $0.1080, past "
            "MCP_AUDIO_MAX_SPEND_USD=$0.1 (spent so far: $0.0900)" in text_of(second)
        )
        cheap = await client.call_tool("qwen3_tts", {"text": "ok"})  # $0.00018 still fits
        assert not cheap.is_error
    assert [r.kind for r in fake_fal.requests].count("submit") == 2


async def test_a_priced_argument_sent_under_another_name_keeps_its_estimate_and_cap(
    settings: Settings, fake_fal: FakeFal
) -> None:
    """minimax_tts bills its `text`, which fal receives as `prompt`: the estimate comes from the
    tool's own argument names, so the rename cannot drop the price or the spend cap."""
    limited = settings.model_copy(update={"max_spend_usd": 0.25})
    async with Client(server(limited)) as client:
        first = await client.call_tool("minimax_tts", {"text": "a" * 2000})
        second = await client.call_tool("minimax_tts", {"text": "b" * 1000})
    assert not first.is_error, text_of(first)
    assert first.structured_content is not None
    assert first.structured_content["estimated_cost_usd"] == pytest.approx(0.2)  # $0.1 per 1000 characters
    assert second.is_error and "past MCP_AUDIO_MAX_SPEND_USD=$0.25" in text_of(second)
    submits = fake_fal.requests_of("submit")
    sent = json.loads(submits[0].body) if len(submits) == 1 else {}
    assert "text" not in sent and len(sent["prompt"]) == 2000


async def test_toolsets_limit_tools_resources_and_prompts(settings: Settings) -> None:
    async with Client(server(settings.model_copy(update={"toolsets": "stt"}))) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        catalog = (await client.read_resource("audio://catalog")).contents[0].text  # type: ignore[union-attr]
        prompts = {prompt.name for prompt in (await client.list_prompts()).prompts}
        whisper = await client.call_tool("whisper_transcribe", {"audio_url": "https://example.com/a.wav"})
        family = await client.call_tool("transcribe", {"model": "whisper", "audio_url": "https://example.com/a.wav"})
        speech = await client.call_tool("qwen3_tts", {"text": "Hello"})
    names = set(tools)
    # stt tools only: transcribe (its models all stt), no speech or music, listed or by member name.
    assert "transcribe" in names and not names & {"speak", "make_music", "qwen3_tts", "lyria2_music"}
    assert tools["transcribe"].input_schema["properties"]["model"]["enum"] == list(
        CATALOG.families["transcribe"].members
    )
    assert "whisper_transcribe" not in names  # a member: reached through transcribe, still callable
    assert not whisper.is_error and not family.is_error, text_of(whisper) + text_of(family)
    assert speech.is_error and "qwen3_tts" in text_of(speech)  # not offered at all, listed or not
    assert {"get_job", "cancel_job", "list_jobs"} <= names
    assert "qwen3_tts" not in catalog and "whisper_transcribe" in catalog
    assert prompts == {"transcribe_and_summarise"}


def test_unknown_toolset_is_a_clear_start_up_error(settings: Settings) -> None:
    env = env_for(settings) | {"MCP_AUDIO_TOOLSETS": "tts,karaoke"}
    proc = subprocess.run(
        [sys.executable, "-m", "mcp_audio", "tools"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert "invalid setting MCP_AUDIO_TOOLSETS" in proc.stderr
    assert (
        "unknown toolset(s) ['karaoke']; allowed: all, dynamic, or a comma list of tts, stt, music, sfx, edit"
        in proc.stderr
    )


async def test_prompts_name_the_tools_to_use(client: Client) -> None:
    prompts = {prompt.name: prompt for prompt in (await client.list_prompts()).prompts}
    assert {"narrate_script", "transcribe_and_summarise", "score_scene"} <= set(prompts)
    narrate = await client.get_prompt("narrate_script", {"script": "Once upon a time.", "voice": "Serena"})
    text = narrate.messages[0].content.text  # type: ignore[union-attr]
    assert "speak with model 'qwen3'" in text and "voice 'Serena'" in text and "Once upon a time." in text
    scene = await client.get_prompt("score_scene", {"scene": "A storm hits the harbour"})
    scene_text = scene.messages[0].content.text  # type: ignore[union-attr]
    assert "make_music with model 'lyria2'" in scene_text
    assert "make_sound_effect with model 'elevenlabs'" in scene_text
    listed = {tool.name: tool for tool in (await client.list_tools()).tools}
    # Each call a prompt names is one tools/list offers, with a `model` that runs the intended tool,
    # taking the arguments the prompt tells the agent to set; the unlisted member names stay out.
    for said, tool, choice, capability, arguments in [
        (text, "speak", "qwen3", "qwen3_tts", ["voice", "max_new_tokens"]),
        (scene_text, "make_music", "lyria2", "lyria2_music", ["negative_prompt"]),
        (scene_text, "make_sound_effect", "elevenlabs", "elevenlabs_sound_effect", ["duration_seconds"]),
    ]:
        assert choice in listed[tool].input_schema["properties"]["model"]["enum"]
        routed, _ = CATALOG.resolve(tool, {"model": choice})
        assert routed is not None and routed.name == capability
        assert set(arguments) <= set(listed[tool].input_schema["properties"]), (tool, arguments)
        assert capability not in said and capability not in listed
