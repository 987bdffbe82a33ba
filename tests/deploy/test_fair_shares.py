"""One caller's renders cannot starve the others or the health check (a real `serve --http`
process, two tokens): many concurrent audio_join calls by one caller wait their turn
(MCP_AUDIO_MAX_RENDERS_PER_CALLER), /healthz keeps answering 200 quickly, and another caller's
render starts while the first caller's are still queued."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from mcp_audio.config import ServerSettings
from tests.helpers import body_of, make_wav, text_of
from tests.http_harness import add_token, http_server, mcp_client

pytestmark = pytest.mark.anyio
CALLS = 44  # more than anyio's default pool of 40 worker threads


async def test_one_callers_renders_wait_their_turn_and_leave_health_and_others_alone(
    settings: ServerSettings, rec_dir: Path
) -> None:
    settings = settings.model_copy(update={"allowed_dirs": str(rec_dir), "wait_s": 120})
    source = rec_dir / "long.wav"
    source.write_bytes(make_wav(15.0, rate=48000, channels=2))
    alice, bob = add_token(settings, "alice"), add_token(settings, "bob")
    join = {"audio_urls": [str(source), str(source)], "format": "flac"}
    health: list[tuple[float, int]] = []  # (seconds to answer, status)
    bob_done: dict[str, object] = {}
    with http_server(settings) as served:
        async with mcp_client(served.mcp, alice) as as_alice, mcp_client(served.mcp, bob) as as_bob:
            alice_results: list[dict[str, object]] = []
            all_started = anyio.Event()

            async def alice_joins() -> None:
                async with anyio.create_task_group() as calls:
                    for _ in range(CALLS):
                        calls.start_soon(lambda: _collect(as_alice.call_tool("audio_join", join), alice_results))
                    all_started.set()

            async def probe_health(until: anyio.Event) -> None:
                async with httpx.AsyncClient(trust_env=False, timeout=30) as http:
                    while not until.is_set():
                        began = time.monotonic()
                        answer = await http.get(served.url + "/healthz")
                        health.append((time.monotonic() - began, answer.status_code))
                        await anyio.sleep(0.2)

            async def bob_joins() -> None:
                await all_started.wait()
                while len(await _jobs(as_alice)) < CALLS:  # Alice's calls have all arrived: her renders fill her share
                    await anyio.sleep(0.1)
                result = await as_bob.call_tool("audio_join", {"audio_urls": [str(source)]})
                bob_done["result"] = result
                bob_done["alice_unfinished"] = len(await _jobs(as_alice, status="unfinished"))

            finished = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(probe_health, finished)
                tg.start_soon(bob_joins)
                await alice_joins()
                while "alice_unfinished" not in bob_done:
                    await anyio.sleep(0.1)
                finished.set()
    bob_result = bob_done["result"]
    assert not bob_result.is_error and body_of(bob_result)["status"] == "completed", text_of(bob_result)  # type: ignore[attr-defined]
    assert bob_done["alice_unfinished"], "Bob's render should finish while Alice's are still waiting"
    assert len(alice_results) == CALLS and all(body["status"] == "completed" for body in alice_results)
    slowest = max(seconds for seconds, _ in health)
    assert all(status == 200 for _, status in health), health
    assert slowest < 2.0, f"/healthz took {slowest:.2f} s under {CALLS} renders ({len(health)} checks)"


async def _collect(call: object, into: list[dict[str, object]]) -> None:
    result = await call  # type: ignore[misc]
    assert not result.is_error, text_of(result)
    into.append(body_of(result))


async def _jobs(client: Any, **filters: str) -> list[Any]:
    listed = await client.call_tool("list_jobs", {**filters, "limit": 200})
    jobs: list[Any] = body_of(listed)["jobs"]
    return jobs
