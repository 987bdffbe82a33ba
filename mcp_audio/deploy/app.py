"""Streamable HTTP mode, safe to deploy: who may call (bearer tokens, OAuth JWTs), from where
(Host and Origin checks against DNS rebinding), and the OAuth Protected Resource Metadata.

Layers, outermost first: Host/Origin guard (421/403, on every path) -> the SDK's bearer
authentication (fills `scope["user"]`, which also binds each MCP session to its principal)
-> the SDK's auth context (our tools read the principal from it) -> the gate that answers 401
on `/mcp` whenever any token exists or OAuth is on -> the SDK's streamable HTTP app. The gate
asks the token file each time, so a token added or revoked applies without a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import anyio.to_thread
from mcp.server.auth.handlers.metadata import ProtectedResourceMetadataHandler
from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, BearerAuthBackend, RequireAuthMiddleware
from mcp.server.auth.routes import build_resource_metadata_url, cors_middleware
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from mcp.shared.auth import ProtectedResourceMetadata
from pydantic import AnyHttpUrl
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_audio.config import ServerSettings
from mcp_audio.core.errors import ConfigError, McpAudioError
from mcp_audio.deploy.auth import Verifier
from mcp_audio.deploy.health import HEALTH_PATH
from mcp_audio.deploy.metrics import METRICS_PATH
from mcp_audio.deploy.oauth import OAuthVerifier, check_issuer, is_loopback
from mcp_audio.deploy.slow_clients import BodyStalled, paced
from mcp_audio.files.uploads import NoRoom, NotMedia, TooLarge, Uploads, open_uploads
from mcp_audio.server.principal import current_principal
from mcp_audio.store.tokens import TokenFile, open_tokens

log = logging.getLogger("mcp_audio.http")

MCP_PATH = "/mcp"
PRM_PATH = "/.well-known/oauth-protected-resource"
UPLOAD_PATH = "/uploads"
FILES_PATH = "/files/"
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})
LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]"]
LOOPBACK_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]


@dataclass(frozen=True)
class Exposure:
    """What HTTP mode serves, decided (and refused) before anything listens."""

    public_url: str  # without /mcp
    security: TransportSecuritySettings
    tokens: TokenFile
    oauth: OAuthVerifier | None

    @property
    def resource_url(self) -> str:
        return self.public_url + MCP_PATH


def plan_exposure(settings: ServerSettings, host: str, port: int, *, no_auth: bool = False) -> Exposure:
    """Raises ConfigError naming what to set when this bind would be unsafe or cannot work."""
    loopback = is_loopback(host)
    shown_host = f"[{host}]" if ":" in host else host
    public_url = (settings.public_url or f"http://{shown_host}:{port}").rstrip("/")
    tokens = open_tokens(settings)  # the data dir's file, or the shared database's table
    oauth = None
    if settings.oauth_issuer is not None:
        check_issuer(settings.oauth_issuer, host)
        if settings.public_url is None and host in WILDCARD_BINDS:
            raise ConfigError(
                f"with MCP_AUDIO_OAUTH_ISSUER on {host or 'every address'}, set MCP_AUDIO_PUBLIC_URL: the URL "
                "clients use names the protected resource (and the audience tokens must carry)"
            )
        oauth = OAuthVerifier(settings.oauth_issuer, settings.oauth_audience or public_url + MCP_PATH)
    if not loopback and not no_auth and oauth is None and not tokens.any():
        raise ConfigError(
            f"refusing to serve {host} without authentication: anyone who reaches the port could spend your "
            "upstream credit. Create a token with `mcp-audio tokens add NAME`, or set MCP_AUDIO_OAUTH_ISSUER, "
            "or pass --no-auth if something in front of the server authenticates callers"
        )
    hosts, origins = _allowed(settings, host, public_url, loopback)
    if hosts == LOOPBACK_HOSTS and not loopback:
        log.warning(
            "serving %s, but only loopback Host names are accepted: set MCP_AUDIO_PUBLIC_URL (the URL clients use) "
            "or MCP_AUDIO_ALLOWED_HOSTS",
            host or "every address",
        )
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )
    return Exposure(public_url=public_url, security=security, tokens=tokens, oauth=oauth)


def _allowed(settings: ServerSettings, host: str, public_url: str, loopback: bool) -> tuple[list[str], list[str]]:
    # Loopback names are no rebinding risk on any bind (the attack needs a name the attacker
    # controls); loopback origins are web pages on this machine, trusted only on a loopback bind.
    hosts = list(LOOPBACK_HOSTS)
    origins = list(LOOPBACK_ORIGINS) if loopback else []
    if settings.public_url is not None or host not in WILDCARD_BINDS:
        parsed = urlparse(public_url)
        hosts.append(parsed.netloc)
        origins.append(f"{parsed.scheme}://{parsed.netloc}")
    for entry in _entries(settings.allowed_hosts):
        if "/" in entry or (entry.count(":") > 1 and not entry.startswith("[")):
            raise ConfigError(f"MCP_AUDIO_ALLOWED_HOSTS entry {entry!r} is not `name` or `name:port`")
        hosts.extend([entry] if _has_port(entry) else [entry, entry + ":*"])
        # A page served from a name the operator serves is theirs: its Origin is accepted too.
        for scheme in ("http", "https"):
            origins.extend(
                [f"{scheme}://{entry}"] if _has_port(entry) else [f"{scheme}://{entry}", f"{scheme}://{entry}:*"]
            )
    for entry in _entries(settings.allowed_origins):
        parsed = urlparse(entry)
        if parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.path or parsed.query:
            raise ConfigError(f"MCP_AUDIO_ALLOWED_ORIGINS entry {entry!r} is not `scheme://name[:port]`")
        origins.append(entry)
    return hosts, origins


def _entries(value: str | None) -> list[str]:
    return [part.strip().lower() for part in (value or "").split(",") if part.strip()]


def _has_port(entry: str) -> bool:
    tail = entry.rsplit("]", 1)[-1]
    return ":" in tail and tail.rsplit(":", 1)[-1].isdigit()


# --- the ASGI layers ------------------------------------------------------------------------


class HostGuard:
    """DNS-rebinding protection on every path (the SDK checks only inside /mcp, after auth)."""

    def __init__(self, app: ASGIApp, security: TransportSecuritySettings) -> None:
        self.app = app
        self._check = TransportSecurityMiddleware(security)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A load balancer's health check and a metrics scraper name the replica by its own address;
        # neither answer holds a caller's data (and /metrics takes a token unless made public).
        if scope["type"] == "http" and scope["path"] not in (HEALTH_PATH, METRICS_PATH):
            request = Request(scope, receive)
            refusal = await self._check.validate_request(request)
            if refusal is not None:
                which = "Host" if refusal.status_code == 421 else "Origin"
                value = request.headers.get(which.lower(), "")[:200]
                allowed = "MCP_AUDIO_ALLOWED_HOSTS" if which == "Host" else "MCP_AUDIO_ALLOWED_ORIGINS"
                text = f"{which} {value!r} is not served here (the server's {allowed} or MCP_AUDIO_PUBLIC_URL)\n"
                await PlainTextResponse(text, status_code=refusal.status_code)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class AuthGate:
    """401 on protected paths while authentication is on and the request carries no valid token."""

    def __init__(self, app: ASGIApp, exposure: Exposure, paths: tuple[str, ...]) -> None:
        self.app = app
        self._exposure = exposure
        self._paths = paths
        metadata = build_resource_metadata_url(AnyHttpUrl(exposure.resource_url)) if exposure.oauth else None
        self._refuse = RequireAuthMiddleware(app, [], metadata)

    async def required(self) -> bool:
        if self._exposure.oauth is not None:
            return True
        return await anyio.to_thread.run_sync(self._exposure.tokens.any)  # a file's stat, or a table's read

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"].rstrip("/") if scope["type"] == "http" else ""
        # A route with parameters (`/files/{job}/{name}`) is protected by its fixed start.
        protected = bool(path) and any(path == p or (p.endswith("/") and path.startswith(p)) for p in self._paths)
        if protected and not isinstance(scope.get("user"), AuthenticatedUser) and await self.required():
            await self._refuse(scope, receive, send)
            return
        await self.app(scope, receive, send)


def http_app(
    server: Any,
    exposure: Exposure,
    *,
    extra_routes: list[Route] | None = None,
    open_routes: list[Route] | None = None,
    stateless: bool = False,
) -> ASGIApp:
    """The deployable ASGI app around an MCPServer built for transport="http". `extra_routes`
    need a caller's token like /mcp; `open_routes` need none (webhooks check their signature, the
    health check tells nothing). `stateless`: 2025-era sessions are not kept either, so any
    replica answers any request (2026-era requests are stateless anyway)."""
    app = server.streamable_http_app(
        streamable_http_path=MCP_PATH, transport_security=exposure.security, host="deployed", stateless_http=stateless
    )
    if exposure.oauth is not None:
        app.router.routes.extend(_metadata_routes(exposure.resource_url, exposure.oauth.issuer))
    app.router.routes.extend(extra_routes or [])
    app.router.routes.extend(open_routes or [])
    protected = (route.path.split("{", 1)[0] for route in extra_routes or [])
    gated: ASGIApp = AuthGate(app, exposure, (MCP_PATH, *protected))
    gated = AuthContextMiddleware(gated)
    verifier = Verifier(exposure.tokens, exposure.oauth)
    gated = AuthenticationMiddleware(gated, backend=BearerAuthBackend(verifier))
    return HostGuard(gated, exposure.security)


def _metadata_routes(resource: str, issuer: str) -> list[Route]:
    """RFC 9728 metadata at the path-inserted URL (/.well-known/oauth-protected-resource/mcp), and
    at the bare one for clients that look there first. Strings, not AnyHttpUrl: the issuer must
    come out exactly as configured (no added trailing slash), since clients compare it exactly."""
    metadata = ProtectedResourceMetadata.model_validate(
        {"resource": resource, "authorization_servers": [issuer], "resource_name": "mcp-audio"}
    )
    endpoint = cors_middleware(ProtectedResourceMetadataHandler(metadata).handle, ["GET", "OPTIONS"])
    path = urlparse(str(build_resource_metadata_url(AnyHttpUrl(resource)))).path
    return [Route(where, endpoint=endpoint, methods=["GET", "OPTIONS"]) for where in (path, PRM_PATH)]


def upload_route(settings: ServerSettings, uploads: Uploads | None = None) -> Route:
    """`POST /uploads`: the body (a recording) kept for the caller, answered with its `upload://` reference."""
    uploads = uploads or open_uploads(settings)
    too_large = f"the file is over {settings.max_upload_mb:g} MB (MCP_AUDIO_MAX_UPLOAD_MB)"

    async def upload(request: Request) -> JSONResponse:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > uploads.max_bytes:
            return JSONResponse({"error": too_large}, status_code=413)
        try:
            answer = await uploads.receive(current_principal(), paced(request.stream(), settings.body_idle_s))
        except BodyStalled as exc:
            return JSONResponse({"error": str(exc)}, status_code=408)
        except TooLarge:
            return JSONResponse({"error": too_large}, status_code=413)
        except NoRoom as exc:  # the caller's quota, or a full disk: nothing was kept
            return JSONResponse({"error": str(exc)}, status_code=507)
        except McpAudioError as exc:  # the output bucket could not take it
            return JSONResponse({"error": str(exc)}, status_code=503)
        except NotMedia:
            return JSONResponse(
                {"error": "the body is not an audio or video file this server reads (WAV, MP3, FLAC, OGG, M4A...)"},
                status_code=415,
            )
        return JSONResponse(answer, status_code=201)

    return Route(UPLOAD_PATH, upload, methods=["POST"])


def files_route(settings: ServerSettings) -> Route:
    """`GET /files/{job_id}/{name}`: a saved output of the caller's own job, streamed from disk with
    range requests (what a files:// resource read cannot do: it returns the file whole); one in
    the output bucket is a redirect to a short-lived presigned URL. Another's job is a 404."""
    import anyio
    from starlette.responses import FileResponse, RedirectResponse, Response

    from mcp_audio.files.s3 import SCHEME, presigned
    from mcp_audio.store import store_on_first_use

    store = store_on_first_use(settings)  # this process's own connection, opened on the first request

    async def find(job_id: str, name: str, principal: str) -> str | None:
        job = await (await store()).get_job(job_id, principal)
        files = job.result.files if job and job.result else []
        return next((f.path for f in files if f.file_name == name and f.path), None)

    async def download(request: Request) -> Response:
        job_id, name = request.path_params["job_id"], request.path_params["name"]
        path = await find(job_id, name, current_principal())
        if path is not None and path.startswith(SCHEME):
            return RedirectResponse(await anyio.to_thread.run_sync(presigned, path, settings), status_code=302)
        if path is None or not Path(path).is_file():
            return JSONResponse({"error": f"no saved file {name[:100]!r} for job {job_id[:64]!r}"}, status_code=404)
        return FileResponse(path, filename=name)

    return Route(FILES_PATH + "{job_id}/{name}", download, methods=["GET", "HEAD"])


def serve_http(
    settings: ServerSettings,
    server: Any,
    host: str,
    port: int,
    *,
    no_auth: bool,
    serving: Callable[[], str | None] | None = None,
) -> None:
    """Serve until stopped; `serving()` says why /mcp cannot serve now, or None (for /healthz)."""
    import uvicorn

    from mcp_audio.deploy.health import health_route
    from mcp_audio.deploy.metrics import metrics_route
    from mcp_audio.deploy.slow_clients import quiet_accept_errors, uvicorn_options
    from mcp_audio.deploy.webhooks import fal_webhook_route

    exposure = plan_exposure(settings, host, port, no_auth=no_auth)
    # fal's webhooks, when submits announce them (MCP_AUDIO_PUBLIC_URL): signed by fal, not by a token.
    webhooks = [fal_webhook_route(settings)] if settings.public_url else []
    uploads = open_uploads(settings)
    scrape = metrics_route()  # before the engine opens: it then feeds the metrics
    app = http_app(
        server,
        exposure,
        extra_routes=[
            upload_route(settings, uploads),
            files_route(settings),
            *([] if settings.metrics_public else [scrape]),
        ],
        open_routes=[health_route(settings, serving), *webhooks, *([scrape] if settings.metrics_public else [])],
        stateless=settings.http_stateless,
    )
    quiet_accept_errors()
    # JSON logs: uvicorn's own loggers pass their lines to ours instead of printing text.
    logging_config: dict[str, Any] = {"log_config": None} if settings.log_format == "json" else {}
    uvicorn.run(
        WhileServing(app, uploads.sweep_forever),
        host=host,
        port=port,
        log_level="info",
        **uvicorn_options(),
        **logging_config,
    )


class WhileServing:
    """Runs `task` (the sweep of expired uploads) for as long as the server runs: the ASGI
    lifespan call lasts from start-up to shutdown."""

    def __init__(self, app: ASGIApp, task: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.app = app
        self._task = task

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        import anyio

        async with anyio.create_task_group() as group:
            group.start_soon(self._task)
            try:
                await self.app(scope, receive, send)
            finally:
                group.cancel_scope.cancel()
