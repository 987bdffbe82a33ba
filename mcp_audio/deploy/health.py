"""`GET /healthz` for load balancers: 200 while this replica serves and reaches its job
database, 503 (with the reason) when it cannot. No token needed and no data in the answer."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from mcp_audio.config import ServerSettings
    from mcp_audio.store import JobStore

log = logging.getLogger("mcp_audio.health")

HEALTH_PATH = "/healthz"


def health_route(settings: ServerSettings) -> Route:
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    stores: list[JobStore] = []  # this process's own connection, opened on the first check
    backend = "postgresql" if settings.database_url else "sqlite"

    def check() -> None:
        if not stores:
            from mcp_audio.store import open_store

            stores.append(open_store(settings))
        stores[0].ping()

    async def health(request: Request) -> JSONResponse:
        try:
            with anyio.fail_after(5):
                await anyio.to_thread.run_sync(check, abandon_on_cancel=True)
        except Exception as exc:
            log.warning("health check failed: %s: %s", type(exc).__name__, str(exc)[:200])
            return JSONResponse({"status": "unavailable", "database": backend, "error": type(exc).__name__}, 503)
        return JSONResponse({"status": "ok", "database": backend})

    return Route(HEALTH_PATH, health, methods=["GET", "HEAD"])
