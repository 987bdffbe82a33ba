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

log = logging.getLogger("mcp_audio.health")

HEALTH_PATH = "/healthz"


def health_route(settings: ServerSettings) -> Route:
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from mcp_audio.store import store_on_first_use

    store = store_on_first_use(settings)  # this process's own connection, opened on the first check
    backend = "postgresql" if settings.database_url else "sqlite"

    async def health(request: Request) -> JSONResponse:
        try:
            with anyio.fail_after(5):
                await (await store()).ping()
        except Exception as exc:
            log.warning("health check failed: %s: %s", type(exc).__name__, str(exc)[:200])
            return JSONResponse({"status": "unavailable", "database": backend, "error": type(exc).__name__}, 503)
        return JSONResponse({"status": "ok", "database": backend})

    return Route(HEALTH_PATH, health, methods=["GET", "HEAD"])
