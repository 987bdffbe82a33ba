"""The one factory of httpx clients: the trust store built once, and the pool limits every client shares."""

from __future__ import annotations

import ssl
from functools import cache
from typing import Any

import httpx

__all__ = ["CONNECTION_LIMITS", "http_client", "ssl_context"]


@cache
def ssl_context() -> ssl.SSLContext:
    """The trust store (certifi, or SSL_CERT_FILE), built once: each build costs tens of milliseconds."""
    return httpx.create_ssl_context()


# Short requests share one pool with no cap (a cap makes them queue, and httpcore then scans the
# queue on every event: measured slower); long-held responses (status streams) get their own
# clients (`HttpProvider._long_held`), so the shared pool stays small in practice.
# An idle connection is dropped after 4 s, before a server with the common 5 s keep-alive
# (uvicorn's, many proxies') closes it: a submit sent on a connection the server is closing at
# that instant gets no answer, and would have to end "unknown".
CONNECTION_LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=100, keepalive_expiry=4.0)


def http_client(**kwargs: Any) -> httpx.AsyncClient:
    """An httpx client on the shared trust store; every client this server makes comes from here."""
    kwargs.setdefault("limits", CONNECTION_LIMITS)
    return httpx.AsyncClient(verify=ssl_context(), **kwargs)
