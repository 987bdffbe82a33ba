"""`GET /metrics` of a real `serve --http` process, in the Prometheus text format: jobs by
upstream and state, upstream latency and errors by kind, spend, the event loop's lag and the
leases held; behind the /mcp token unless MCP_AUDIO_METRICS_PUBLIC=1."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mcp_audio.config import ServerSettings
from mcp_audio.sandbox.fal_queue import FakeFal
from tests.helpers import body_of, completed
from tests.http_harness import Served, add_token, http_server, mcp_client

pytestmark = pytest.mark.anyio


def scrape(served: Served, token: str | None = None, host: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if host:
        headers["Host"] = host
    return httpx.get(served.url + "/metrics", headers=headers, timeout=10, trust_env=False)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample, by name and sorted labels (the parser refuses anything not Prometheus text)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_show_jobs_upstream_requests_spend_lag_and_leases(
    settings: ServerSettings, fake_fal: FakeFal
) -> None:
    fake_fal.inject("result", 503)  # one error, retried
    fake_fal.script("fal-ai/lyria2", queue_s=30)  # stays queued
    token = add_token(settings, "team")
    with http_server(settings.model_copy(update={"wait_s": 0.3})) as served:
        refused = scrape(served)
        async with mcp_client(served.mcp, token) as client:
            spoken = body_of(await client.call_tool("qwen3_tts", {"text": "Hello there."}))
            await completed(client, "get_job", {"job_id": spoken["job_id"], "wait_s": 30})
            waiting = body_of(await client.call_tool("lyria2_music", {"prompt": "calm"}))
            answer = scrape(served, token)
            await client.call_tool("cancel_job", {"job_id": waiting["job_id"]})
    assert refused.status_code == 401
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    seen = samples(answer.text)
    fal = (("upstream", "fal"),)
    assert seen[("mcp_audio_jobs_finished_total", (("state", "completed"), *fal))] == 1
    assert seen[("mcp_audio_jobs", (("state", "queued"), *fal))] == 1
    assert seen[("mcp_audio_leases_held", ())] == 1  # the queued job, followed here
    assert seen[("mcp_audio_upstream_request_seconds_count", fal)] >= 4  # 2 submits, a stream, results
    assert seen[("mcp_audio_upstream_errors_total", (("kind", "http_503"), *fal))] == 1
    assert seen[("mcp_audio_spend_usd_total", fal)] == pytest.approx(0.09 * len("Hello there.") / 1000)
    assert seen[("mcp_audio_event_loop_lag_seconds_count", ())] > 0


async def test_metrics_may_be_public_and_answer_any_host(settings: ServerSettings) -> None:
    add_token(settings, "team")
    with http_server(settings, extra_env={"MCP_AUDIO_METRICS_PUBLIC": "1"}) as served:
        answer = scrape(served, host="10.1.2.3:9100")  # a scraper names the replica by its address
        mcp = httpx.post(served.mcp, json={}, timeout=10, trust_env=False)
    assert answer.status_code == 200 and "mcp_audio_event_loop_lag_seconds" in answer.text
    assert mcp.status_code == 401  # /mcp still takes the token
