"""A tool call sent again with its idempotency key (`io.mcp-audio/idempotency-key` in `_meta`)
gets the first call's job back, with nothing submitted twice; the same key with other arguments
is refused, naming the key; a key is per caller, and one that does not fit is refused."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp import Client

from mcp_audio.config import ServerSettings
from mcp_audio.sandbox.fal_queue import FakeFal
from tests.helpers import body_of, server, text_of
from tests.server.test_tasks import connected, task_call

pytestmark = pytest.mark.anyio

KEY = "io.mcp-audio/idempotency-key"


def keyed(key: str) -> dict[str, Any]:
    return {KEY: key}


async def test_a_call_sent_again_gets_the_same_job_and_result_without_a_second_submit(
    client: Client, fake_fal: FakeFal
) -> None:
    first = await client.call_tool("qwen3_tts", {"text": "Hello."}, meta=keyed("call-1"))  # type: ignore[typeddict-unknown-key]
    again = await client.call_tool("qwen3_tts", {"text": "Hello."}, meta=keyed("call-1"))  # type: ignore[typeddict-unknown-key]
    other = await client.call_tool("qwen3_tts", {"text": "Hello."}, meta=keyed("call-2"))  # type: ignore[typeddict-unknown-key]
    unkeyed = await client.call_tool("qwen3_tts", {"text": "Hello."})
    assert not first.is_error and not again.is_error, (text_of(first), text_of(again))
    assert body_of(first)["status"] == "completed"
    assert body_of(again) == body_of(first)  # the same job, the same result
    assert body_of(other)["job_id"] != body_of(first)["job_id"] != body_of(unkeyed)["job_id"]
    assert len(fake_fal.requests_of("submit")) == 3  # first, call-2, unkeyed: the re-sent call sent nothing


async def test_an_unfinished_job_sent_again_answers_its_handle(settings: ServerSettings, fake_fal: FakeFal) -> None:
    fake_fal.script("fal-ai/lyria2", queue_s=30)
    async with Client(server(settings.model_copy(update={"wait_s": 0.2})), mode="legacy") as client:
        first = body_of(await client.call_tool("lyria2_music", {"prompt": "calm"}, meta=keyed("k")))  # type: ignore[typeddict-unknown-key]
        again = body_of(await client.call_tool("lyria2_music", {"prompt": "calm"}, meta=keyed("k")))  # type: ignore[typeddict-unknown-key]
        await client.call_tool("cancel_job", {"job_id": first["job_id"]})
    assert first["status"] in ("queued", "running") and again["job_id"] == first["job_id"]
    assert again["status"] in ("queued", "running")
    assert len(fake_fal.requests_of("submit")) == 1


async def test_the_same_key_with_other_arguments_is_refused_naming_the_key(client: Client, fake_fal: FakeFal) -> None:
    first = await client.call_tool("qwen3_tts", {"text": "Hello."}, meta=keyed("order-17"))  # type: ignore[typeddict-unknown-key]
    changed = await client.call_tool("qwen3_tts", {"text": "Goodbye."}, meta=keyed("order-17"))  # type: ignore[typeddict-unknown-key]
    other_tool = await client.call_tool("lyria2_music", {"prompt": "Hello."}, meta=keyed("order-17"))  # type: ignore[typeddict-unknown-key]
    assert not first.is_error
    for refused in (changed, other_tool):
        assert refused.is_error and "'order-17'" in text_of(refused), text_of(refused)
        assert body_of(first)["job_id"] in text_of(refused)
    assert len(fake_fal.requests_of("submit")) == 1


async def test_concurrent_calls_with_one_key_make_one_job(settings: ServerSettings, fake_fal: FakeFal) -> None:
    fake_fal.script("fal-ai/lyria2", run_s=0.3)
    bodies: list[dict[str, Any]] = []
    async with Client(server(settings), mode="legacy") as client:

        async def call() -> None:
            bodies.append(body_of(await client.call_tool("lyria2_music", {"prompt": "calm"}, meta=keyed("same"))))  # type: ignore[typeddict-unknown-key]

        async with anyio.create_task_group() as group:
            for _ in range(8):
                group.start_soon(call)
    assert len({body["job_id"] for body in bodies}) == 1 and len(bodies) == 8
    assert all(body["status"] == "completed" for body in bodies)
    assert len(fake_fal.requests_of("submit")) == 1


async def test_keys_are_per_caller_bounded_and_checked(settings: ServerSettings, fake_fal: FakeFal) -> None:
    async with Client(server(settings), mode="legacy") as client:
        too_long = await client.call_tool("qwen3_tts", {"text": "Hi."}, meta=keyed("k" * 256))  # type: ignore[typeddict-unknown-key]
        spaces = await client.call_tool("qwen3_tts", {"text": "Hi."}, meta=keyed("a key"))  # type: ignore[typeddict-unknown-key]
        number = await client.call_tool("qwen3_tts", {"text": "Hi."}, meta={KEY: 7})  # type: ignore[typeddict-unknown-key]
    for refused in (too_long, spaces, number):
        assert refused.is_error and KEY in text_of(refused) and "visible ASCII" in text_of(refused), text_of(refused)
    assert not fake_fal.requests_of("submit")


async def test_a_task_call_sent_again_gets_the_same_task(settings: ServerSettings, fake_fal: FakeFal) -> None:
    fake_fal.script("fal-ai/lyria2", queue_s=30)
    params = task_call("lyria2_music", {"prompt": "calm"}) | {"_meta": keyed("task-1")}
    async with connected(server(settings)) as (peer, _):
        first = await peer.result("tools/call", params)
        again = await peer.result("tools/call", params)
        await peer.result("tasks/cancel", {"taskId": first["task"]["taskId"]})
    assert again["task"]["taskId"] == first["task"]["taskId"]
    assert len(fake_fal.requests_of("submit")) == 1
