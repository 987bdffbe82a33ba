"""The job store's interface and the SQL both backends share: jobs, leases, uploads, voices, spend.

A job row is written before the upstream submit and updated as the job moves, so a restart
(even kill -9) finds every job the upstream may be running. Rows never hold API keys: the
request body is the tool's arguments, and provider handles are URLs and ids.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol

import anyio

from mcp_audio import metrics
from mcp_audio.core.errors import KeyInUse
from mcp_audio.core.job import IDEMPOTENCY_TTL_S, LOCAL_PRINCIPAL, LOG_TAIL, IdempotencyKey, Job, JobState
from mcp_audio.core.results import JobResult
from mcp_audio.core.voices import SavedVoice

log = logging.getLogger("mcp_audio.store")

_UNFINISHED = "state IN ('queued', 'running')"
_JSON_COLUMNS = ("payload", "options", "handle", "logs", "result", "webhook")


class Statements(Protocol):
    """Where SQL runs: the store, or one write transaction of it (`_write_transaction`)."""

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        ...

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Mapping[str, Any]]: ...


class JobStore:
    """Jobs, leases, uploads, voices and spend. The SQL here is what SQLite and PostgreSQL share,
    written with `?` marks; each backend (store/sqlite.py, store/postgres.py) runs it and keeps its
    own dialect: schema and migrations, write transactions, push. Every call that reaches the
    database is async and never holds the event loop: SQLite runs on a thread of its own,
    PostgreSQL on psycopg's async connections from a pool. `open()` before use, `close()` after."""

    # How long a waiter sleeps between reads of a row another process follows, when nothing
    # pushes a change sooner (SQLite: a local read, so short; PostgreSQL: a fallback to NOTIFY).
    poll_s: float = 0.25

    def __init__(self) -> None:
        self._watchers: list[Callable[[str], None]] = []

    # --- what each backend provides ----------------------------------------------------------

    async def open(self) -> None:
        """Connect and migrate."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def _execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        raise NotImplementedError

    async def _fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Mapping[str, Any]]:
        raise NotImplementedError

    async def _execute_urgent(self, sql: str, args: Sequence[Any] = ()) -> int:
        """A statement that must not wait behind the others (a lease's renewal): a backend with a
        pool runs it on a connection of its own."""
        return await self._execute(sql, args)

    def _write_transaction(self) -> AbstractAsyncContextManager[Statements]:
        """One transaction that no other writer of the same tables interleaves with; its
        statements run through what it yields."""
        raise NotImplementedError

    def _transaction(self) -> AbstractAsyncContextManager[Statements]:
        """One transaction of statements that rows and unique keys keep apart (a backend whose
        every write transaction is exclusive uses that)."""
        return self._write_transaction()

    def _changed(self, job_id: str) -> None:
        """A job's row changed: tell other processes' waiters, if the backend can push (this
        one cannot: only the changes made through this store are announced)."""
        self._announce(job_id)

    def watch(self, callback: Callable[[str], None]) -> None:
        """Call `callback(job_id)`, on the event loop, after each change of a job row made
        through this store, and (PostgreSQL) each one another process announces."""
        self._watchers.append(callback)

    def _announce(self, job_id: str) -> None:
        for callback in self._watchers:
            try:
                callback(job_id)
            except Exception:  # a watcher's failure is not the write's
                log.exception("a watcher of job %s failed", job_id)

    async def listen(self) -> None:
        """For the life of the server: deliver other processes' changes to `changed` waiters
        (a backend without push returns at once and waiters poll)."""

    async def changed(self, job_id: str) -> None:
        """Return when the job's row may have changed, or after `poll_s`. The waiter registers
        before its first await, so a change after the caller's last read is never missed."""
        await anyio.sleep(self.poll_s)

    async def ping(self) -> None:
        """Raises if the database cannot be reached (the health check)."""
        await self._fetch("SELECT 1 AS ok")

    async def check_writable(self, replica: str) -> None:
        """Raises if the database cannot take a write now (the health check): a full disk or a
        read-only database answers reads but not this."""
        await self._execute(
            "INSERT INTO health (replica, checked_at) VALUES (?, ?)"
            " ON CONFLICT (replica) DO UPDATE SET checked_at = excluded.checked_at",
            (replica, time.time()),
        )

    # --- jobs ---------------------------------------------------------------------------

    async def create_job(
        self,
        *,
        tool: str,
        provider: str,
        endpoint: str,
        body: dict[str, Any],
        options: dict[str, Any],
        estimated_cost_usd: float | None = None,
        owner: str | None = None,
        principal: str = LOCAL_PRINCIPAL,
        idempotency: IdempotencyKey | None = None,
        traceparent: str | None = None,
        now: float | None = None,
        job_id: str | None = None,
    ) -> Job:
        """A new queued job, written before anything is sent upstream, followed by `owner` (a replica
        that keeps its heartbeat). With an `idempotency` key, the key is recorded with the job in
        one transaction; KeyInUse when the key already names a job of `principal`'s (made in the
        last IDEMPOTENCY_TTL_S before `now`): no job is made. Two calls with one key at once make
        one job, on any replica: the unique (principal, key) decides. `traceparent`: the call's W3C
        trace, kept so whoever follows the job (after a restart too) logs and sends it. `job_id`: an
        id chosen (and recorded elsewhere) beforehand, e.g. a production's part."""
        now = time.time() if now is None else now
        job = Job(
            id=job_id or uuid.uuid4().hex,
            tool=tool,
            provider=provider,
            endpoint=endpoint,
            body=body,
            options=options,
            state="queued",
            created_at=now,
            updated_at=now,
            estimated_cost_usd=estimated_cost_usd,
            lease_owner=owner,
            principal=principal,
            traceparent=traceparent,
        )
        insert = (
            "INSERT INTO jobs (id, tool, provider, endpoint, payload, options, state, created_at, updated_at,"
            " estimated_cost_usd, lease_owner, principal, traceparent)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        values = (
            job.id,
            tool,
            provider,
            endpoint,
            json.dumps(body),
            json.dumps(options),
            job.state,
            now,
            now,
            estimated_cost_usd,
            job.lease_owner,
            principal,
            traceparent,
        )
        if idempotency is None:
            await self._execute(insert, values)
            return job
        async with self._transaction() as tx:
            # Expired keys go first (anyone's: the index on created_at makes it cheap), so a key
            # older than a day names a new call.
            await tx.execute("DELETE FROM idempotency WHERE created_at <= ?", (now - IDEMPOTENCY_TTL_S,))
            # Insert-or-get: a concurrent transaction with the same key waits on the unique index
            # and then inserts nothing.
            taken = await tx.fetch(
                "INSERT INTO idempotency (principal, key, request_hash, job_id, created_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (principal, key) DO NOTHING RETURNING job_id",
                (principal, idempotency.key, idempotency.request_hash, job.id, now),
            )
            if not taken:
                rows = await tx.fetch(
                    "SELECT request_hash, job_id FROM idempotency WHERE principal = ? AND key = ?",
                    (principal, idempotency.key),
                )
                raise KeyInUse(idempotency.key, str(rows[0]["job_id"]), str(rows[0]["request_hash"]))
            await tx.execute(insert, values)
        return job

    async def keyed_job(self, principal: str, key: str, *, now: float | None = None) -> tuple[str, str] | None:
        """The job `principal`'s idempotency key names, with the hash of the call that made it:
        (job_id, request_hash); None when the key is unknown or older than IDEMPOTENCY_TTL_S."""
        now = time.time() if now is None else now
        rows = await self._fetch(
            "SELECT job_id, request_hash FROM idempotency WHERE principal = ? AND key = ? AND created_at > ?",
            (principal, key, now - IDEMPOTENCY_TTL_S),
        )
        return (str(rows[0]["job_id"]), str(rows[0]["request_hash"])) if rows else None

    # --- leases: one follower per job across processes ---------------------------------------
    # A job names its owner (`lease_owner`); the owner's lease is its one heartbeat row in
    # `replicas`, so keeping every job it follows costs one statement, however many there are.
    # A job whose owner has no live heartbeat (expired, or none: released) is free to claim.

    _OWNER_LIVE = "EXISTS (SELECT 1 FROM replicas WHERE replicas.owner = jobs.lease_owner AND replicas.expires >= ?)"

    async def heartbeat(self, owner: str, host: str, pid: int, lease_s: float) -> None:
        """Keep `owner`'s lease (every job it follows) for `lease_s` more seconds: one statement."""
        await self._execute_urgent(
            "INSERT INTO replicas (owner, host, pid, expires) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (owner) DO UPDATE SET expires = excluded.expires",
            (owner, host, pid, time.time() + lease_s),
        )

    async def live_replicas(self, owner: str) -> list[tuple[str, str, int]]:
        """The other owners whose heartbeat is live: (owner, host, pid), so the runner can probe a
        process on its own host, without reading any job."""
        rows = await self._fetch(
            "SELECT owner, host, pid FROM replicas WHERE owner != ? AND expires >= ?", (owner, time.time())
        )
        return [(str(row["owner"]), str(row["host"]), int(row["pid"])) for row in rows]

    async def claim(self, job_id: str, owner: str, *, taking_over: str | None = None) -> Job | None:
        """Make `owner` follow an unfinished job if its owner has no live heartbeat (or is
        `taking_over`, an owner known to be dead). The job as `owner` now holds it, or None."""
        rows = await self._fetch(
            f"UPDATE jobs SET lease_owner = ? WHERE id = ? AND {_UNFINISHED} AND (lease_owner IS NULL"
            f" OR lease_owner = ? OR lease_owner = ? OR NOT {self._OWNER_LIVE}) RETURNING *",
            (owner, job_id, owner, taking_over, time.time()),
        )
        return _job(rows[0]) if rows else None

    async def holds(self, owner: str, job_id: str) -> bool:
        """Whether `owner` still holds this unfinished job (not finished or taken over elsewhere)."""
        rows = await self._fetch(
            f"SELECT id FROM jobs WHERE id = ? AND lease_owner = ? AND {_UNFINISHED}", (job_id, owner)
        )
        return bool(rows)

    async def held(self, owner: str) -> set[str]:
        """The unfinished jobs `owner` follows (others finished, cancelled or took over the rest)."""
        return {
            row["id"]
            for row in await self._fetch(f"SELECT id FROM jobs WHERE lease_owner = ? AND {_UNFINISHED}", (owner,))
        }

    async def release(self, owner: str) -> None:
        """A stopping process hands its unfinished jobs on at once (the next start or another
        process takes them without waiting for its heartbeat to expire)."""
        # Its heartbeat goes, with those of processes gone for a day (a kill -9 leaves its row).
        await self._execute("DELETE FROM replicas WHERE owner = ? OR expires < ?", (owner, time.time() - 86400))
        await self._execute("UPDATE jobs SET lease_owner = NULL WHERE lease_owner = ?", (owner,))

    # --- transitions: each names the change it makes -----------------------------------------

    async def record_submission(self, job_id: str, upstream_id: str, handle: dict[str, Any]) -> Job:
        """The upstream accepted the job: what re-attaching to it needs."""
        return await self._set(job_id, upstream_id=upstream_id, handle=json.dumps(handle))

    async def record_handle(self, job_id: str, handle: dict[str, Any]) -> Job:
        """A job run by this server (a production) records where it is: its parts' jobs."""
        return await self._set(job_id, _UNFINISHED, handle=json.dumps(handle))

    async def mark_running(self, job_id: str) -> Job:
        return await self._set(job_id, _UNFINISHED, state="running")

    async def record_progress(self, job_id: str, state: JobState, queue_position: int | None, logs: list[str]) -> Job:
        """A queued/running update; `logs` are the job's lines now (its follower keeps them; the last
        LOG_TAIL are stored), so the update is one statement with no read before it."""
        return await self._set(
            job_id, _UNFINISHED, state=state, queue_position=queue_position, logs=json.dumps(logs[-LOG_TAIL:])
        )

    # The final transitions apply only to an unfinished job, and, given an `owner`, only while
    # that owner holds the lease: a job is finished once, by whoever follows it.

    async def complete(self, job_id: str, result: JobResult, *, owner: str | None = None) -> Job:
        result_json = result.model_dump_json(exclude_none=True)
        return await self._finish(job_id, "completed", owner, result=result_json, queue_position=None)

    async def fail(self, job_id: str, error: str, *, owner: str | None = None) -> Job:
        return await self._finish(job_id, "failed", owner, error=error)

    async def mark_unknown(self, job_id: str, error: str, *, owner: str | None = None) -> Job:
        """Sent, but whether the upstream took it is unknown: never resent, never followed."""
        return await self._finish(job_id, "unknown", owner, error=error)

    async def cancel(self, job_id: str, reason: str) -> Job:
        return await self._finish(job_id, "cancelled", None, error=reason)

    async def _finish(self, job_id: str, state: JobState, owner: str | None, **columns: Any) -> Job:
        where = _UNFINISHED + (" AND lease_owner = ?" if owner else "")
        columns |= {"state": state, "finished_at": time.time(), "lease_owner": None}
        finished = await self._update(job_id, where, [owner] if owner else [], **columns)
        if finished is not None:  # counted once, by whoever finished it
            metrics.job_finished(finished.provider, state)
        return finished or await self._as_stands(job_id)

    async def _set(self, job_id: str, where: str = "TRUE", where_args: list[Any] | None = None, **columns: Any) -> Job:
        """One `UPDATE ... RETURNING` per transition; only when it changed nothing (the job is
        finished, or another holds it) is the row read as it stands."""
        return await self._update(job_id, where, where_args, **columns) or await self._as_stands(job_id)

    async def _update(
        self, job_id: str, where: str = "TRUE", where_args: list[Any] | None = None, **columns: Any
    ) -> Job | None:
        """The job as the UPDATE left it; None when it changed nothing."""
        # Column names and conditions come only from the transitions above, never from callers' data.
        columns["updated_at"] = time.time()
        assignments = ", ".join(f"{name} = ?" for name in columns)
        rows = await self._fetch(
            f"UPDATE jobs SET {assignments} WHERE id = ? AND {where} RETURNING *",
            [*columns.values(), job_id, *(where_args or [])],
        )
        if not rows:
            return None
        self._changed(job_id)
        return _job(rows[0])

    async def _as_stands(self, job_id: str) -> Job:
        job = await self.get_job(job_id)
        assert job is not None, job_id
        return job

    async def record_webhook(
        self, provider: str, upstream_id: str, delivery: dict[str, Any]
    ) -> Literal["recorded", "seen", "unknown"]:
        """Keep a verified webhook delivery on its unfinished job for the follower, wherever it
        runs: "recorded"; "seen" when the job already has one or is finished (fal repeats
        deliveries: nothing changes); "unknown" when no job has that upstream id (yet)."""
        rows = await self._fetch(
            f"UPDATE jobs SET webhook = ?, updated_at = ? WHERE provider = ? AND upstream_id = ? AND {_UNFINISHED}"
            " AND webhook IS NULL RETURNING id",
            (json.dumps(delivery), time.time(), provider, upstream_id),
        )
        if rows:
            for row in rows:
                self._changed(row["id"])
            return "recorded"
        seen = await self._fetch("SELECT id FROM jobs WHERE provider = ? AND upstream_id = ?", (provider, upstream_id))
        return "seen" if seen else "unknown"

    async def get_job(self, job_id: str, principal: str | None = None) -> Job | None:
        """The job; with `principal`, only if it is theirs (another's job is as if it did not exist)."""
        query, args = "SELECT * FROM jobs WHERE id = ?", [job_id]
        if principal is not None:
            query, args = query + " AND principal = ?", [*args, principal]
        rows = await self._fetch(query, args)
        return _job(rows[0]) if rows else None

    async def list_jobs(
        self, *, states: list[str] | None = None, limit: int = 20, principal: str | None = None
    ) -> list[Job]:
        """Newest first; with `principal`, only theirs."""
        query, conditions, args = "SELECT * FROM jobs", [], []
        if states:
            conditions.append(f"state IN ({', '.join('?' for _ in states)})")
            args.extend(states)
        if principal is not None:
            conditions.append("principal = ?")
            args.append(principal)
        if conditions:
            query += " WHERE " + " AND ".join(conditions)
        query += " ORDER BY created_at DESC LIMIT ?"
        return [_job(row) for row in await self._fetch(query, [*args, limit])]

    async def unfinished_counts(self) -> dict[tuple[str, str], int]:
        """How many jobs are queued and running, by (upstream, state): for /metrics, from the
        state index, whatever the number of finished jobs."""
        rows = await self._fetch(
            f"SELECT provider, state, COUNT(*) AS n FROM jobs WHERE {_UNFINISHED} GROUP BY provider, state"
        )
        return {(str(row["provider"]), str(row["state"])): int(row["n"]) for row in rows}

    async def unfinished_jobs(self, *, unleased_only: bool = False) -> list[Job]:
        """Unfinished jobs, oldest first; `unleased_only`: those whose owner has no live heartbeat."""
        query = f"SELECT * FROM jobs WHERE {_UNFINISHED}"
        args: list[Any] = []
        if unleased_only:
            query += f" AND (lease_owner IS NULL OR NOT {self._OWNER_LIVE})"
            args.append(time.time())
        return [_job(row) for row in await self._fetch(query + " ORDER BY created_at", args)]

    async def leased_by_others(self, owner: str, *, only: Collection[str] | None = None) -> list[Job]:
        """Unfinished jobs another owner with a live heartbeat follows (a dead owner's may be taken
        over); `only`: those of these owners."""
        query = f"SELECT * FROM jobs WHERE {_UNFINISHED} AND lease_owner != ? AND {self._OWNER_LIVE}"
        args: list[Any] = [owner, time.time()]
        if only is not None:
            query += f" AND lease_owner IN ({', '.join('?' for _ in only)})"
            args.extend(only)
        return [_job(row) for row in await self._fetch(query, args)]

    # --- uploads: the same bytes are not uploaded twice while the upstream keeps them ---------

    async def find_upload(self, sha256: str, provider: str, max_age_s: float) -> str | None:
        rows = await self._fetch(
            "SELECT url FROM uploads WHERE sha256 = ? AND provider = ? AND created_at > ?",
            (sha256, provider, time.time() - max_age_s),
        )
        return str(rows[0]["url"]) if rows else None

    async def save_upload(self, sha256: str, provider: str, url: str) -> None:
        await self._execute(
            "INSERT INTO uploads (sha256, provider, url, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (sha256, provider)"
            " DO UPDATE SET url = excluded.url, created_at = excluded.created_at",
            (sha256, provider, url, time.time()),
        )

    # --- voices -------------------------------------------------------------------------

    async def save_voice(self, voice: SavedVoice, *, job_id: str | None = None, principal: str | None = None) -> None:
        """Saved for `principal`, by default the principal of the job that made it: a name is
        per principal, so nobody overwrites another's voice."""
        if principal is None and job_id is not None:
            rows = await self._fetch("SELECT principal FROM jobs WHERE id = ?", (job_id,))
            principal = rows[0]["principal"] if rows else None
        await self._execute(
            "INSERT INTO voices (principal, name, family, provider, fields, job_id, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (principal, name) DO UPDATE SET family = excluded.family,"
            " provider = excluded.provider, fields = excluded.fields, job_id = excluded.job_id,"
            " created_at = excluded.created_at",
            (
                principal or LOCAL_PRINCIPAL,
                voice.name,
                voice.family,
                voice.provider,
                json.dumps(voice.fields),
                job_id,
                time.time(),
            ),
        )

    async def find_voice(self, name: str, principal: str = LOCAL_PRINCIPAL) -> SavedVoice | None:
        rows = await self._fetch("SELECT * FROM voices WHERE principal = ? AND name = ?", (principal, name))
        return _voice(rows[0]) if rows else None

    async def voice_names(self, family: str, principal: str = LOCAL_PRINCIPAL) -> list[str]:
        return [voice.name for voice in await self.list_voices(principal) if voice.family == family]

    async def list_voices(self, principal: str = LOCAL_PRINCIPAL) -> list[SavedVoice]:
        rows = await self._fetch("SELECT * FROM voices WHERE principal = ? ORDER BY name", (principal,))
        return [_voice(row) for row in rows]

    # --- spend: running totals per principal, kept across restarts -----------------------------

    async def charge(
        self, principal: str, cost: float, *, limit_usd: float | None, server_limit_usd: float | None
    ) -> tuple[bool, float, float]:
        """Add `cost` to `principal`'s total unless that would pass its limit or the server's total
        pass the server's; in one transaction, so concurrent calls (other processes too) cannot
        both slip under a limit. Returns (charged, principal's total, server's total), before."""
        async with self._write_transaction() as tx:
            mine = await tx.fetch("SELECT spent_usd FROM spend WHERE principal = ?", (principal,))
            spent = float(mine[0]["spent_usd"]) if mine else 0.0
            server = float((await tx.fetch("SELECT COALESCE(SUM(spent_usd), 0) AS total FROM spend"))[0]["total"])
            over = (limit_usd is not None and spent + cost > limit_usd + 1e-9) or (
                server_limit_usd is not None and server + cost > server_limit_usd + 1e-9
            )
            if not over:
                await tx.execute(
                    "INSERT INTO spend (principal, spent_usd) VALUES (?, ?)"
                    " ON CONFLICT (principal) DO UPDATE SET spent_usd = spend.spent_usd + excluded.spent_usd",
                    (principal, cost),
                )
        return not over, spent, server

    async def refund(self, principal: str, cost: float) -> None:
        """Take back a charge for a call the upstream refused (it was not accepted, so not billed)."""
        await self._execute(
            "UPDATE spend SET spent_usd = CASE WHEN spent_usd > ? THEN spent_usd - ? ELSE 0 END WHERE principal = ?",
            (cost, cost, principal),
        )

    async def spent(self, principal: str) -> float:
        rows = await self._fetch("SELECT spent_usd FROM spend WHERE principal = ?", (principal,))
        return float(rows[0]["spent_usd"]) if rows else 0.0

    # --- the rate limit: each principal's calls in a sliding window, shared by every process ---

    async def count_call(self, principal: str, limit: int, window_s: float, now: float) -> float | None:
        """Count a call by `principal` at `now` (epoch seconds) unless it made `limit` calls in
        the `window_s` before: then return the seconds until it may call again, counting nothing.
        One transaction, so processes calling at once cannot both slip under the limit."""
        async with self._write_transaction() as tx:
            await tx.execute("DELETE FROM calls WHERE at <= ?", (now - window_s,))
            recent = await tx.fetch(
                "SELECT at FROM calls WHERE principal = ? ORDER BY at DESC LIMIT ?", (principal, limit)
            )
            if len(recent) >= limit:  # free again when the oldest of the last `limit` calls leaves the window
                return max(0.0, float(recent[-1]["at"]) + window_s - now)
            await tx.execute("INSERT INTO calls (principal, at) VALUES (?, ?)", (principal, now))
        return None


def _job(row: Mapping[str, Any]) -> Job:
    data = dict(row)
    for name in _JSON_COLUMNS:
        if data[name] is not None:
            data[name] = json.loads(data[name])
    data["handle"] = data["handle"] or {}
    data["body"] = data.pop("payload")
    if data["result"] is not None:
        data["result"] = JobResult.model_validate(data["result"])
    return Job(**data)


def _voice(row: Mapping[str, Any]) -> SavedVoice:
    return SavedVoice(
        name=row["name"], family=row["family"], provider=row["provider"], fields=json.loads(row["fields"])
    )


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` is the database failing (a full disk, a lost connection, a locked file), not
    a bug: such a write is worth retrying once the database is back."""
    if isinstance(exc, (sqlite3.OperationalError, OSError)):
        return True
    psycopg = {cls.__name__ for cls in type(exc).__mro__ if cls.__module__.split(".")[0] == "psycopg"}
    return bool(psycopg & {"OperationalError", "InterfaceError"})
