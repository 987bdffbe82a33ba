"""Resource subscriptions to jobs for 2026-era clients: a `subscriptions/listen` stream that
asks for `jobs://{id}` gets `notifications/resources/updated` each time that job changes
(queued, running, a progress line, its end), then reads the resource again.

The SDK advertises `resources.subscribe` to these clients as soon as it serves
`subscriptions/listen`; this bus is what makes that true. It is the server's SubscriptionBus:
list-change events (toolsets.py) go to every stream as before, and a job's changes only to
streams of the job's own caller, so another caller's job id stays as if it did not exist.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio.lowlevel
from mcp.server.subscriptions import ResourceUpdated, ServerEvent

from mcp_audio.auth import current_principal
from mcp_audio.store import JobStore

log = logging.getLogger("mcp_audio.subscriptions")

Listener = Callable[[ServerEvent], None]


class JobEventBus:
    """The SDK's in-memory fan-out, with each listen stream's caller kept beside it."""

    def __init__(self) -> None:
        self._listeners: dict[object, tuple[str, Listener]] = {}

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
        if not self._listeners:
            return
        job = store.get_job(job_id)
        if job is not None:
            self._deliver(ResourceUpdated(uri=f"jobs://{job_id}"), principal=job.principal)

    def _deliver(self, event: ServerEvent, principal: str | None) -> None:
        for owner, listener in list(self._listeners.values()):
            if principal is not None and owner != principal:
                continue
            try:
                listener(event)  # the SDK's: filters by the stream's subscriptions, never blocks
            except Exception:  # one broken stream must not keep the others from hearing
                log.exception("a subscription stream failed to take an event")
