"""MCP_AUDIO_RATE_LIMIT_PER_MINUTE: at most N tool calls per caller in any 60 s, as SDK middleware,
counted in the job store (shared by processes and replicas).

A refused call is a tool error the agent reads (how long to wait), not a transport failure.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp_types import CallToolResult, TextContent

from mcp_audio.server.principal import current_principal
from mcp_audio.store import JobStore

WINDOW_S = 60.0


class RateLimit:
    """A sliding window per principal, kept in the job store so that every process on one data
    dir, and every replica on one database, counts the same calls."""

    def __init__(self, per_minute: int, store: Callable[[], JobStore], clock: Callable[[], float] = time.time) -> None:
        self.per_minute = per_minute
        self._store = store  # opened by the server's lifespan, after this is built
        self._clock = clock  # wall clock: shared by processes (and hosts, whose clocks are in sync)

    async def retry_after(self, principal: str) -> float | None:
        """None (and the call is counted) when `principal` may call now; else seconds to wait."""
        return await self._store().count_call(principal, self.per_minute, WINDOW_S, self._clock())

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "tools/call":
            wait = await self.retry_after(current_principal())
            if wait is not None:
                text = (
                    f"Rate limit: this server allows {self.per_minute} tool calls per minute per caller "
                    f"(MCP_AUDIO_RATE_LIMIT_PER_MINUTE); try again in {max(1, math.ceil(wait))} s."
                )
                return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)
        return await call_next(ctx)
