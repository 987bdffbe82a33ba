"""Slow clients cannot hold the server: a connection must send its request headers within
HEADER_TIMEOUT_S (a trickle of bytes does not extend it), a body the server reads (an upload, a
webhook) must keep coming (`paced`: `MCP_AUDIO_BODY_IDLE_S` at most between two pieces), idle
keep-alive connections close after KEEP_ALIVE_S, and the accept error a full file table causes is
logged once a minute, not per event."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = [
    "HEADER_TIMEOUT_S",
    "KEEP_ALIVE_S",
    "BodyStalled",
    "HeaderDeadline",
    "paced",
    "quiet_accept_errors",
    "uvicorn_options",
]

HEADER_TIMEOUT_S = 10.0
KEEP_ALIVE_S = 5
CONCURRENCY = 1000  # connections + tasks; past it uvicorn answers 503 at once


class BodyStalled(Exception):
    """A request body stopped coming: no piece of it within the idle time."""


async def paced(chunks: AsyncIterator[bytes], idle_s: float) -> AsyncIterator[bytes]:
    """`chunks`, each of which must come within `idle_s` of the one before (a slow link still
    sends; a client that stopped holds the connection no longer): BodyStalled otherwise."""
    import anyio

    iterator = aiter(chunks)
    while True:
        try:
            with anyio.fail_after(idle_s):
                chunk = await anext(iterator)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise BodyStalled(f"no part of the request body came for {idle_s:g} s (MCP_AUDIO_BODY_IDLE_S)") from None
        yield chunk


class HeaderDeadline(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's headers, counted from the
    connection (or the previous response), not from the last byte received."""

    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        waiting_after = self.cycle  # the cycle before the awaited request (None on a new connection)
        if self._deadline is not None:
            self._deadline.cancel()

        def late() -> None:
            if self.cycle is waiting_after and not self.transport.is_closing():
                self.transport.close()

        self._deadline = self.loop.call_later(HEADER_TIMEOUT_S, late)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(exc)


class _OncePerMinute(logging.Filter):
    """Lets one "accept() out of system resource" record through per minute."""

    def __init__(self) -> None:
        super().__init__()
        self._last = 0.0
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if "socket.accept() out of system resource" not in record.getMessage():
            return True
        now = time.monotonic()
        if now - self._last < 60.0:
            self._dropped += 1
            return False
        if self._dropped:
            record.msg = f"{record.msg} ({self._dropped} more in the last minute not logged)"
            record.args = None
        self._last, self._dropped = now, 0
        return True


def quiet_accept_errors() -> None:
    logging.getLogger("asyncio").addFilter(_OncePerMinute())


def uvicorn_options() -> dict[str, Any]:
    return {
        "http": HeaderDeadline,
        "timeout_keep_alive": KEEP_ALIVE_S,
        "limit_concurrency": CONCURRENCY,
        "h11_max_incomplete_event_size": 64 * 1024,  # request line and headers
    }
