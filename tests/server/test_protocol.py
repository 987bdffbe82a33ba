"""Protocol details a client relies on: completions, logging/setLevel, and error codes that keep
our messages (unknown prompt, missing job or file resource)."""

from __future__ import annotations

import logging
import warnings

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import PromptReference, ResourceTemplateReference

from mcp_audio.config import Settings
from mcp_audio.core.voices import SavedVoice
from mcp_audio.store import open_store
from tests.helpers import server

pytestmark = pytest.mark.anyio
VOICE_API_MODELS = "voices://voice-api{?title,language,tag,sort}"


async def test_completions_match_the_typed_prefix_ignoring_case_without_any_key(settings: Settings) -> None:
    store = await open_store(settings)
    await store.save_voice(SavedVoice(name="Storyteller", family="qwen3-tts", provider="fal", fields={}))
    await store.close()
    keyless = settings.model_copy(update={"fal_key": None})
    async with Client(server(keyless)) as client:
        voices = await client.complete(
            PromptReference(type="ref/prompt", name="narrate_script"), {"name": "voice", "value": "s"}
        )
        sort = await client.complete(
            ResourceTemplateReference(type="ref/resource", uri=VOICE_API_MODELS), {"name": "sort", "value": "SC"}
        )
        unknown = await client.complete(
            PromptReference(type="ref/prompt", name="narrate_script"), {"name": "tempo", "value": ""}
        )
    assert voices.completion.values == ["Serena", "Sohee", "Storyteller"]  # presets, then saved clones
    assert sort.completion.values == ["score"]
    assert unknown.completion.values == []


async def test_job_ids_complete_for_job_and_file_resources(client: Client) -> None:
    done = await client.call_tool("elevenlabs_sound_effect", {"text": "door"})
    job_id = (done.structured_content or {})["job_id"]
    found = await client.complete(
        ResourceTemplateReference(type="ref/resource", uri="jobs://{job_id}"),
        {"name": "job_id", "value": job_id[:4].upper()},
    )
    assert found.completion.values == [job_id]


async def test_unknown_prompt_and_missing_resources_keep_code_and_message(client: Client) -> None:
    with pytest.raises(MCPError) as prompt:
        await client.get_prompt("summarise_everything", {})
    assert prompt.value.error.code == -32602
    assert prompt.value.error.message.startswith("Unknown prompt 'summarise_everything'; prompts: narrate_script,")
    with pytest.raises(MCPError) as job:
        await client.read_resource("jobs://no-such-job")
    assert job.value.error.code == -32602
    assert (
        job.value.error.message
        == "No job with id 'no-such-job'. List recent jobs with list_jobs or read jobs://recent."
    )
    with pytest.raises(MCPError) as file:
        await client.read_resource("files://no-such-job/a.wav")
    assert (file.value.error.code, file.value.error.message) == (-32602, "No saved file 'a.wav' for job 'no-such-job'")


async def test_logging_set_level_answers_for_2025_era_clients(settings: Settings) -> None:
    async with Client(server(settings), mode="legacy") as client:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecated in the 2026 era, still what 2025 clients send
            result = await client.set_logging_level("debug")
    assert result.model_dump(exclude_none=True) == {}
    assert logging.getLogger("mcp_audio").level == logging.DEBUG
    logging.getLogger("mcp_audio").setLevel(logging.NOTSET)
