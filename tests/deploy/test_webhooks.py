"""fal webhooks: with MCP_AUDIO_PUBLIC_URL set, submits carry `fal_webhook`, and a delivery
signed by fal's key finishes the job with no status stream held, on SQLite and PostgreSQL and
across replicas; a missing, foreign, tampered or stale signature gets 401 and changes nothing;
a webhook that never comes is made up for by a slow status check."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mcp import Client

from mcp_audio.config import ServerSettings
from mcp_audio.deploy.webhooks import FAL_PATH, _b64url
from mcp_audio.sandbox.fal_queue import JWKS_PATH, FakeFal
from mcp_audio.store import open_store
from tests.conftest import on_backend
from tests.helpers import body_of, server, text_of
from tests.http_harness import Served, call_ok, free_port, http_server, mcp_client

pytestmark = pytest.mark.anyio


@pytest.fixture
def hooked(settings: ServerSettings, database_url: str | None, fake_fal: FakeFal) -> ServerSettings:
    """Settings whose store is each backend in turn, outputs saved, fal's keys at the fake."""
    return on_backend(settings, database_url).model_copy(update={"download": "always"})


@contextmanager
def replica(
    settings: ServerSettings, fake: FakeFal, *, port: int | None = None, public: str | None = None, cold: bool = False
) -> Iterator[Served]:
    """A `serve --http` process whose submits name `public` (by default its own URL) as fal's webhook."""
    port = port or free_port()
    env = {
        "MCP_AUDIO_PUBLIC_URL": public or f"http://127.0.0.1:{port}",
        "MCP_AUDIO_FAL_JWKS_URL": f"{fake.base_url}{JWKS_PATH}",
    }
    with http_server(settings, extra_env=env, port=port, cold=cold) as served:
        yield served


def kinds(fake: FakeFal, request_id: str) -> list[str]:
    return [r.kind for r in fake.requests_for(request_id)]


async def row(settings: ServerSettings, job_id: str) -> Any:
    store = await open_store(settings)
    try:
        return await store.get_job(job_id)
    finally:
        await store.close()


async def test_a_signed_webhook_finishes_the_job_without_a_status_stream(
    hooked: ServerSettings, fake_fal: FakeFal
) -> None:
    fake_fal.script("fal-ai/lyria2", run_s=0.5)
    with replica(hooked, fake_fal) as served:
        done = await call_ok(served, "lyria2_music", {"prompt": "calm"})
    [submit] = fake_fal.requests_of("submit")
    assert submit.query["fal_webhook"] == f"{served.url}{FAL_PATH}"
    # Saved here (named by its files:// resource: a remote caller is not shown the server's paths).
    assert done["status"] == "completed" and done["files"][0]["resource"].startswith("files://"), done
    assert fake_fal.webhooks == [(submit.request_id, 200)]
    # Submit and the saved file; no stream, status or result request: the webhook carried the output.
    assert kinds(fake_fal, submit.request_id or "") == ["submit", "file"]


async def test_forged_stale_tampered_or_unsigned_deliveries_get_401_and_change_nothing(
    hooked: ServerSettings, fake_fal: FakeFal
) -> None:
    fake_fal.script("fal-ai/lyria2", run_s=0.3)
    fake_fal.send_webhooks = False  # this test delivers them itself
    quick = hooked.model_copy(update={"wait_s": 0.1})
    with replica(quick, fake_fal) as served:
        started = await call_ok(served, "lyria2_music", {"prompt": "calm"})
        [submit] = fake_fal.requests_of("submit")
        request_id = submit.request_id or ""
        while fake_fal.jobs[request_id].state != "COMPLETED":
            time.sleep(0.05)
        body = fake_fal.webhook_body(request_id)
        url = served.url + FAL_PATH
        good = fake_fal.signed_headers(request_id, body)
        attempts = {
            "unsigned": (body, {"Content-Type": "application/json"}),
            "foreign key": (body, fake_fal.signed_headers(request_id, body, key=Ed25519PrivateKey.generate())),
            "tampered": (body.replace(b'"OK"', b'"ERROR"'), good),
            # A minute past fal's 300 s rule: the seconds this test takes cannot bring either back within it.
            "stale": (body, fake_fal.signed_headers(request_id, body, timestamp=int(time.time()) - 360)),
            "from the future": (body, fake_fal.signed_headers(request_id, body, timestamp=int(time.time()) + 360)),
            "another request's": (body, fake_fal.signed_headers("other-request", body)),
            "bad hex": (body, good | {"X-Fal-Webhook-Signature": "zz"}),
        }
        async with httpx.AsyncClient(trust_env=False) as http:
            for name, (content, headers) in attempts.items():
                answer = await http.post(url, content=content, headers=headers)
                assert answer.status_code == 401, (name, answer.text)
                assert answer.json()["error"].startswith("webhook refused: "), name
            untouched = await row(quick, started["job_id"])
            assert untouched.state in ("queued", "running") and untouched.webhook is None
            assert (await http.post(url, content=body, headers=good)).json() == {"job": "recorded"}
            done = await call_ok(served, "get_job", {"job_id": started["job_id"], "wait_s": 10})
            finished = await row(quick, started["job_id"])
            again = await http.post(url, content=body, headers=fake_fal.signed_headers(request_id, body))
    assert done["status"] == "completed", done
    assert again.status_code == 200 and again.json() == {"job": "seen"}  # a repeat changes nothing
    assert (await row(quick, started["job_id"])).updated_at == finished.updated_at
    assert kinds(fake_fal, request_id).count("file") == 1 and "result" not in kinds(fake_fal, request_id)


