"""Spend counts what was sent and accepted: a submit fal refuses (422) is not charged against
the cap, an 'unknown' outcome stays charged; a paid tool with no published price is refused
while a cap applies unless the operator allows it (MCP_AUDIO_CAP_UNPRICED=allow); local tools
are free and never refused (a real MCP client, the loopback fake of fal)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client

from mcp_audio.config import Settings
from mcp_audio.sandbox.fal_queue import FakeFal
from tests.helpers import body_of, make_wav, server, text_of

pytestmark = pytest.mark.anyio
PRICED = ("stable_audio_music", {"prompt": "calm"})  # $0.20 a request
UNPRICED = ("lyria2_music", {"prompt": "calm"})  # fal publishes no price for it


async def test_a_submit_fal_refuses_is_not_charged(settings: Settings, fake_fal: FakeFal) -> None:
    capped = settings.model_copy(update={"max_spend_usd": 0.2})  # room for exactly one call
    fake_fal.refuse_next_submit(422, [{"loc": ["body", "prompt"], "msg": "not allowed", "type": "value_error"}])
    async with Client(server(capped)) as client:
        refused = await client.call_tool(*PRICED)
        accepted = await client.call_tool(*PRICED)  # the refused one took none of the cap
        over = await client.call_tool(*PRICED)
    assert refused.is_error and "not allowed" in text_of(refused), text_of(refused)
    assert body_of(refused)["status"] == "failed"
    assert not accepted.is_error, text_of(accepted)
    assert over.is_error and "past MCP_AUDIO_MAX_SPEND_USD=$0.2 (spent so far: $0.2000)" in text_of(over)


async def test_an_unknown_outcome_stays_charged(settings: Settings, fake_fal: FakeFal) -> None:
    capped = settings.model_copy(update={"max_spend_usd": 0.2})
    fake_fal.fail_submit_after_creating(502)  # fal created the job, then the gateway failed
    async with Client(server(capped)) as client:
        first = await client.call_tool(*PRICED)
        second = await client.call_tool(*PRICED)
    assert body_of(first)["status"] in ("running", "queued", "completed"), text_of(first)  # followed, not refused
    assert second.is_error and "(spent so far: $0.2000)" in text_of(second)


async def test_unpriced_paid_tools_are_refused_under_a_cap_unless_allowed(
    settings: Settings, fake_fal: FakeFal, rec_dir: Path
) -> None:
    (rec_dir / "a.wav").write_bytes(make_wav(1.0))
    capped = settings.model_copy(update={"max_spend_usd": 5.0, "allowed_dirs": str(rec_dir)})
    async with Client(server(capped)) as client:
        refused = await client.call_tool(*UNPRICED)
        local = await client.call_tool("audio_info", {"audio_url": str(rec_dir / "a.wav")})
    async with Client(server(capped.model_copy(update={"cap_unpriced": "allow"}))) as client:
        allowed = await client.call_tool(*UNPRICED)
    async with Client(server(settings)) as client:  # no cap: nothing to protect
        uncapped = await client.call_tool(*UNPRICED)
    message = text_of(refused)
    assert refused.is_error and "lyria2_music has no published price" in message, message
    assert "MCP_AUDIO_CAP_UNPRICED=allow" in message and "MCP_AUDIO_MAX_SPEND_USD" in message
    assert not local.is_error, text_of(local)
    assert not allowed.is_error and not uncapped.is_error, (text_of(allowed), text_of(uncapped))
    assert [r.kind for r in fake_fal.requests].count("submit") == 2  # the refused call sent nothing
