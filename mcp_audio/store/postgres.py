"""The PostgreSQL backend (`MCP_AUDIO_DATABASE_URL=postgresql://...`): one database shared by
several server replicas.

Migrations run under an advisory lock, so replicas starting together apply each once. Every
change to a job row is announced with NOTIFY; `listen` (a task for the life of the server)
wakes the waiters of that job, so get_job on a replica that does not follow a job returns as
soon as another finishes it; a slow poll remains as the fallback if the push is lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import anyio
import psycopg
from psycopg.rows import dict_row

from mcp_audio.store.base import JobStore

log = logging.getLogger("mcp_audio.store")

CHANNEL = "mcp_audio_jobs"
# Keys of pg_advisory_lock / pg_advisory_xact_lock (any 64-bit number, fixed for this app).
MIGRATION_LOCK = 0x6D63_7061_7564_0001
SPEND_LOCK = 0x6D63_7061_7564_0002

Migration = Callable[[psycopg.Connection[Any]], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def pg001_schema(db: psycopg.Connection[Any]) -> None:
    # The schema SQLite reached with m001..m007, at once (PostgreSQL has no older rows).
    # Times are epoch seconds in DOUBLE PRECISION (REAL is 4 bytes here); JSON is kept as text.
    db.execute(
        """CREATE TABLE jobs (
            id TEXT PRIMARY KEY, tool TEXT NOT NULL, provider TEXT NOT NULL, endpoint TEXT NOT NULL,
            payload TEXT NOT NULL, options TEXT NOT NULL, state TEXT NOT NULL,
            upstream_id TEXT, handle TEXT NOT NULL DEFAULT '{}', queue_position INTEGER,
            logs TEXT NOT NULL DEFAULT '[]', result TEXT, error TEXT,
            created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
            finished_at DOUBLE PRECISION, estimated_cost_usd DOUBLE PRECISION,
            lease_owner TEXT, lease_expires DOUBLE PRECISION, principal TEXT NOT NULL DEFAULT 'local')"""
    )
    db.execute("CREATE INDEX jobs_state ON jobs(state)")
    db.execute("CREATE INDEX jobs_created ON jobs(created_at)")
    db.execute("CREATE INDEX jobs_principal ON jobs(principal, created_at)")
    db.execute(
        """CREATE TABLE voices (
            principal TEXT NOT NULL, name TEXT NOT NULL, family TEXT NOT NULL, provider TEXT NOT NULL,
            fields TEXT NOT NULL, job_id TEXT, created_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (principal, name))"""
    )
    db.execute(
        "CREATE TABLE uploads (sha256 TEXT NOT NULL, provider TEXT NOT NULL, url TEXT NOT NULL,"
        " created_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (sha256, provider))"
    )
    db.execute("CREATE TABLE spend (principal TEXT PRIMARY KEY, spent_usd DOUBLE PRECISION NOT NULL)")


@migration
def pg002_webhooks(db: psycopg.Connection[Any]) -> None:
    # An upstream's webhook, received by any replica, waits here for the job's follower.
    db.execute("ALTER TABLE jobs ADD COLUMN webhook TEXT")
    db.execute("CREATE INDEX jobs_upstream ON jobs(provider, upstream_id)")


@migration
def pg003_tokens(db: psycopg.Connection[Any]) -> None:
    # HTTP bearer tokens (hashed), shared by every replica (SQLite deployments keep tokens.json).
    db.execute(
        "CREATE TABLE tokens (name TEXT PRIMARY KEY, sha256 TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL,"
        " max_spend_usd DOUBLE PRECISION)"
    )


@migration
def pg004_calls(db: psycopg.Connection[Any]) -> None:
    # The tool calls of the last minute, per principal: the rate limit every replica shares.
    db.execute("CREATE TABLE calls (principal TEXT NOT NULL, at DOUBLE PRECISION NOT NULL)")
    db.execute("CREATE INDEX calls_at ON calls(at)")
    db.execute("CREATE INDEX calls_principal ON calls(principal, at)")


@migration
def pg005_health(db: psycopg.Connection[Any]) -> None:
    # One row per replica, rewritten by each health check: proof that the database takes writes.
    db.execute("CREATE TABLE health (replica TEXT PRIMARY KEY, checked_at DOUBLE PRECISION NOT NULL)")


def _marks(sql: str) -> str:
    # The shared SQL uses `?`; psycopg takes `%s` (the shared SQL has no `%` or `?` of its own).
    return sql.replace("?", "%s")


class PostgresJobStore(JobStore):
    poll_s = 5.0  # NOTIFY wakes waiters; this only bounds a lost notification

    def __init__(self, url: str) -> None:
        super().__init__()
        self._url = url
        self._db = self._connect()
        self._waiters: dict[str, set[anyio.Event]] = {}
        self._in_transaction = False
        self._migrate()

    def _connect(self) -> psycopg.Connection[dict[str, Any]]:
        return psycopg.connect(self._url, autocommit=True, row_factory=dict_row, connect_timeout=10)

    def close(self) -> None:
        self._db.close()

    def _run(self, sql: str, args: Sequence[Any]) -> psycopg.Cursor[dict[str, Any]]:
        with self._lock:
            try:
                return self._db.execute(_marks(sql), list(args))
            except psycopg.OperationalError:
                # The connection was lost (a database restart, a failover, an idle timeout): once,
                # on a new one. Outside a transaction, so nothing half-done is repeated.
                if not self._db.broken or self._in_transaction:
                    raise
                log.warning("the database connection was lost; reconnecting")
                self._db = self._connect()
                return self._db.execute(_marks(sql), list(args))

    def _execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        return self._run(sql, args).rowcount

    def _fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Mapping[str, Any]]:
        return list(self._run(sql, args).fetchall())

    @contextmanager
    def _write_transaction(self) -> Iterator[None]:
        with self._lock, self._db.transaction():
            self._in_transaction = True  # a lost connection here fails the transaction, never half-repeats it
            try:
                # Writers of spend and of the rate limit queue here, across replicas, until this
                # transaction ends.
                self._db.execute("SELECT pg_advisory_xact_lock(%s)", (SPEND_LOCK,))
                yield
            finally:
                self._in_transaction = False

    def _migrate(self) -> None:
        with self._lock:
            # Replicas starting together: one migrates, the others wait, then find nothing to do.
            self._db.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
            try:
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION)"
                )
                done = {row["name"] for row in self._db.execute("SELECT name FROM _migrations").fetchall()}
                for name, fn in MIGRATIONS:
                    if name in done:
                        continue
                    with self._db.transaction():
                        fn(self._db)
                        self._db.execute("INSERT INTO _migrations VALUES (%s, %s)", (name, time.time()))
            finally:
                self._db.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))

    # --- tokens (tokens.TokenTable) --------------------------------------------------------------

    def token_rows(self) -> list[Mapping[str, Any]]:
        return self._fetch("SELECT name, sha256, created_at, max_spend_usd FROM tokens ORDER BY name")

    def insert_token(self, row: Mapping[str, Any]) -> None:
        self._execute(
            "INSERT INTO tokens (name, sha256, created_at, max_spend_usd) VALUES (?, ?, ?, ?)",
            (row["name"], row["sha256"], row["created_at"], row["max_spend_usd"]),
        )

    def delete_token(self, name: str) -> None:
        self._execute("DELETE FROM tokens WHERE name = ?", (name,))

    # --- push: NOTIFY on every change, LISTEN for the life of the server ------------------------

    def _changed(self, job_id: str) -> None:
        # Announced to this process's watchers when the notification comes back, like everyone's.
        self._execute("SELECT pg_notify(?, ?)", (CHANNEL, job_id))

    async def changed(self, job_id: str) -> None:
        event = anyio.Event()
        self._waiters.setdefault(job_id, set()).add(event)  # before any await: no change is missed
        try:
            with anyio.move_on_after(self.poll_s):
                await event.wait()
        finally:
            waiting = self._waiters.get(job_id)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._waiters[job_id]

    async def listen(self) -> None:
        delay = 0.5
        while True:
            try:
                # Shielded: a stop that lands mid-connect would drop a connection psycopg opened
                # but had not handed over yet, leaving it open (a ResourceWarning, a leaked socket).
                with anyio.CancelScope(shield=True), anyio.fail_after(10):
                    conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
                try:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    delay = 0.5
                    self._wake_all()  # anything missed while not listening
                    async for note in conn.notifies():
                        for event in self._waiters.get(note.payload, ()):
                            event.set()
                        self._announce(note.payload)
                finally:
                    # Not `async with conn`: its exit first awaits a rollback, which a stop
                    # cancels, so the connection was never closed. close() itself does not wait.
                    await conn.close()
            except Exception as exc:  # psycopg's or the network's: keep serving, with the fallback poll
                log.warning("listening for job changes failed (%s); waiters poll every %g s", exc, self.poll_s)
            await anyio.sleep(delay)
            delay = min(delay * 2, 30.0)

    def _wake_all(self) -> None:
        for events in self._waiters.values():
            for event in events:
                event.set()