async def test_a_failed_job_s_webhook_fails_it_with_fal_s_message(hooked: ServerSettings, fake_fal: FakeFal) -> None:
    fake_fal.script("fal-ai/lyria2", run_s=0.3, error=(422, {"detail": "prompt was flagged"}))
    with replica(hooked, fake_fal) as served:
        async with mcp_client(served.mcp) as client:
            result = await client.call_tool("lyria2_music", {"prompt": "calm"})
    assert result.is_error and body_of(result)["status"] == "failed"
    assert "fal job failed: prompt was flagged" in text_of(result)
    [submit] = fake_fal.requests_of("submit")
    assert kinds(fake_fal, submit.request_id or "") == ["submit"]


async def test_a_webhook_received_by_another_replica_finishes_the_job_where_it_is_followed(
    settings: ServerSettings, pg_url: str, fake_fal: FakeFal
) -> None:
    shared = on_backend(settings, pg_url).model_copy(update={"download": "always"})
    fake_fal.script("fal-ai/lyria2", run_s=0.5)
    receiver_port = free_port()
    with (
        replica(shared, fake_fal, port=receiver_port),
        replica(shared, fake_fal, public=f"http://127.0.0.1:{receiver_port}") as follower,
    ):
        started = time.monotonic()
        done = await call_ok(follower, "lyria2_music", {"prompt": "calm"})
        took = time.monotonic() - started
    [submit] = fake_fal.requests_of("submit")
    assert submit.query["fal_webhook"] == f"http://127.0.0.1:{receiver_port}{FAL_PATH}"
    assert done["status"] == "completed" and fake_fal.webhooks == [(submit.request_id, 200)]
    assert kinds(fake_fal, submit.request_id or "") == ["submit", "file"]
    assert took < 4.0, took  # woken by the database's push, not the 60 s status check


async def test_a_job_whose_webhook_never_arrives_is_finished_by_the_slow_status_check(
    settings: ServerSettings, fake_fal: FakeFal
) -> None:
    fake_fal.script("fal-ai/lyria2", run_s=0.2)
    fake_fal.send_webhooks = False
    hooked = settings.model_copy(update={"public_url": "http://127.0.0.1:9/never"})
    async with Client(server(hooked)) as client:
        result = await client.call_tool("lyria2_music", {"prompt": "calm"})
    assert body_of(result)["status"] == "completed", text_of(result)
    [submit] = fake_fal.requests_of("submit")
    seen = kinds(fake_fal, submit.request_id or "")
    assert seen[:2] == ["submit", "status"] and seen.count("result") == 1, seen  # no stream held meanwhile
    assert fake_fal.webhooks == []


def test_the_key_set_s_keys_read_with_or_without_padding(fake_fal: FakeFal) -> None:
    unpadded, padded = (entry["x"] for entry in fake_fal.jwks()["keys"])
    assert not unpadded.endswith("=") and padded.endswith("=")
    assert len(_b64url(unpadded)) == len(_b64url(padded)) == 32
    assert _b64url(padded) == _b64url(padded.rstrip("="))
