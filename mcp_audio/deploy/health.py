"""`GET /healthz` for load balancers: 200 while this replica serves and its job database takes
writes, 503 (with the reason) when it cannot, and 200 again once it can, without a restart.
No token needed and no data in the answer.

The check never waits behind the server's other work: it writes through a store connection of
its own (SQLite's own worker thread, or PostgreSQL's async pool; renders run on a limiter of
their own), and gives up after `TIMEOUT_S`. A write that succeeded less than `FRESH_S` ago
answers for the database, and checks that arrive together share one write: however often
balancers and monitors ask, each replica writes at most about once a second (a failed write is
never reused: the next check tries again).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from mcp_audio.config import ServerSettings

log = logging.getLogger("mcp_audio.health")

HEALTH_PATH = "/healthz"
TIMEOUT_S = 3.0  # under the usual 5 s of a load balancer's check: a hung database answers 503, not nothing
FRESH_S = 1.0  # a successful write this recent still vouches for the database


def health_route(settings: ServerSettings, serving: Callable[[], str | None] | None = None) -> Route:
    """`serving()`: why /mcp cannot serve now, or None (the server's runtime answers it)."""
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from mcp_audio.store import store_on_first_use

    store = store_on_first_use(settings)  # this process's own connection, opened on the first check
    backend = "postgresql" if settings.database_url else "sqlite"
    replica = f"{socket.gethostname()}:{os.getpid()}"
    probing = anyio.Lock()  # checks that arrive during a write wait for it instead of writing again
    written_at = -FRESH_S  # time.monotonic() of the last successful write

    async def writable() -> None:
        nonlocal written_at
        async with probing:
            if time.monotonic() - written_at < FRESH_S:
                return
            await (await store()).check_writable(replica)
            written_at = time.monotonic()

    def unavailable(reason: str) -> JSONResponse:
        log.warning("health check failed: %s", reason[:200])
        return JSONResponse({"status": "unavailable", "database": backend, "error": reason[:200]}, 503)

    async def health(request: Request) -> JSONResponse:
        if serving is not None and (problem := serving()) is not None:
            return unavailable(problem)
        try:
            with anyio.fail_after(TIMEOUT_S):
                await writable()
        except Exception as exc:
            return unavailable(type(exc).__name__)
        return JSONResponse({"status": "ok", "database": backend})

    return Route(HEALTH_PATH, health, methods=["GET", "HEAD"])
