"""The principal a request acts as: its jobs, voices, files and spend are its own."""

from __future__ import annotations

from mcp.server.auth.middleware.auth_context import get_access_token

from mcp_audio.core.job import LOCAL_PRINCIPAL

__all__ = ["current_principal"]


def current_principal() -> str:
    """The principal of the request being handled (set by the SDK's auth middleware from the
    verified token's claims); stdio and HTTP without authentication act as the one local user."""
    token = get_access_token()
    if token is None or not token.claims:
        return LOCAL_PRINCIPAL
    return str(token.claims["principal"])
