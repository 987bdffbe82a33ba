"""Jobs, voices, uploads and spend, on SQLite (default) or PostgreSQL (`MCP_AUDIO_DATABASE_URL`).

`open_store(settings)` picks the backend; both implement `JobStore` and pass the same tests.
psycopg is imported only when a PostgreSQL URL is configured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
]


def open_store(settings: ServerSettings) -> JobStore:
    """The configured store, migrated: PostgreSQL when `database_url` is set, else the data dir's SQLite file."""
    if settings.database_url:
        from mcp_audio.store.postgres import PostgresJobStore

        return PostgresJobStore(settings.database_url.get_secret_value())
    return SqliteJobStore(settings.database_path)
