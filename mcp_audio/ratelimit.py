"""MCP_AUDIO_RATE_LIMIT_PER_MINUTE: at most N tool calls per caller in any 60 s, as SDK middleware.

A refused call is a tool error the agent reads (how long to wait), not a transport failure.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp_types import CallToolResult, TextContent

from mcp_audio.auth import current_principal

WINDOW_S = 60.0


class RateLimit:
    """A sliding window per principal: the times of its calls in the last minute."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._calls: dict[str, deque[float]] = {}

    def retry_after(self, principal: str) -> float | None:
        """None (and the call is counted) when `principal` may call now; else seconds to wait."""
        now = self._clock()
        calls = self._calls.setdefault(principal, deque())
        while calls and calls[0] <= now - WINDOW_S:
            calls.popleft()
        if len(calls) >= self.per_minute:
            return calls[0] + WINDOW_S - now
        calls.append(now)
        return None

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "tools/call":
            wait = self.retry_after(current_principal())
            if wait is not None:
                text = (
                    f"Rate limit: this server allows {self.per_minute} tool calls per minute per caller "
                    f"(MCP_AUDIO_RATE_LIMIT_PER_MINUTE); try again in {math.ceil(wait)} s."
                )
                return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)
        return await call_next(ctx)
