"""`GET /metrics`: this replica's Prometheus metrics (mcp_audio/metrics.py). It takes the same
bearer token as `/mcp` unless MCP_AUDIO_METRICS_PUBLIC=1 (serve_http decides which routes
need one); it answers whatever Host a scraper names the replica by, like the health check."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mcp_audio import metrics

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

METRICS_PATH = "/metrics"


def metrics_route() -> Route:
    """The route; counting starts now (prometheus_client is imported here, not at start-up)."""
    from starlette.responses import Response
    from starlette.routing import Route

    metrics.enable()

    async def scrape(request: Request) -> Response:
        body, content_type = await metrics.render()
        return Response(body, media_type=content_type)

    return Route(METRICS_PATH, scrape, methods=["GET"])
