"""2026-era resource subscriptions to jobs: a `subscriptions/listen` stream that asks for
`jobs://{id}` hears each change of that job, from this process or from another replica on the
database, and only if the job is its caller's."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.shared.subscriptions import ResourceUpdated
from mcp_types import ResourceUpdatedNotification

from mcp_audio.config import ServerSettings
from mcp_audio.sandbox.fal_queue import FakeFal
from tests.conftest import on_backend
from tests.helpers import body_of, server
from tests.http_harness import add_token, http_server, mcp_client

pytestmark = pytest.mark.anyio


async def started(client: Client) -> str:
    handle = await client.call_tool("lyria2_music", {"prompt": "calm"})
    assert body_of(handle)["status"] in ("queued", "running"), body_of(handle)
    return str(body_of(handle)["job_id"])


async def updates_until_done(client: Client, job_id: str, subscription: Any) -> list[str]:
    """The URIs the stream announces, each followed by a read, until the read shows the end."""
    heard: list[str] = []
    with anyio.fail_after(20):
        async for event in subscription:
            heard.append(event.uri if isinstance(event, ResourceUpdated) else repr(event))
            job = await client.read_resource(f"jobs://{job_id}")
            if '"status": "completed"' in job.contents[0].text:  # type: ignore[union-attr]
                return heard
    raise AssertionError(f"the stream ended first: {heard}")


async def test_a_subscription_to_a_job_hears_it_run_and_finish(
    settings: ServerSettings, fake_fal: FakeFal, database_url: str | None
) -> None:
    fake_fal.script("fal-ai/lyria2", queue_s=0.3, run_s=0.6, logs=["sampling"])
    shared = on_backend(settings.model_copy(update={"wait_s": 0.05}), database_url)
    async with Client(server(shared)) as client:
        job_id = await started(client)
        async with client.listen(resource_subscriptions=[f"jobs://{job_id}"]) as subscription:
            heard = await updates_until_done(client, job_id, subscription)
    assert heard and set(heard) == {f"jobs://{job_id}"}


async def test_another_replica_hears_the_job_its_peer_follows(
    settings: ServerSettings, fake_fal: FakeFal, pg_url: str
) -> None:
    fake_fal.script("fal-ai/lyria2", queue_s=0.3, run_s=1.0)
    shared = on_backend(settings.model_copy(update={"wait_s": 0.05}), pg_url)
    async with Client(server(shared)) as follower, Client(server(shared)) as elsewhere:
        job_id = await started(follower)
        async with elsewhere.listen(resource_subscriptions=[f"jobs://{job_id}"]) as subscription:
            heard = await updates_until_done(elsewhere, job_id, subscription)
    assert heard and set(heard) == {f"jobs://{job_id}"}


async def test_another_callers_job_is_never_announced(settings: ServerSettings, fake_fal: FakeFal) -> None:
    fake_fal.script("fal-ai/lyria2", queue_s=0.3, run_s=0.6)
    alice, bob = add_token(settings, "alice"), add_token(settings, "bob")
    with http_server(settings.model_copy(update={"wait_s": 0.05})) as served:
        async with mcp_client(served.mcp, alice) as as_alice, mcp_client(served.mcp, bob) as as_bob:
            job_id = await started(as_alice)
            uri = f"jobs://{job_id}"
            async with (
                as_alice.listen(resource_subscriptions=[uri]) as hers,
                as_bob.listen(resource_subscriptions=[uri]) as his,
            ):
                heard = await updates_until_done(as_alice, job_id, hers)
                overheard: list[object] = []
                with anyio.move_on_after(0.5):  # every change has been announced by now
                    async for event in his:
                        overheard.append(event)
    assert heard and set(heard) == {uri}
    assert overheard == []


async def test_a_2025_era_session_subscribes_and_hears_its_job(settings: ServerSettings, fake_fal: FakeFal) -> None:
    fake_fal.script("fal-ai/lyria2", queue_s=0.3, run_s=0.6, logs=["sampling"])
    updated: list[str] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            updated.append(str(message.params.uri))

    quick = settings.model_copy(update={"wait_s": 0.05})
    async with Client(server(quick), mode="legacy", message_handler=on_message) as client:
        assert client.session.server_capabilities.resources.subscribe is True  # type: ignore[union-attr]
        job_id = await started(client)
        with pytest.warns(MCPDeprecationWarning):  # the SDK's: the 2026 era removed it
            await client.subscribe_resource(f"jobs://{job_id}")
        with anyio.fail_after(20):
            while (
                not updated
                or '"status": "completed"' not in (await client.read_resource(f"jobs://{job_id}")).contents[0].text
            ):  # type: ignore[union-attr]
                await anyio.sleep(0.05)
        await anyio.sleep(0.2)  # the last change's notification is on its way
        with pytest.warns(MCPDeprecationWarning):
            await client.unsubscribe_resource(f"jobs://{job_id}")
    assert updated and set(updated) == {f"jobs://{job_id}"}


async def test_a_2025_era_session_never_hears_another_callers_job(settings: ServerSettings, fake_fal: FakeFal) -> None:
    fake_fal.script("fal-ai/lyria2", queue_s=0.3, run_s=0.6)
    alice, bob = add_token(settings, "alice"), add_token(settings, "bob")
    heard: dict[str, list[str]] = {"alice": [], "bob": []}

    def recorder(name: str) -> Any:
        async def on_message(message: Any) -> None:
            if isinstance(message, ResourceUpdatedNotification):
                heard[name].append(str(message.params.uri))

        return on_message

    with http_server(settings.model_copy(update={"wait_s": 0.05})) as served:
        async with (
            mcp_client(served.mcp, alice, mode="legacy", message_handler=recorder("alice")) as as_alice,
            mcp_client(served.mcp, bob, mode="legacy", message_handler=recorder("bob")) as as_bob,
        ):
            job_id = await started(as_alice)
            with pytest.warns(MCPDeprecationWarning):
                await as_alice.subscribe_resource(f"jobs://{job_id}")
                await as_bob.subscribe_resource(f"jobs://{job_id}")
            done = await as_alice.call_tool("get_job", {"job_id": job_id, "wait_s": 20})
            await anyio.sleep(0.5)  # the last change's notification is on its way
    assert body_of(done)["status"] == "completed"
    assert heard["alice"] and set(heard["alice"]) == {f"jobs://{job_id}"}
    assert heard["bob"] == []


async def test_stateless_http_offers_2025_era_sessions_no_subscriptions(settings: ServerSettings) -> None:
    with http_server(settings, extra_env={"MCP_AUDIO_HTTP_STATELESS": "true"}) as served:
        async with mcp_client(served.mcp, mode="legacy") as client:
            resources = client.session.server_capabilities.resources  # type: ignore[union-attr]
    assert resources is not None and not resources.subscribe
