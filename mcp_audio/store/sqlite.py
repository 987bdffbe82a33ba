"""The SQLite backend (the default): one file in the data dir, ordered named migrations.

Processes sharing the data dir share the file; waiters on another process's job poll its row
(a local read).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from mcp_audio.core.job import LOCAL_PRINCIPAL
from mcp_audio.private import private_dir
from mcp_audio.store.base import JobStore, Statements

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
def m010_replicas(db: sqlite3.Connection) -> None:
    # A lease per process, not per job: its heartbeat row; a job names its owner (lease_owner).
    db.execute(
        "CREATE TABLE replicas (owner TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL,"
        " expires REAL NOT NULL)"
    )
    db.execute("CREATE INDEX jobs_owner ON jobs(lease_owner)")


@migration
def m011_health(db: sqlite3.Connection) -> None:
    # One row per process, rewritten by each health check: proof that the store takes writes.
    db.execute("CREATE TABLE health (replica TEXT PRIMARY KEY, checked_at REAL NOT NULL)")


@migration
def m012_idempotency(db: sqlite3.Connection) -> None:
    # A caller's idempotency key names one job for a day: a call sent again gets that job back.
    db.execute(
        "CREATE TABLE idempotency (principal TEXT NOT NULL, key TEXT NOT NULL, request_hash TEXT NOT NULL,"
        " job_id TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (principal, key))"
    )
    db.execute("CREATE INDEX idempotency_created ON idempotency(created_at)")


@migration
def m013_traceparent(db: sqlite3.Connection) -> None:
    # The W3C trace of the call that started a job: its follower logs it and sends it upstream.
    db.execute("ALTER TABLE jobs ADD COLUMN traceparent TEXT")


class SqliteJobStore(JobStore):
    """The store in one SQLite file (WAL: readers do not block the writer). Every statement runs
    on a worker thread, one at a time (a capacity limiter of 1): a busy or slow disk, or another
    process's write lock, holds that thread, never the event loop. A write transaction holds the
    store's lock across its statements, so no other call of this store lands inside it."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._path = path
        self._db: sqlite3.Connection | None = None
        self._limiter = anyio.CapacityLimiter(1)
        self._lock = anyio.Lock()

    async def open(self) -> None:
        await self._run(self._connect)

    def _connect(self) -> None:
        private_dir(self._path.parent)
        # Owner-only from the start: SQLite gives its -wal and -shm files the database file's mode.
        # Only a file that is not there yet: closing any descriptor of a file this process already
        # has open in SQLite (the job store, when /healthz opens its own) drops every POSIX lock
        # SQLite holds on it, and the next reader in another process would take itself for the last
        # user, checkpoint and delete the WAL this process still writes into.
        with contextlib.suppress(FileExistsError):
            os.close(os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        # check_same_thread=False: the limiter's worker threads take turns on the one connection.
        db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None, timeout=10)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        self._db = db
        self._migrate(db)

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            with anyio.CancelScope(shield=True):
                async with self._lock:
                    await self._run(db.close)

    async def _run(self, call: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(call, limiter=self._limiter)

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the store is not open (await store.open())")
        return self._db

    async def _execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        async with self._lock:
            return await _Statements(self).execute(sql, args)

    async def _fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Mapping[str, Any]]:
        async with self._lock:
            return await _Statements(self).fetch(sql, args)

    @asynccontextmanager
    async def _write_transaction(self) -> AsyncIterator[Statements]:
        tx = _Statements(self)
        async with self._lock:
            await tx.execute("BEGIN IMMEDIATE")  # takes the write lock now: other processes wait
            try:
                yield tx
            except BaseException:
                with anyio.CancelScope(shield=True):  # a cancelled caller still ends its transaction
                    await tx.execute("ROLLBACK")
                raise
            with anyio.CancelScope(shield=True):
                await tx.execute("COMMIT")

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
        done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
        for name, fn in MIGRATIONS:
            if name in done:
                continue
            db.execute("BEGIN IMMEDIATE")
            try:
                fn(db)
                db.execute("INSERT INTO _migrations VALUES (?, ?)", (name, time.time()))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise


T = TypeVar("T")


class _Statements:
    """Statements on the store's connection, on its worker thread (the caller holds the lock)."""

    def __init__(self, store: SqliteJobStore) -> None:
        self._store = store

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        db = self._store._connection()
        return await self._store._run(lambda: db.execute(sql, args).rowcount)

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Mapping[str, Any]]:
        db = self._store._connection()
        return await self._store._run(lambda: db.execute(sql, args).fetchall())
