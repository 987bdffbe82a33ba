"""Cancelling: a client abandoning its tool call, and the cancel_job tool, both stop the upstream job."""

from __future__ import annotations

import anyio
import pytest
from mcp import Client

from mcp_audio.sandbox.fal_queue import FakeFal
from tests.helpers import server

pytestmark = pytest.mark.anyio


async def wait_for(predicate: object, timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():  # type: ignore[operator]
            await anyio.sleep(0.02)


async def test_client_cancelling_the_call_cancels_the_upstream_job(client: Client, fake_fal: FakeFal) -> None:
    fake_fal.script("fal-ai/lyria2", queue_s=30)
    async with anyio.create_task_group() as tg:
        tg.start_soon(client.call_tool, "lyria2_music", {"prompt": "very long piece"})
        await wait_for(lambda: any(r.kind == "stream" for r in fake_fal.requests))
        tg.cancel_scope.cancel()
    await wait_for(lambda: any(r.kind == "cancel" for r in fake_fal.requests))
    [job] = fake_fal.jobs.values()
    assert job.cancelled
    listed = await client.call_tool("list_jobs", {})
    assert listed.structured_content is not None
    [row] = listed.structured_content["jobs"]
    assert row["status"] == "cancelled"


async def test_cancel_job_tool_cancels_upstream_and_records_it(settings: object, fake_fal: FakeFal) -> None:

    fake_fal.script("fal-ai/lyria2", run_s=30)
    async with Client(server(settings.model_copy(update={"wait_s": 0.2}))) as client:  # type: ignore[attr-defined]
        handle = await client.call_tool("lyria2_music", {"prompt": "never ending"})
        assert handle.structured_content is not None
        job_id = handle.structured_content["job_id"]
        result = await client.call_tool("cancel_job", {"job_id": job_id})
        assert result.structured_content is not None
        assert result.structured_content["status"] == "cancelled"
        assert result.structured_content["error"] == "cancelled at the client's request"
        again = await client.call_tool("get_job", {"job_id": job_id, "wait_s": 0.5})
        assert again.structured_content is not None and again.structured_content["status"] == "cancelled"
    assert [r.kind for r in fake_fal.requests].count("cancel") == 1
    assert next(iter(fake_fal.jobs.values())).cancelled


async def test_cancelling_a_finished_job_leaves_it_alone(client: Client, fake_fal: FakeFal) -> None:
    done = await client.call_tool("elevenlabs_sound_effect", {"text": "door creak"})
    assert done.structured_content is not None
    result = await client.call_tool("cancel_job", {"job_id": done.structured_content["job_id"]})
    assert result.structured_content is not None and result.structured_content["status"] == "completed"
    assert "cancel" not in [r.kind for r in fake_fal.requests]
