"""Jobs, voices, uploads and spend, on SQLite (default) or PostgreSQL (`MCP_AUDIO_DATABASE_URL`).

`await open_store(settings)` picks the backend and opens it; both implement `JobStore` (async:
nothing waits on the database on the event loop) and pass the same tests.
psycopg is imported only when a PostgreSQL URL is configured.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio

from mcp_audio.core.job import FINISHED, LOCAL_PRINCIPAL, LOG_TAIL, Job, JobState, iso_time
from mcp_audio.store.base import JobStore, is_outage
from mcp_audio.store.sqlite import MIGRATIONS, SqliteJobStore

if TYPE_CHECKING:
    from mcp_audio.config import ServerSettings

__all__ = [
    "FINISHED",
    "LOCAL_PRINCIPAL",
    "LOG_TAIL",
    "MIGRATIONS",
    "Job",
    "JobState",
    "JobStore",
    "SqliteJobStore",
    "is_outage",
    "iso_time",
    "open_store",
    "store_on_first_use",
]


async def open_store(settings: ServerSettings) -> JobStore:
    """The configured store, open and migrated: PostgreSQL when `database_url` is set (a pool of
    `database_pool` connections), else the data dir's SQLite file. `await store.close()` after."""
    store: JobStore
    if settings.database_url:
        from mcp_audio.store.postgres import PostgresJobStore

        store = PostgresJobStore(settings.database_url.get_secret_value(), pool_size=settings.database_pool)
    else:
        store = SqliteJobStore(settings.database_path)
    await store.open()
    return store


def store_on_first_use(settings: ServerSettings) -> Callable[[], Awaitable[JobStore]]:
    """A store of its own for a route that may never be called (the health check, webhooks):
    opened on the first call, once even when calls come together; it lives as long as the process."""
    opened: list[JobStore] = []
    lock = anyio.Lock()

    async def get() -> JobStore:
        async with lock:
            if not opened:
                opened.append(await open_store(settings))
        return opened[0]

    return get
