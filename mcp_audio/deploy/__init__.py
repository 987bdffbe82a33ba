"""Streamable HTTP deployment: who may call and from where (tokens, OAuth, host and origin
checks), uploads, fal webhooks, the health check, and the uvicorn server.

Entry points: `app.plan_exposure`, `app.serve_http`.
"""

__all__ = ["app", "auth", "health", "oauth", "webhooks"]
