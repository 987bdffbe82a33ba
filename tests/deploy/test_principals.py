"""One caller's work kept from another's: two token principals on a real HTTP server probe each
other's jobs, files and voices by every route; spend caps per caller and for the server are
running totals that survive restarts; rows from before principals belong to the local user."""

from __future__ import annotations

import json
import sqlite3
import uuid
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import ResourceLink, ResourceTemplateReference

from mcp_audio.config import ServerSettings
from mcp_audio.core.voices import SavedVoice
from mcp_audio.sandbox.fal_queue import FakeFal
from mcp_audio.store import MIGRATIONS, SqliteJobStore
from tests.conftest import on_backend
from tests.helpers import FAL_KEY, assert_secret_kept, server, text_of
from tests.http_harness import add_token, http_server, mcp_client, run_cli

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(settings: ServerSettings, database_url: str | None) -> ServerSettings:
    """Principals and spend are kept apart on both stores: SQLite and PostgreSQL."""
    return on_backend(settings, database_url)


CLONE = {"audio_url": "https://example.com/me.mp3", "reference_text": "This is my voice.", "name": "narrator"}


async def _answer(call: Any) -> str:
    """What the client sees of a tool call or resource read; a refusal starts with 'refused: '."""
    try:
        result = await call
    except MCPError as exc:
        return f"refused: {exc}"
    if hasattr(result, "is_error"):
        return ("refused: " if result.is_error else "") + text_of(result)
    return str(result.contents)


async def _probe(client: Client, job_id: str, file_name: str) -> dict[str, str]:
    """Every route by which a caller could learn of, or touch, job `job_id`."""
    listed = await client.call_tool("list_jobs", {})
    recent = (await client.read_resource("jobs://recent")).contents[0].text  # type: ignore[union-attr]
    completion = await client.complete(
        ResourceTemplateReference(uri="jobs://{job_id}"), {"name": "job_id", "value": ""}
    )
    return {
        "get_job": await _answer(client.call_tool("get_job", {"job_id": job_id})),
        "cancel_job": await _answer(client.call_tool("cancel_job", {"job_id": job_id})),
        "jobs://": await _answer(client.read_resource(f"jobs://{job_id}")),
        "files://": await _answer(client.read_resource(f"files://{job_id}/{file_name}")),
        "list_jobs": json.dumps(listed.structured_content),
        "jobs://recent": recent,
        "completion": json.dumps(completion.completion.values),
        "jobs:// input": await _answer(client.call_tool("audio_info", {"audio_url": f"jobs://{job_id}"})),
        "files:// input": await _answer(client.call_tool("audio_info", {"audio_url": f"files://{job_id}/{file_name}"})),
    }


async def test_two_principals_cannot_see_or_touch_each_others_work(settings: ServerSettings, fake_fal: FakeFal) -> None:
    alice, bob = add_token(settings, "alice"), add_token(settings, "bob")
    with http_server(settings, extra_env={"MCP_AUDIO_DOWNLOAD": "always"}) as served:
        async with mcp_client(served.mcp, alice) as as_alice:
            made = await as_alice.call_tool("elevenlabs_sound_effect", {"text": "thunder", "duration_seconds": 3})
            assert not made.is_error, text_of(made)
            job_id = made.structured_content["job_id"]  # type: ignore[index]
            [link] = [str(item.uri) for item in made.content if isinstance(item, ResourceLink)]
            file_name = link.rsplit("/", 1)[1]
            clone = await as_alice.call_tool("qwen3_tts_clone_voice", CLONE)
            assert not clone.is_error, text_of(clone)
            embedding = clone.structured_content["files"][0]["url"]  # type: ignore[index]
            own = await _probe(as_alice, job_id, file_name)

        # Bob, in the other protocol era, by every route: as if the job did not exist.
        async with mcp_client(served.mcp, bob, mode="legacy") as as_bob:
            seen = await _probe(as_bob, job_id, file_name)
            random_id = uuid.uuid4().hex
            unknown = await _probe(as_bob, random_id, file_name)
            cloned = (await as_bob.read_resource("voices://cloned")).contents[0].text  # type: ignore[union-attr]
            speak = await as_bob.call_tool("qwen3_tts", {"text": "Hi", "voice": "narrator"})
            theirs = await as_bob.call_tool("qwen3_tts_clone_voice", CLONE | {"audio_url": "https://example.com/b.mp3"})
            assert not theirs.is_error, text_of(theirs)

        async with mcp_client(served.mcp, alice) as as_alice:
            again = await as_alice.call_tool("qwen3_tts", {"text": "Hi", "voice": "narrator"})
            alice_voices = (await as_alice.read_resource("voices://cloned")).contents[0].text  # type: ignore[union-attr]

    for route in ("get_job", "cancel_job", "jobs://", "files://", "jobs:// input", "files:// input"):
        assert seen[route] == unknown[route].replace(random_id, job_id), route
        assert seen[route].startswith("refused: ") and not own[route].startswith("refused: "), route
    for route in ("list_jobs", "jobs://recent", "completion"):
        assert job_id not in seen[route], route
        assert job_id in own[route], route
    assert "No job with id" in seen["get_job"] and "No job with id" in seen["jobs://"]
    assert json.loads(cloned) == []
    assert speak.is_error and "or a voice saved by a qwen3-tts clone tool (none saved yet)." in text_of(speak)
    # Bob's "narrator" is his own: Alice's still speaks with her embedding.
    assert not again.is_error, text_of(again)
    assert [r.json for r in fake_fal.requests if r.kind == "submit"][-1][
        "speaker_voice_embedding_file_url"
    ] == embedding
    assert [voice["name"] for voice in json.loads(alice_voices)] == ["narrator"]
    assert_secret_kept(alice, settings, served.stderr)
    assert_secret_kept(bob, settings, served.stderr)
    assert FAL_KEY not in served.stderr


