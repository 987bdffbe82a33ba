"""The SQLite backend (the default): one file in the data dir, ordered named migrations.

Processes sharing the data dir share the file; waiters on another process's job poll its row
(a local read).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mcp_audio.core.job import LOCAL_PRINCIPAL
from mcp_audio.store.base import JobStore

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m001_jobs(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE jobs (
            id TEXT PRIMARY KEY, tool TEXT NOT NULL, provider TEXT NOT NULL, endpoint TEXT NOT NULL,
            payload TEXT NOT NULL, local TEXT NOT NULL, state TEXT NOT NULL,
            upstream_id TEXT, handle TEXT NOT NULL DEFAULT '{}', queue_position INTEGER,
            logs TEXT NOT NULL DEFAULT '[]', result TEXT, error TEXT,
            created_at REAL NOT NULL, updated_at REAL NOT NULL, finished_at REAL)"""
    )
    db.execute("CREATE INDEX jobs_state ON jobs(state)")
    db.execute("CREATE INDEX jobs_created ON jobs(created_at)")


@migration
def m002_voices(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE voices (
            name TEXT PRIMARY KEY, family TEXT NOT NULL, provider TEXT NOT NULL,
            fields TEXT NOT NULL, job_id TEXT, created_at REAL NOT NULL)"""
    )


@migration
def m003_job_cost(db: sqlite3.Connection) -> None:
    db.execute("ALTER TABLE jobs ADD COLUMN estimated_cost_usd REAL")


@migration
def m004_uploads(db: sqlite3.Connection) -> None:
    db.execute(
        "CREATE TABLE uploads (sha256 TEXT NOT NULL, provider TEXT NOT NULL, url TEXT NOT NULL,"
        " created_at REAL NOT NULL, PRIMARY KEY (sha256, provider))"
    )


@migration
def m005_options(db: sqlite3.Connection) -> None:
    # `local` held the server-only arguments; the name read as "local files".
    db.execute("ALTER TABLE jobs RENAME COLUMN local TO options")


@migration
def m006_leases(db: sqlite3.Connection) -> None:
    # One follower per job across processes sharing the data dir: the owner renews its lease.
    db.execute("ALTER TABLE jobs ADD COLUMN lease_owner TEXT")
    db.execute("ALTER TABLE jobs ADD COLUMN lease_expires REAL")


@migration
def m007_principals(db: sqlite3.Connection) -> None:
    # Each caller (HTTP token or OAuth user) has its own jobs, saved voices and spend; rows from
    # before belong to the local user.
    db.execute(f"ALTER TABLE jobs ADD COLUMN principal TEXT NOT NULL DEFAULT '{LOCAL_PRINCIPAL}'")
    db.execute("CREATE INDEX jobs_principal ON jobs(principal, created_at)")
    db.execute(
        """CREATE TABLE voices_by_principal (
            principal TEXT NOT NULL, name TEXT NOT NULL, family TEXT NOT NULL, provider TEXT NOT NULL,
            fields TEXT NOT NULL, job_id TEXT, created_at REAL NOT NULL, PRIMARY KEY (principal, name))"""
    )
    db.execute(
        "INSERT INTO voices_by_principal SELECT ?, name, family, provider, fields, job_id, created_at FROM voices",
        (LOCAL_PRINCIPAL,),
    )
    db.execute("DROP TABLE voices")
    db.execute("ALTER TABLE voices_by_principal RENAME TO voices")
    db.execute("CREATE TABLE spend (principal TEXT PRIMARY KEY, spent_usd REAL NOT NULL)")


@migration
def m008_webhooks(db: sqlite3.Connection) -> None:
    # An upstream's webhook, received by any process, waits here for the job's follower.
    db.execute("ALTER TABLE jobs ADD COLUMN webhook TEXT")
    db.execute("CREATE INDEX jobs_upstream ON jobs(provider, upstream_id)")


@migration
def m009_calls(db: sqlite3.Connection) -> None:
    # The tool calls of the last minute, per principal: the rate limit every process shares.
    db.execute("CREATE TABLE calls (principal TEXT NOT NULL, at REAL NOT NULL)")
    db.execute("CREATE INDEX calls_at ON calls(at)")
    db.execute("CREATE INDEX calls_principal ON calls(principal, at)")


@migration
def m010_health(db: sqlite3.Connection) -> None:
    # One row per process, rewritten by each health check: proof that the store takes writes.
    db.execute("CREATE TABLE health (replica TEXT PRIMARY KEY, checked_at REAL NOT NULL)")


class SqliteJobStore(JobStore):
    """The store in one SQLite file (WAL: readers do not block the writer)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        path.parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread=False: the CLI and anyio worker threads may share the store.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()

    def close(self) -> None:
        self._db.close()

    def _execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        with self._lock:
            return self._db.execute(sql, args).rowcount

    def _fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Mapping[str, Any]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    @contextmanager
    def _write_transaction(self) -> Iterator[None]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")  # takes the write lock now: other processes wait
            try:
                yield
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _migrate(self) -> None:
        with self._lock:
            self._db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
            done = {row[0] for row in self._db.execute("SELECT name FROM _migrations")}
            for name, fn in MIGRATIONS:
                if name in done:
                    continue
                with self._write_transaction():
                    fn(self._db)
                    self._db.execute("INSERT INTO _migrations VALUES (?, ?)", (name, time.time()))
