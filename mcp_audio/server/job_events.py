"""Resource subscriptions to jobs: a client subscribed to `jobs://{id}` gets
`notifications/resources/updated` each time that job changes (queued, running, a progress
line, its end), then reads the resource again.

- 2026-era clients subscribe on a `subscriptions/listen` stream. The SDK advertises
  `resources.subscribe` to them as soon as it serves that method; this bus, the server's
  SubscriptionBus, is what makes it true. List-change events (toolsets.py) go to every stream.
- 2025-era sessions send `resources/subscribe` and `resources/unsubscribe` (not in stateless
  HTTP mode, where a session cannot be sent anything after its request).

Either way a job's changes reach only its own caller, so another caller's job id stays as if it
did not exist.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from typing import Any

import anyio.lowlevel
from anyio.abc import TaskGroup
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.server.subscriptions import ResourceUpdated, ServerEvent
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, EmptyResult, SubscribeRequestParams, UnsubscribeRequestParams

from mcp_audio.server.principal import current_principal
from mcp_audio.store import JobStore

log = logging.getLogger("mcp_audio.subscriptions")

Listener = Callable[[ServerEvent], None]
MAX_PER_SESSION = 1000  # subscriptions a 2025-era session may hold


class JobEventBus:
    """The SDK's in-memory fan-out, with each listen stream's caller kept beside it."""

    def __init__(self) -> None:
        self._listeners: dict[object, tuple[str, Listener]] = {}
        # 2025 era: each connection's caller and subscribed URIs (gone with the connection).
        self._connections: weakref.WeakKeyDictionary[Any, tuple[str, set[str]]] = weakref.WeakKeyDictionary()
        self._group: TaskGroup | None = None  # the server's, to send to 2025-era sessions

    def attach(self, group: TaskGroup | None) -> None:
        self._group = group

    def install_legacy(self, server: Server[Any]) -> None:
        """Serve 2025-era `resources/subscribe` (which makes the capability say so)."""
        server.add_request_handler("resources/subscribe", SubscribeRequestParams, self._subscribe)
        server.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, self._unsubscribe)

    async def _subscribe(self, ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams) -> EmptyResult:
        _, uris = self._connections.setdefault(_connection(ctx), (current_principal(), set()))
        if len(uris) >= MAX_PER_SESSION and str(params.uri) not in uris:
            raise MCPError(INVALID_PARAMS, f"a session may hold at most {MAX_PER_SESSION} resource subscriptions")
        uris.add(str(params.uri))
        return EmptyResult()

    async def _unsubscribe(self, ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams) -> EmptyResult:
        if (connection := _connection(ctx)) in self._connections:
            self._connections[connection][1].discard(str(params.uri))
        return EmptyResult()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Called by the SDK's listen handler, in the request of the stream's caller."""
        token = object()
        self._listeners[token] = (current_principal(), listener)

        def unsubscribe() -> None:
            self._listeners.pop(token, None)

        return unsubscribe

    async def publish(self, event: ServerEvent) -> None:
        """An event for every stream (the SDK filters each by what the stream asked for)."""
        self._deliver(event, principal=None)
        await anyio.lowlevel.checkpoint()

    def job_changed(self, store: JobStore, job_id: str) -> None:
        """A job's row changed (here, or in another replica): tell its caller's streams. The row
        is read only when some stream is open."""
        uri = f"jobs://{job_id}"
        connections = [connection for connection, (_, uris) in list(self._connections.items()) if uri in uris]
        if (not self._listeners and not connections) or self._group is None:
            return
        self._group.start_soon(self._announce, store, job_id, connections)

    async def _announce(self, store: JobStore, job_id: str, connections: list[Any]) -> None:
        uri = f"jobs://{job_id}"
        job = await store.get_job(job_id)
        if job is None:
            return
        self._deliver(ResourceUpdated(uri=uri), principal=job.principal)
        for connection in connections:
            if self._connections.get(connection, ("",))[0] == job.principal and self._group is not None:
                # The SDK's send never raises: a closed connection drops it (and is collected).
                self._group.start_soon(connection.send_resource_updated, uri)

    def _deliver(self, event: ServerEvent, principal: str | None) -> None:
        for owner, listener in list(self._listeners.values()):
            if principal is not None and owner != principal:
                continue
            try:
                listener(event)  # the SDK's: filters by the stream's subscriptions, never blocks
            except Exception:  # one broken stream must not keep the others from hearing
                log.exception("a subscription stream failed to take an event")


def _connection(ctx: ServerRequestContext[Any, Any]) -> Any:
    """The client connection a request came on: its ServerSession is made per request, and the
    SDK offers no public accessor for the connection behind it yet."""
    return ctx.session._connection
