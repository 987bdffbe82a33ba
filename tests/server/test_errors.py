"""What an agent sees when something goes wrong: exact messages, and never the API key."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp import Client

from mcp_audio.config import Settings
from mcp_audio.sandbox.fal_queue import FakeFal
from mcp_audio.store import open_store
from tests.helpers import FAL_KEY, assert_secret_kept, server, text_of

pytestmark = pytest.mark.anyio


async def test_invalid_arguments_name_field_value_and_allowed(client: Client, fake_fal: FakeFal) -> None:
    result = await client.call_tool(
        "qwen3_tts",
        {
            "text": "Hi",
            "language": "Klingon",
            "advanced": {"temperature": 3},
            "model_size": "7b",
            "speed": 2,
            "top_k": 5,
        },
    )
    assert result.is_error
    message = text_of(result)
    assert "Invalid arguments for qwen3_tts:" in message
    assert "`language`: got 'Klingon'; input should be 'Auto', 'English'" in message
    assert (
        "`advanced.temperature`: got 3; input should be less than or equal to 1. Allowed: number, >= 0, <= 1."
        in message
    )
    assert '`top_k`: belongs inside `advanced`, e.g. {"advanced": {"top_k": ...}}.' in message
    assert "`model_size`: got '7b'; input should be '1.7b' or '0.6b'. Allowed: one of '1.7b', '0.6b'." in message
    assert "`speed`: unknown argument. Allowed arguments: text, " in message
    assert fake_fal.requests == []


async def test_missing_required_argument(client: Client, fake_fal: FakeFal) -> None:
    result = await client.call_tool("lyria2_music", {"negative_prompt": "vocals"})
    assert result.is_error
    assert "`prompt`: required but missing" in text_of(result)
    assert fake_fal.requests == []


async def test_upstream_422_shows_the_upstream_field_messages(
    client: Client, fake_fal: FakeFal, settings: Settings
) -> None:
    fake_fal.inject(
        "submit",
        422,
        body={"detail": [{"loc": ["body", "prompt"], "msg": "Prompt violates content policy", "type": "value_error"}]},
    )
    result = await client.call_tool("lyria2_music", {"prompt": "something"})
    assert result.is_error
    assert "fal rejected the input:\n- `prompt`: Prompt violates content policy" in text_of(result)
    assert result.structured_content is not None and result.structured_content["status"] == "failed"
    assert_secret_kept(FAL_KEY, settings, text_of(result))


async def test_transient_5xx_while_following_is_retried(client: Client, fake_fal: FakeFal) -> None:
    fake_fal.script("fal-ai/lyria2", run_s=0.3)
    fake_fal.inject(
        "stream", 503, body={"detail": "no runner"}, headers={"X-Fal-Error-Type": "runner_scheduling_failure"}
    )
    fake_fal.inject("status", 503, body={"detail": "no runner"})
    fake_fal.inject("result", 502, body={"detail": "bad gateway"})
    result = await client.call_tool("lyria2_music", {"prompt": "calm"})
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None and result.structured_content["status"] == "completed"


async def test_persistent_5xx_ends_with_a_clear_error(settings: Settings, fake_fal: FakeFal) -> None:
    fake_fal.inject("submit", 503, times=10, headers={"Retry-After": "0"}, body={"detail": "overloaded"})
    async with Client(server(settings)) as client:
        result = await client.call_tool("lyria2_music", {"prompt": "calm"})
    assert result.is_error
    assert "fal is unavailable (HTTP 503): overloaded. Retries were exhausted; try again later." in text_of(result)
    assert len([r for r in fake_fal.requests if r.kind == "submit"]) == 5
    assert fake_fal.jobs == {}


async def test_failed_job_reports_the_upstream_error(client: Client, fake_fal: FakeFal, settings: Settings) -> None:
    fake_fal.script(
        "fal-ai/lyria2", run_s=0.2, error=(500, {"detail": "CUDA out of memory", "error_type": "runner_server_error"})
    )
    result = await client.call_tool("lyria2_music", {"prompt": "calm"})
    assert result.is_error
    assert "lyria2_music failed (job " in text_of(result)
    assert "fal job failed: CUDA out of memory" in text_of(result)
    assert_secret_kept(FAL_KEY, settings, text_of(result), str(result.structured_content))


async def test_unknown_job_id(client: Client) -> None:
    result = await client.call_tool("get_job", {"job_id": "nope"})
    assert result.is_error
    assert "No job with id 'nope'. List recent jobs with list_jobs or read jobs://recent." in text_of(result)
    cancelled = await client.call_tool("cancel_job", {"job_id": "nope"})
    assert cancelled.is_error and "No job with id 'nope'" in text_of(cancelled)


async def test_key_never_reaches_logs(caplog: Any, client: Client, fake_fal: FakeFal, settings: Settings) -> None:
    caplog.set_level("DEBUG")
    fake_fal.inject("submit", 401, body={"detail": f"bad key {FAL_KEY}"})  # an upstream that echoes the key
    result = await client.call_tool("lyria2_music", {"prompt": "calm"})
    assert result.is_error
    assert_secret_kept(FAL_KEY, settings, text_of(result), caplog.text)


async def test_a_stored_handle_that_does_not_validate_fails_the_job_clearly(
    settings: Settings, fake_fal: FakeFal
) -> None:
    store = await open_store(settings)
    job = await store.create_job(
        tool="lyria2_music", provider="fal", endpoint="fal-ai/lyria2", body={"prompt": "x"}, options={}
    )
    await store.record_submission(job.id, "req-1", {"request_id": "req-1"})  # no status, response or cancel URL
    await store.close()
    async with Client(server(settings)) as client:
        result = await client.call_tool("get_job", {"job_id": job.id, "wait_s": 5})
    assert result.is_error
    assert text_of(result) == (
        f"lyria2_music failed (job {job.id}): job {job.id}'s stored upstream handle is not valid (3 problem(s)); "
        "it cannot be followed. Upstream request id: req-1."
    )
    assert fake_fal.requests == []


async def test_the_fal_fake_refuses_what_fals_schema_refuses(client: Client, fake_fal: FakeFal) -> None:
    # `xx` fits the tool's language pattern but is not one of fal's 99 Whisper languages.
    result = await client.call_tool("whisper_transcribe", {"audio_url": "https://example.com/a.mp3", "language": "xx"})
    assert result.is_error
    assert "fal rejected the input:\n- `language`: Input should be 'af', 'am', " in text_of(result)
    assert (result.structured_content or {})["status"] == "failed"
    [submit] = fake_fal.requests_of("submit")
    assert submit.json == {"audio_url": "https://example.com/a.mp3", "language": "xx"}
    assert fake_fal.jobs == {}  # refused before any job existed, as fal does


async def test_job_tools_refuse_unknown_and_non_finite_arguments(client: Client) -> None:
    typo = await client.call_tool("get_job", {"job_id": "x", "wiat_s": 5})
    assert typo.is_error
    assert text_of(typo) == (
        "Error executing tool get_job: Invalid arguments for get_job:\n"
        "- `wiat_s`: unknown argument. Allowed arguments: job_id, wait_s."
    )
    forever = await client.call_tool("get_job", {"job_id": "x", "wait_s": "Infinity"})
    assert "- `wait_s`: got 'Infinity'; input should be a finite number." in text_of(forever)
    listed = await client.call_tool("list_jobs", {"status": "any", "colour": "red"})
    assert "- `colour`: unknown argument. Allowed arguments: status, limit." in text_of(listed)
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert all(
        tools[name].input_schema["additionalProperties"] is False for name in ("get_job", "cancel_job", "list_jobs")
    )


async def test_non_finite_numbers_are_refused_before_anything_is_sent(client: Client, fake_fal: FakeFal) -> None:
    # prompt_influence has bounds, so pydantic's own check names them; `Infinity` is refused anyway.
    result = await client.call_tool("elevenlabs_sound_effect", {"text": "boom", "prompt_influence": "Infinity"})
    assert result.is_error
    assert "`prompt_influence`: got 'Infinity'; input should be a finite number. Allowed: number, >= 0, <= 1." in (
        text_of(result)
    )
    assert fake_fal.requests == []


async def test_a_key_echoed_inside_upstream_output_is_redacted(
    client: Client, fake_fal: FakeFal, settings: Settings
) -> None:
    fake_fal.script(
        "fal-ai/whisper",
        output={"text": f"debug: key={FAL_KEY}", "chunks": [{"timestamp": [0, 1], "text": FAL_KEY}], "languages": []},
    )
    result = await client.call_tool("whisper_transcribe", {"audio_url": "https://example.com/a.mp3"})
    assert not result.is_error, text_of(result)
    body = result.structured_content or {}
    assert body["output"]["text"] == "debug: key=[redacted]"
    assert body["output"]["chunks"][0]["text"] == "[redacted]"
    assert_secret_kept(FAL_KEY, settings, text_of(result), str(body))


@pytest.mark.parametrize("status", [502, 503, 504])
async def test_a_5xx_that_carries_a_request_id_is_followed_never_resubmitted(
    client: Client, fake_fal: FakeFal, status: int
) -> None:
    fake_fal.fail_submit_after_creating(status)
    result = await client.call_tool("lyria2_music", {"prompt": "calm"})
    assert not result.is_error, text_of(result)
    assert (result.structured_content or {})["status"] == "completed"
    assert len(fake_fal.requests_of("submit")) == 1  # one submit: one billed job
    [job] = fake_fal.jobs.values()
    assert [r.kind for r in fake_fal.requests_for(job.request_id)] == ["submit", "stream", "result"]


async def test_an_ingress_5xx_without_request_id_is_resent(client: Client, fake_fal: FakeFal) -> None:
    fake_fal.inject("submit", 503, times=2, headers={"Retry-After": "0"}, body={"detail": "no healthy upstream"})
    result = await client.call_tool("lyria2_music", {"prompt": "calm"})
    assert not result.is_error, text_of(result)
    assert len(fake_fal.requests_of("submit")) == 3 and len(fake_fal.jobs) == 1


async def test_a_stream_of_keep_alives_only_gets_a_status_check(client: Client, fake_fal: FakeFal) -> None:
    fake_fal.script("fal-ai/lyria2", run_s=0.2)
    fake_fal.mute_next_stream()  # e.g. a proxy that swallows the events: pings only, for ever
    with anyio.fail_after(10):
        result = await client.call_tool("lyria2_music", {"prompt": "calm"})
    assert not result.is_error, text_of(result)
    assert (result.structured_content or {})["status"] == "completed"
    [job] = fake_fal.jobs.values()
    # Four requests: submit, the silent stream, one status check after 2 s of silence, the result.
    assert [r.kind for r in fake_fal.requests_for(job.request_id)] == ["submit", "stream", "status", "result"]


async def test_job_tools_of_two_servers_in_one_process_each_answer_from_their_own_jobs(
    settings: Settings, fake_fal: FakeFal, tmp_path: Any
) -> None:
    """The job tools' schemas are made once per process (server/strict.py); each server's tools
    still run on its own state, and still refuse an argument they do not take."""
    other = settings.model_copy(update={"data_dir": tmp_path / "other-data", "output_dir": tmp_path / "other-out"})
    async with Client(server(settings)) as first, Client(server(other)) as second:
        made = await first.call_tool("lyria2_music", {"prompt": "calm"})
        assert not made.is_error, text_of(made)
        job_id = made.structured_content["job_id"]  # type: ignore[index]
        listed = [(await client.call_tool("list_jobs", {})).structured_content for client in (first, second)]
        assert [[job["job_id"] for job in body["jobs"]] for body in listed] == [[job_id], []]  # type: ignore[index]
        unknown = await second.call_tool("get_job", {"job_id": job_id})
        assert unknown.is_error and job_id in text_of(unknown)
        typo = await second.call_tool("list_jobs", {"limt": 5})
        assert typo.is_error
        assert "`limt`: unknown argument. Allowed arguments: status, limit." in text_of(typo)
