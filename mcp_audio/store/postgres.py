"""The PostgreSQL backend (`MCP_AUDIO_DATABASE_URL=postgresql://...`): one database shared by
several server replicas.

Statements run on psycopg's async connections from a pool (`MCP_AUDIO_DATABASE_POOL` per
replica): the event loop never waits on the database. Migrations run under an advisory lock, on
a thread at open, so replicas starting together apply each once. Every change to a job row is
announced with NOTIFY (a trigger); `listen` (a task for the life of the server)
wakes the waiters of that job, so get_job on a replica that does not follow a job returns as
soon as another finishes it; a slow poll remains as the fallback if the push is lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from mcp_audio.store.base import JobStore, Statements

log = logging.getLogger("mcp_audio.store")

CHANNEL = "mcp_audio_jobs"
# Keys of pg_advisory_lock / pg_advisory_xact_lock (any 64-bit number, fixed for this app).
MIGRATION_LOCK = 0x6D63_7061_7564_0001
SPEND_LOCK = 0x6D63_7061_7564_0002
CLOSE_S = 2.0  # at a stop, how long the pool's workers may take to end

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
def pg005_notify_trigger(db: psycopg.Connection[Any]) -> None:
    # Every change a waiter cares about is announced by the UPDATE itself, not by a second
    # statement; lease changes (owner) are not announced.
    db.execute(
        f"""CREATE FUNCTION mcp_audio_job_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_notify('{CHANNEL}', NEW.id); RETURN NULL; END $$"""
    )
    db.execute(
        "CREATE TRIGGER jobs_changed AFTER UPDATE OF state, queue_position, logs, result, error, upstream_id,"
        " handle, webhook ON jobs FOR EACH ROW EXECUTE FUNCTION mcp_audio_job_changed()"
    )


@migration
def pg006_replicas(db: psycopg.Connection[Any]) -> None:
    # A lease per replica, not per job: its heartbeat row; a job names its owner (lease_owner).
    db.execute(
        "CREATE TABLE replicas (owner TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL,"
        " expires DOUBLE PRECISION NOT NULL)"
    )
    db.execute("CREATE INDEX jobs_owner ON jobs(lease_owner)")


@migration
def pg007_health(db: psycopg.Connection[Any]) -> None:
    # One row per replica, rewritten by each health check: proof that the database takes writes.
    db.execute("CREATE TABLE health (replica TEXT PRIMARY KEY, checked_at DOUBLE PRECISION NOT NULL)")


@migration
def pg008_idempotency(db: psycopg.Connection[Any]) -> None:
    # A caller's idempotency key names one job for a day: a call sent again, to any replica,
    # gets that job back.
    db.execute(
        "CREATE TABLE idempotency (principal TEXT NOT NULL, key TEXT NOT NULL, request_hash TEXT NOT NULL,"
        " job_id TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (principal, key))"
    )
    db.execute("CREATE INDEX idempotency_created ON idempotency(created_at)")


@migration
def pg009_traceparent(db: psycopg.Connection[Any]) -> None:
    # The W3C trace of the call that started a job: its follower, on any replica, logs it and
    # sends it upstream.
    db.execute("ALTER TABLE jobs ADD COLUMN traceparent TEXT")


def migrate(url: str) -> None:
    """Apply the migrations not applied yet (blocking: at open, on a thread)."""
    with psycopg.connect(url, autocommit=True, row_factory=dict_row, connect_timeout=10) as db:
        # Replicas starting together: one migrates, the others wait, then find nothing to do.
        db.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION)")
            done = {row["name"] for row in db.execute("SELECT name FROM _migrations").fetchall()}
            for name, fn in MIGRATIONS:
                if name in done:
                    continue
                with db.transaction():
                    fn(db)
                    db.execute("INSERT INTO _migrations VALUES (%s, %s)", (name, time.time()))
        finally:
            db.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))


class _Statements:
    """Statements on one connection, inside its transaction."""

    def __init__(self, conn: psycopg.AsyncConnection[dict[str, Any]]) -> None:
        self._conn = conn

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        return (await self._conn.execute(_marks(sql), list(args))).rowcount

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Mapping[str, Any]]:
        return list(await (await self._conn.execute(_marks(sql), list(args))).fetchall())


def _marks(sql: str) -> str:
    # The shared SQL uses `?`; psycopg takes `%s` (the shared SQL has no `%` or `?` of its own).
    return sql.replace("?", "%s")


class PostgresJobStore(JobStore):
    poll_s = 5.0  # NOTIFY wakes waiters; this only bounds a lost notification

    def __init__(self, url: str, *, pool_size: int = 10, wait_s: float = 30.0) -> None:
        super().__init__()
        self._url = url
        self._waiters: dict[str, set[anyio.Event]] = {}
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[dict[str, Any]]] = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            open=False,
            kwargs={"autocommit": True, "row_factory": dict_row, "connect_timeout": 10},
            timeout=wait_s,  # waiting for a free connection: a pool too small for the load says so
            name="mcp-audio",
        )
        # The heartbeat's own connection: with every pooled one busy (hundreds of jobs), a renewal
        # queued behind them would let this live replica's lease expire.
        self._urgent: AsyncConnectionPool[psycopg.AsyncConnection[dict[str, Any]]] = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=1,
            open=False,
            kwargs={"autocommit": True, "row_factory": dict_row, "connect_timeout": 10},
            timeout=10,
            name="mcp-audio-urgent",
        )

    async def open(self) -> None:
        await anyio.to_thread.run_sync(migrate, self._url)
        await self._pool.open(wait=True, timeout=30)

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            # Its workers may be reconnecting to a database that is gone: a stop waits for them
            # this long at most (a connection still opening is then left to the process's exit).
            await self._urgent.close(timeout=CLOSE_S)
            await self._pool.close(timeout=CLOSE_S)

    async def _execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        return (await self._run(sql, args, rows=False))[0]

    async def _fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Mapping[str, Any]]:
        return (await self._run(sql, args, rows=True))[1]

    @asynccontextmanager
    async def _connection(
        self, pool: AsyncConnectionPool[psycopg.AsyncConnection[dict[str, Any]]]
    ) -> AsyncIterator[psycopg.AsyncConnection[dict[str, Any]]]:
        """A connection of `pool`; a pool that stays busy says so in words (the database may be
        fine: this replica has more at once than its pool, or its CPU, serves)."""
        try:
            conn = await pool.getconn()
        except PoolTimeout as exc:
            raise PoolTimeout(
                f"this server's {pool.max_size} job database connection(s) stayed busy for {pool.timeout:g} s"
                f"{' (MCP_AUDIO_DATABASE_POOL)' if pool is self._pool else ''}: it has more work at once than it serves"
            ) from exc
        try:
            yield conn
        finally:
            await pool.putconn(conn)

    async def _execute_urgent(self, sql: str, args: Sequence[Any] = ()) -> int:
        # Opened on first use (a no-op after): only a server's engine renews a lease; the stores
        # /healthz and the webhooks open hold no connection for it.
        await self._urgent.open(wait=False)
        return (await self._run(sql, args, rows=False, pool=self._urgent))[0]

    async def _run(
        self, sql: str, args: Sequence[Any], *, rows: bool, pool: AsyncConnectionPool[Any] | None = None
    ) -> tuple[int, list[Mapping[str, Any]]]:
        pool = pool or self._pool
        attempt = 1
        while True:
            async with self._connection(pool) as conn:
                try:
                    cursor = await conn.execute(_marks(sql), list(args))
                    fetched: list[Mapping[str, Any]] = (
                        list(await cursor.fetchall()) if rows and cursor.description is not None else []
                    )
                    return cursor.rowcount, fetched
                except psycopg.OperationalError:
                    # The connection was lost (a database restart, a failover, an idle timeout):
                    # the pool drops it and checks the idle ones; once, on another. Outside a
                    # transaction, so nothing half-done is repeated.
                    if attempt == 2 or not conn.broken:
                        raise
            log.warning("a database connection was lost; trying again on another")
            await pool.check()
            attempt += 1

    @asynccontextmanager
    async def _write_transaction(self) -> AsyncIterator[Statements]:
        async with self._connection(self._pool) as conn, conn.transaction():
            # Writers of spend and of the rate limit queue here, across replicas, until this
            # transaction ends.
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SPEND_LOCK,))
            yield _Statements(conn)

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Statements]:
        # Row locks and unique indexes order these writers; they need not wait for spend's.
        async with self._connection(self._pool) as conn, conn.transaction():
            yield _Statements(conn)

    # --- push: NOTIFY on every change, LISTEN for the life of the server ------------------------

    def _changed(self, job_id: str) -> None:
        # The jobs_changed trigger sends NOTIFY; this process's watchers hear it when it comes
        # back, like everyone's.
        pass

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
