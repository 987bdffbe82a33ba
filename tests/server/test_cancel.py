"""Cancelling: a client abandoning its tool call, and the cancel_job tool, both stop the upstream job."""

from __future__ import annotations

import time

import anyio
import pytest
from mcp import Client

from mcp_audio.core.results import JobResult
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
    with anyio.move_on_after(5):  # the row is written once fal's answer to the cancel is in
        while (status := await _only_job_status(client)) != "cancelled":
            await anyio.sleep(0.05)
    assert status == "cancelled"


async def _only_job_status(client: Client) -> str:
    listed = await client.call_tool("list_jobs", {})
    [row] = (listed.structured_content or {})["jobs"]
    return str(row["status"])


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


async def test_a_cancel_while_the_submit_is_on_its_way_cancels_the_job_it_created(
    settings: object, fake_fal: FakeFal
) -> None:
    # fal takes 1 s to answer the submit: cutting the request then would leave a paid fal job
    # that nobody knows the id of. The cancel waits for the id and cancels that job.
    fake_fal.inject("submit", 0, delay_s=1.0)
    fake_fal.script("fal-ai/lyria2", run_s=30)
    async with Client(server(settings.model_copy(update={"wait_s": 0.1}))) as client:  # type: ignore[attr-defined]
        handle = await client.call_tool("lyria2_music", {"prompt": "slow to arrive"})
        job_id = (handle.structured_content or {})["job_id"]
        assert [r.kind for r in fake_fal.requests] == ["submit"]  # on its way, not answered yet
        result = await client.call_tool("cancel_job", {"job_id": job_id})
    assert (result.structured_content or {})["status"] == "cancelled", result
    [job] = fake_fal.jobs.values()
    assert job.cancelled
    assert [r.kind for r in fake_fal.requests].count("cancel") == 1


async def test_cancelling_a_finished_job_leaves_it_alone(client: Client, fake_fal: FakeFal) -> None:
    done = await client.call_tool("elevenlabs_sound_effect", {"text": "door creak"})
    assert done.structured_content is not None
    result = await client.call_tool("cancel_job", {"job_id": done.structured_content["job_id"]})
    assert result.structured_content is not None and result.structured_content["status"] == "completed"
    assert "cancel" not in [r.kind for r in fake_fal.requests]


async def test_get_job_waits_on_a_job_this_process_does_not_follow(settings: object) -> None:
    from mcp_audio.store import open_store

    store = await open_store(settings)  # type: ignore[arg-type]
    await store.heartbeat("another-host:4242:feedbeef", "another-host", 4242, 60)
    job = await store.create_job(
        tool="lyria2_music",
        provider="fal",
        endpoint="fal-ai/lyria2",
        body={"prompt": "x"},
        options={},
        owner="another-host:4242:feedbeef",
    )
    async with Client(server(settings)) as client:  # type: ignore[arg-type]
        # Another process (here: this store) holds its lease, still submitting it: nobody here follows it.
        started = time.monotonic()
        waiting = await client.call_tool("get_job", {"job_id": job.id, "wait_s": 1})
        waited = time.monotonic() - started
        await store.complete(job.id, JobResult(files=[], output={"note": "done elsewhere"}))
        done = await client.call_tool("get_job", {"job_id": job.id, "wait_s": 5})
    await store.close()
    assert (waiting.structured_content or {})["status"] == "queued" and waited >= 0.9  # it waited, not answered at once
    assert (done.structured_content or {})["status"] == "completed"
    assert (done.structured_content or {})["output"] == {"note": "done elsewhere"}