async def test_a_callers_spend_cap_is_its_own_and_survives_a_restart(settings: ServerSettings) -> None:
    carol, dave = add_token(settings, "carol", max_spend_usd=0.02), add_token(settings, "dave")
    text = {"text": "x" * 200}  # $0.018 each
    with http_server(settings) as served:
        async with mcp_client(served.mcp, carol) as as_carol:
            first = await as_carol.call_tool("qwen3_tts", text)
            second = await as_carol.call_tool("qwen3_tts", text)
        async with mcp_client(served.mcp, dave) as as_dave:
            for _ in range(3):  # dave has no cap; carol's spend is not his
                assert not (await as_dave.call_tool("qwen3_tts", text)).is_error
    assert not first.is_error, text_of(first)
    assert second.is_error
    assert "taking your spend to $0.0360, past your cap of $0.02 (spent so far: $0.0180)" in text_of(second)
    with http_server(settings) as served:
        async with mcp_client(served.mcp, carol) as as_carol:
            after_restart = await as_carol.call_tool("qwen3_tts", text)
    assert after_restart.is_error and "spent so far: $0.0180" in text_of(after_restart)
    listed = [json.loads(line) for line in run_cli(settings, "tokens", "list", "--json").stdout.splitlines()]
    assert [(row["name"], row["spent_usd"]) for row in listed] == [("carol", 0.018), ("dave", 0.054)]


async def test_the_server_spend_cap_counts_across_restarts(settings: ServerSettings) -> None:
    limited = settings.model_copy(update={"max_spend_usd": 0.1})
    async with Client(server(limited)) as client:
        assert not (await client.call_tool("qwen3_tts", {"text": "y" * 1000})).is_error  # $0.09
    async with Client(server(limited)) as client:
        refused = await client.call_tool("qwen3_tts", {"text": "z" * 200})
    assert refused.is_error
    assert "past MCP_AUDIO_MAX_SPEND_USD=$0.1 (spent so far: $0.0900)" in text_of(refused)


async def test_rows_from_before_principals_belong_to_the_local_user(settings: ServerSettings) -> None:
    if settings.database_url is not None:
        pytest.skip("SQLite's rows from before principals: a PostgreSQL database starts with principals")
    path = settings.database_path
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
    for name, migrate in MIGRATIONS[: [n for n, _ in MIGRATIONS].index("m005_options") + 1]:
        migrate(db)
        db.execute("INSERT INTO _migrations VALUES (?, 0)", (name,))
    db.execute(
        "INSERT INTO jobs (id, tool, provider, endpoint, payload, options, state, created_at, updated_at)"
        " VALUES ('old-job', 'qwen3_tts', 'fal', 'fal-ai/x', '{}', '{}', 'failed', 1, 1)"
    )
    db.execute("INSERT INTO voices VALUES ('oldvoice', 'qwen3-tts', 'fal', '{}', NULL, 1)")
    db.close()

    store = SqliteJobStore(path)
    await store.open()
    try:
        assert await store.get_job("old-job", "local") is not None and await store.get_job("old-job", "token:x") is None
        assert await store.find_voice("oldvoice") == SavedVoice(
            name="oldvoice", family="qwen3-tts", provider="fal", fields={}
        )
        assert await store.find_voice("oldvoice", "token:x") is None
    finally:
        await store.close()
    async with Client(server(settings)) as client:  # stdio's caller is the local user
        listed = await client.call_tool("list_jobs", {})
        voices = json.loads((await client.read_resource("voices://cloned")).contents[0].text)  # type: ignore[union-attr]
    assert [job["job_id"] for job in listed.structured_content["jobs"]] == ["old-job"]  # type: ignore[index]
    assert [voice["name"] for voice in voices] == ["oldvoice"]


async def test_the_rate_limit_is_per_caller_and_says_when_to_retry(settings: ServerSettings) -> None:
    alice, bob = add_token(settings, "alice"), add_token(settings, "bob")
    with http_server(settings, extra_env={"MCP_AUDIO_RATE_LIMIT_PER_MINUTE": "3"}) as served:
        async with mcp_client(served.mcp, alice) as as_alice:
            allowed = [await as_alice.call_tool("list_jobs", {}) for _ in range(3)]
            refused = await as_alice.call_tool("qwen3_tts", {"text": "one too many"})
            assert (await as_alice.list_tools()).tools  # only tool calls count
        async with mcp_client(served.mcp, bob) as as_bob:
            theirs = await as_bob.call_tool("list_jobs", {})
    assert not any(result.is_error for result in allowed)
    assert refused.is_error
    assert "this server allows 3 tool calls per minute per caller (MCP_AUDIO_RATE_LIMIT_PER_MINUTE)" in text_of(refused)
    assert "try again in" in text_of(refused)
    assert not theirs.is_error
