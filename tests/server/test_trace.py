"""An OpenTelemetry `traceparent` in a call's `_meta` is kept with its job and sent as a
`traceparent` header on that job's upstream requests, by whichever process follows it (after
a restart too); a value not in the W3C format is ignored."""

from __future__ import annotations

import pytest
from mcp import Client

from mcp_audio.config import ServerSettings
from mcp_audio.sandbox.fal_queue import FakeFal
from mcp_audio.store import open_store
from tests.helpers import body_of, finish_the_unfinished_job, server

pytestmark = pytest.mark.anyio

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_a_calls_traceparent_goes_with_its_job_upstream(client: Client, fake_fal: FakeFal) -> None:
    traced = body_of(await client.call_tool("lyria2_music", {"prompt": "calm"}, meta={"traceparent": TRACE}))  # type: ignore[typeddict-unknown-key]
    plain = body_of(await client.call_tool("lyria2_music", {"prompt": "calm"}))
    [first, second] = [r.request_id for r in fake_fal.requests_of("submit")]
    assert traced["status"] == plain["status"] == "completed"
    sent = fake_fal.requests_for(str(first))
    assert {r.kind for r in sent} >= {"submit", "stream", "result"}
    assert all(r.headers.get("traceparent") == TRACE for r in sent), [(r.kind, r.headers) for r in sent]
    assert all("traceparent" not in r.headers for r in fake_fal.requests_for(str(second)))


@pytest.mark.parametrize(
    "bad",
    [
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # no flags
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # an all-zero trace id
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nX-Injected: 1",
    ],
)
async def test_a_malformed_traceparent_is_ignored(settings: ServerSettings, fake_fal: FakeFal, bad: str) -> None:
    async with Client(server(settings), mode="legacy") as client:
        done = await client.call_tool("qwen3_tts", {"text": "Hi."}, meta={"traceparent": bad})  # type: ignore[typeddict-unknown-key]
    assert not done.is_error
    assert all("traceparent" not in r.headers for r in fake_fal.requests)
    store = await open_store(settings)
    job = await store.get_job(body_of(done)["job_id"])
    await store.close()
    assert job is not None and job.traceparent is None


async def test_a_resumed_job_keeps_its_traceparent(settings: ServerSettings, fake_fal: FakeFal) -> None:
    fake_fal.script("fal-ai/lyria2", queue_s=1.5)
    quick = settings.model_copy(update={"wait_s": 0.1})
    async with Client(server(quick), mode="legacy") as client:
        started = body_of(await client.call_tool("lyria2_music", {"prompt": "calm"}, meta={"traceparent": TRACE}))  # type: ignore[typeddict-unknown-key]
    assert started["status"] in ("queued", "running")
    submitted = len(fake_fal.requests)
    async with Client(server(settings), mode="legacy") as client:  # the next process follows it
        await finish_the_unfinished_job(client)
    after_restart = fake_fal.requests[submitted:]
    assert {r.kind for r in after_restart} >= {"result"}
    assert all(r.headers.get("traceparent") == TRACE for r in after_restart if r.request_id)
