"""MCP_AUDIO_CONFIRM_ABOVE_USD: a call estimated above it asks the user by form elicitation (the
message states the price): an elicitation/create request in the 2025 era, a multi round-trip
InputRequiredResult in the 2026 era (the SDK client answers both through its callback).
Declined or dismissed, nothing is submitted and the result says it was not started; accepted,
it runs once. A client without elicitation is not asked."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client
from mcp_types import ElicitRequestFormParams, ElicitRequestParams, ElicitResult, ErrorData

from mcp_audio.config import ServerSettings
from mcp_audio.sandbox.fal_queue import FakeFal
from tests.helpers import body_of, server, text_of

pytestmark = pytest.mark.anyio

DESIGN = "minimax_design_voice"  # $3 per request: above the default $0.25
DESIGN_ARGS = {"prompt": "warm elderly narrator", "preview_text": "Hello."}


class User:
    """The client's elicitation callback: records each question and gives one answer."""

    def __init__(self, action: str, content: dict[str, Any] | None = None) -> None:
        self.action, self.content = action, content
        self.asked: list[ElicitRequestFormParams] = []

    async def __call__(self, context: Any, params: ElicitRequestParams) -> ElicitResult | ErrorData:
        assert isinstance(params, ElicitRequestFormParams)
        self.asked.append(params)
        return ElicitResult(action=self.action, content=self.content if self.action == "accept" else None)  # type: ignore[arg-type]


def submits(fake_fal: FakeFal) -> int:
    return len(fake_fal.requests_of("submit"))


ERAS = pytest.mark.parametrize("mode", ["legacy", "auto"], ids=["2025-era", "2026-era"])


@ERAS
async def test_accepted_price_runs_once(settings: ServerSettings, fake_fal: FakeFal, mode: str) -> None:
    user = User("accept", {"start": True})
    async with Client(server(settings), mode=mode, elicitation_callback=user) as client:
        result = await client.call_tool(DESIGN, DESIGN_ARGS)
    assert body_of(result)["status"] == "completed", text_of(result)
    [question] = user.asked
    assert "$3.00" in question.message and DESIGN in question.message
    assert question.requested_schema["properties"]["start"]["type"] == "boolean"
    assert submits(fake_fal) == 1


@ERAS
@pytest.mark.parametrize(("action", "content"), [("decline", None), ("cancel", None), ("accept", {"start": False})])
async def test_declined_price_submits_nothing(
    settings: ServerSettings, fake_fal: FakeFal, action: str, content: dict[str, Any] | None, mode: str
) -> None:
    user = User(action, content)
    async with Client(server(settings), mode=mode, elicitation_callback=user) as client:
        result = await client.call_tool(DESIGN, DESIGN_ARGS)
        listed = body_of(await client.call_tool("list_jobs", {}))
    assert result.is_error
    assert text_of(result).endswith(
        f"{DESIGN} was not started: the user did not accept its estimated cost of $3.00. Nothing was sent upstream "
        "and nothing was charged; ask the user before calling it again."
    )
    assert len(user.asked) == 1
    assert submits(fake_fal) == 0 and listed["jobs"] == []


@ERAS
async def test_a_call_at_or_below_the_threshold_is_not_asked(
    settings: ServerSettings, fake_fal: FakeFal, mode: str
) -> None:
    user = User("decline")
    async with Client(server(settings), mode=mode, elicitation_callback=user) as client:
        result = await client.call_tool("qwen3_tts", {"text": "Hello."})  # $0.00054
    assert body_of(result)["status"] == "completed", text_of(result)
    assert user.asked == [] and submits(fake_fal) == 1


async def test_the_threshold_is_a_setting_and_small_prices_keep_their_digits(
    settings: ServerSettings, fake_fal: FakeFal
) -> None:
    user = User("decline")
    lowered = settings.model_copy(update={"confirm_above_usd": 0.0001})
    async with Client(server(lowered), mode="legacy", elicitation_callback=user) as client:
        result = await client.call_tool("qwen3_tts", {"text": "Hello."})
    assert "$0.0005" in user.asked[0].message and "MCP_AUDIO_CONFIRM_ABOVE_USD=0.0001" in user.asked[0].message
    assert "estimated cost of $0.0005" in text_of(result) and submits(fake_fal) == 0


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_client_without_elicitation_is_not_asked(
    settings: ServerSettings, fake_fal: FakeFal, mode: str
) -> None:
    async with Client(server(settings), mode=mode) as client:
        result = await client.call_tool(DESIGN, DESIGN_ARGS)
    assert body_of(result)["status"] == "completed", text_of(result)
    assert submits(fake_fal) == 1


async def test_the_spend_cap_still_refuses_without_elicitation(settings: ServerSettings, fake_fal: FakeFal) -> None:
    capped = settings.model_copy(update={"max_spend_usd": 1.0})
    async with Client(server(capped), mode="legacy") as client:
        result = await client.call_tool(DESIGN, DESIGN_ARGS)
    assert result.is_error and "MCP_AUDIO_MAX_SPEND_USD" in text_of(result)
    assert submits(fake_fal) == 0


async def test_a_declined_price_is_not_charged_against_the_cap(settings: ServerSettings, fake_fal: FakeFal) -> None:
    capped = settings.model_copy(update={"max_spend_usd": 3.5})
    async with Client(server(capped), mode="legacy", elicitation_callback=User("decline")) as client:
        await client.call_tool(DESIGN, DESIGN_ARGS)
    async with Client(server(capped), mode="legacy", elicitation_callback=User("accept", {"start": True})) as client:
        result = await client.call_tool(DESIGN, DESIGN_ARGS)
    assert body_of(result)["status"] == "completed", text_of(result)
