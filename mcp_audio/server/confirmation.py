"""MCP_AUDIO_CONFIRM_ABOVE_USD: before a call estimated above it starts, the user is asked by
form elicitation, with the price in dollars. In the 2025 era the question is an
elicitation/create request during the call; in the 2026 era, where servers send no requests,
the call answers InputRequiredResult with the question and the client retries it with the
answer (multi round-trip). Clients without form elicitation are not asked.
"""

from __future__ import annotations

import logging
from typing import Any

from mcp.server.elicitation import render_elicitation_schema
from mcp.server.mcpserver import Context
from mcp_types import ElicitRequest, ElicitRequestFormParams, ElicitResult, InputRequiredResult
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, Field

from mcp_audio.core.pricing import Confirm, dollars

log = logging.getLogger("mcp_audio.confirmation")

KEY = "confirm_cost"  # the input request's key in the 2026-era round trip


class _CostApproval(BaseModel):
    start: bool = Field(True, description="Start it at this price")


class NeedsApproval(Exception):
    """2026 era: the call must first return the question (`question()`), then be retried."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def question(self) -> InputRequiredResult:
        schema = render_elicitation_schema(_CostApproval)
        params = ElicitRequestFormParams(message=self.message, requested_schema=schema)
        return InputRequiredResult(input_requests={KEY: ElicitRequest(params=params)})


def cost_confirmation(ctx: Context, above_usd: float | None) -> Confirm | None:
    """Asks before a call estimated above `above_usd` dollars starts; None where the client
    cannot be asked (no form elicitation): the spend caps alone apply then."""
    session = ctx.request_context.session
    capabilities = session.client_capabilities
    elicitation = capabilities.elicitation if capabilities else None
    if above_usd is None or elicitation is None:
        return None
    if elicitation.form is None and elicitation.url is not None:  # a client of URL elicitation only
        return None
    modern = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
    if not modern and not session.can_send_request:
        return None

    async def confirm(tool: str, cost: float) -> bool:
        if cost <= above_usd + 1e-9:
            return True
        message = (
            f"{tool} will cost about {dollars(cost)} (estimated from the provider's published price; "
            f"MCP_AUDIO_CONFIRM_ABOVE_USD={above_usd:g}). Start it?"
        )
        if modern:
            answer = (ctx.input_responses or {}).get(KEY)
            if answer is None:
                raise NeedsApproval(message)
            return isinstance(answer, ElicitResult) and answer.action == "accept" and _starts(answer.content)
        try:
            result = await ctx.elicit(message, _CostApproval)
        except Exception as exc:  # a client that fails the request: not an approval
            log.info("cost confirmation for %s failed (%s); not started", tool, exc)
            return False
        return result.action == "accept" and result.data.start

    return confirm


def _starts(content: dict[str, Any] | None) -> bool:
    return (content or {}).get("start", True) is True
