"""A burst of calls to one upstream is sent at most SHORT_REQUESTS at a time per provider: httpcore
looks at every pooled connection on each request, so hundreds of requests at once cost a replica
O(n^2) CPU (bench/replicas.py --scale). The rest wait their turn, and each is still sent once."""

from __future__ import annotations

import anyio
import pytest

from mcp_audio.providers._http import SHORT_REQUESTS
from mcp_audio.providers.base import UpstreamRequest
from mcp_audio.providers.fal import FalProvider
from mcp_audio.sandbox.fal_queue import FakeFal
from tests.helpers import FAL_KEY

pytestmark = pytest.mark.anyio

BURST = SHORT_REQUESTS + 8
HELD_S = 0.6  # each submit is answered this late: the first SHORT_REQUESTS are in flight together


async def test_a_burst_of_submits_is_sent_at_most_short_requests_at_a_time(fake_fal: FakeFal) -> None:
    url = fake_fal.base_url
    assert url is not None
    fake_fal.inject("submit", 0, times=BURST, delay_s=HELD_S)  # status 0: late, then answered normally
    provider = FalProvider(api_key=FAL_KEY, queue_url=url, rest_url=url, cdn_url=url)
    handles: list[object] = []

    async def submit(i: int) -> None:
        handles.append(await provider.submit(UpstreamRequest(endpoint="fal-ai/lyria2", body={"prompt": f"take {i}"})))

    try:
        async with anyio.create_task_group() as tg:
            for i in range(BURST):
                tg.start_soon(submit, i)
    finally:
        await provider.aclose()
    arrivals = sorted(r.time for r in fake_fal.requests_of("submit"))
    assert len(arrivals) == len(handles) == BURST  # each sent once, none lost
    first_wave = [t for t in arrivals if t - arrivals[0] < HELD_S / 2]
    assert len(first_wave) == SHORT_REQUESTS, f"{len(first_wave)} submits in flight at once"
    assert arrivals[-1] - arrivals[0] >= HELD_S * 0.9  # the others waited for a slot
