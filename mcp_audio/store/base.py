"""The job store's interface and the SQL both backends share: jobs, leases, uploads, voices, spend.

A job row is written before the upstream submit and updated as the job moves, so a restart
(even kill -9) finds every job the upstream may be running. Rows never hold API keys: the
request body is the tool's arguments, and provider handles are URLs and ids.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import anyio

from mcp_audio.core.job import LOCAL_PRINCIPAL, LOG_TAIL, Job, JobState
from mcp_audio.core.results import JobResult
from mcp_audio.core.voices import SavedVoice

log = logging.getLogger("mcp_audio.store")

_UNFINISHED = "state IN ('queued', 'running')"
_JSON_COLUMNS = ("payload", "options", "handle", "logs", "result", "webhook")


class JobStore:
    """Jobs, leases, uploads, voices and spend. The SQL here is what SQLite and PostgreSQL share,
    written with `?` marks; each backend (store/sqlite.py, store/postgres.py) runs it on its
    connection and keeps its own dialect: schema and migrations, write transactions, push.
    Calls are short; a lock serialises threads on the one connection."""

    # How long a waiter sleeps between reads of a row another process follows, when nothing
    # pushes a change sooner (SQLite: a local read, so short; PostgreSQL: a fallback to NOTIFY).
    poll_s: float = 0.25

    def __init__(self) -> None:
        self._lock = threading.RLock()  # re-entered by statements inside a write transaction
        self._watchers: list[Callable[[str], None]] = []

    # --- what each backend provides ----------------------------------------------------------

    def close(self) -> None:
        raise NotImplementedError

    def _execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        raise NotImplementedError

    def _fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Mapping[str, Any]]:
        raise NotImplementedError

    @contextmanager
    def _write_transaction(self) -> Iterator[None]:
        """One transaction that no other writer of the same tables interleaves with."""
        raise NotImplementedError
        yield

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

    def ping(self) -> None:
        """Raises if the database cannot be reached (the health check)."""
        self._fetch("SELECT 1 AS ok")

    # --- jobs ---------------------------------------------------------------------------

    def create_job(
        self,
        *,
        tool: str,
        provider: str,
        endpoint: str,
        body: dict[str, Any],
        options: dict[str, Any],
        estimated_cost_usd: float | None = None,
        owner: str | None = None,
        lease_s: float = 0.0,
        principal: str = LOCAL_PRINCIPAL,
        job_id: str | None = None,
    ) -> Job:
        """A new queued job, written before anything is sent upstream, leased to `owner`.
        `job_id`: an id chosen (and recorded elsewhere) beforehand, e.g. a production's part."""
        now = time.time()
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
            lease_expires=now + lease_s if owner else None,
            principal=principal,
        )
        self._execute(
            "INSERT INTO jobs (id, tool, provider, endpoint, payload, options, state, created_at, updated_at,"
            " estimated_cost_usd, lease_owner, lease_expires, principal)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
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
                job.lease_expires,
                principal,
            ),
        )
        return job

    # --- leases: one follower per job across processes ---------------------------------------

    def claim(self, job_id: str, owner: str, lease_s: float, *, taking_over: str | None = None) -> bool:
        """Lease an unfinished job to `owner` if nobody holds a live lease on it (or the lease
        is `taking_over`'s, an owner known to be dead). True if `owner` now holds it."""
        now = time.time()
        changed = self._execute(
            f"UPDATE jobs SET lease_owner = ?, lease_expires = ? WHERE id = ? AND {_UNFINISHED}"
            " AND (lease_owner IS NULL OR lease_owner = ? OR lease_owner = ? OR lease_expires < ?)",
            (owner, now + lease_s, job_id, owner, taking_over, now),
        )
        return changed == 1

    def renew(self, owner: str, job_ids: list[str], lease_s: float) -> set[str]:
        """Extend `owner`'s leases on these jobs; returns the ids it still holds (unfinished)."""
        if not job_ids:
            return set()
        marks = ", ".join("?" for _ in job_ids)
        self._execute(
            f"UPDATE jobs SET lease_expires = ? WHERE lease_owner = ? AND id IN ({marks}) AND {_UNFINISHED}",
            [time.time() + lease_s, owner, *job_ids],
        )
        rows = self._fetch(
            f"SELECT id FROM jobs WHERE lease_owner = ? AND id IN ({marks}) AND {_UNFINISHED}", [owner, *job_ids]
        )
        return {row["id"] for row in rows}

    def release(self, owner: str) -> None:
        """A stopping process hands its unfinished jobs on at once (the next start or another
        process takes them without waiting for the leases to expire)."""
        self._execute("UPDATE jobs SET lease_owner = NULL, lease_expires = NULL WHERE lease_owner = ?", (owner,))

    # --- transitions: each names the change it makes -----------------------------------------

    def record_submission(self, job_id: str, upstream_id: str, handle: dict[str, Any]) -> Job:
        """The upstream accepted the job: what re-attaching to it needs."""
        return self._set(job_id, upstream_id=upstream_id, handle=json.dumps(handle))

    def record_handle(self, job_id: str, handle: dict[str, Any]) -> Job:
        """A job run by this server (a production) records where it is: its parts' jobs."""
        return self._set(job_id, _UNFINISHED, handle=json.dumps(handle))

    def mark_running(self, job_id: str) -> Job:
        return self._set(job_id, _UNFINISHED, state="running")

    def record_progress(self, job_id: str, state: JobState, queue_position: int | None, logs: list[str]) -> Job:
        """A queued/running update; `logs` are new lines (the last LOG_TAIL are kept)."""
        job = self.get_job(job_id)
        kept = ((job.logs if job else []) + logs)[-LOG_TAIL:]
        return self._set(job_id, _UNFINISHED, state=state, queue_position=queue_position, logs=json.dumps(kept))

    # The final transitions apply only to an unfinished job, and, given an `owner`, only while
    # that owner holds the lease: a job is finished once, by whoever follows it.

    def complete(self, job_id: str, result: JobResult, *, owner: str | None = None) -> Job:
        result_json = result.model_dump_json(exclude_none=True)
        return self._finish(job_id, "completed", owner, result=result_json, queue_position=None)

    def fail(self, job_id: str, error: str, *, owner: str | None = None) -> Job:
        return self._finish(job_id, "failed", owner, error=error)

    def mark_unknown(self, job_id: str, error: str, *, owner: str | None = None) -> Job:
        """Sent, but whether the upstream took it is unknown: never resent, never followed."""
        return self._finish(job_id, "unknown", owner, error=error)

    def cancel(self, job_id: str, reason: str) -> Job:
        return self._finish(job_id, "cancelled", None, error=reason)

    def _finish(self, job_id: str, state: JobState, owner: str | None, **columns: Any) -> Job:
        where = _UNFINISHED + (" AND lease_owner = ?" if owner else "")
        columns |= {"state": state, "finished_at": time.time(), "lease_owner": None, "lease_expires": None}
        return self._set(job_id, where, [owner] if owner else [], **columns)

    def _set(self, job_id: str, where: str = "TRUE", where_args: list[Any] | None = None, **columns: Any) -> Job:
        # Column names and conditions come only from the transitions above, never from callers' data.
        columns["updated_at"] = time.time()
        assignments = ", ".join(f"{name} = ?" for name in columns)
        changed = self._execute(
            f"UPDATE jobs SET {assignments} WHERE id = ? AND {where}",
            [*columns.values(), job_id, *(where_args or [])],
        )
        if changed:
            self._changed(job_id)
        job = self.get_job(job_id)
        assert job is not None, job_id
        return job

    def record_webhook(
        self, provider: str, upstream_id: str, delivery: dict[str, Any]
    ) -> Literal["recorded", "seen", "unknown"]:
        """Keep a verified webhook delivery on its unfinished job for the follower, wherever it
        runs: "recorded"; "seen" when the job already has one or is finished (fal repeats
        deliveries: nothing changes); "unknown" when no job has that upstream id (yet)."""
        changed = self._execute(
            f"UPDATE jobs SET webhook = ?, updated_at = ? WHERE provider = ? AND upstream_id = ? AND {_UNFINISHED}"
            " AND webhook IS NULL",
            (json.dumps(delivery), time.time(), provider, upstream_id),
        )
        rows = self._fetch("SELECT id FROM jobs WHERE provider = ? AND upstream_id = ?", (provider, upstream_id))
        if changed:
            for row in rows:
                self._changed(row["id"])
            return "recorded"
        return "seen" if rows else "unknown"

    def get_job(self, job_id: str, principal: str | None = None) -> Job | None:
        """The job; with `principal`, only if it is theirs (another's job is as if it did not exist)."""
        query, args = "SELECT * FROM jobs WHERE id = ?", [job_id]
        if principal is not None:
            query, args = query + " AND principal = ?", [*args, principal]
        rows = self._fetch(query, args)
        return _job(rows[0]) if rows else None

    def list_jobs(self, *, states: list[str] | None = None, limit: int = 20, principal: str | None = None) -> list[Job]:
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
        return [_job(row) for row in self._fetch(query, [*args, limit])]

    def unfinished_jobs(self, *, unleased_only: bool = False) -> list[Job]:
        """Unfinished jobs, oldest first; `unleased_only`: those no live lease holds."""
        query = f"SELECT * FROM jobs WHERE {_UNFINISHED}"
        args: list[Any] = []
        if unleased_only:
            query += " AND (lease_owner IS NULL OR lease_expires < ?)"
            args.append(time.time())
        return [_job(row) for row in self._fetch(query + " ORDER BY created_at", args)]

    def lease_holders(self, owner: str) -> set[str]:
        """The other owners holding a live lease on an unfinished job (a cheap query: the runner
        asks every few seconds which of them died, without reading their jobs)."""
        rows = self._fetch(
            f"SELECT DISTINCT lease_owner FROM jobs WHERE {_UNFINISHED} AND lease_owner != ? AND lease_expires >= ?",
            (owner, time.time()),
        )
        return {str(row["lease_owner"]) for row in rows}

    def leased_by_others(self, owner: str, *, only: Collection[str] | None = None) -> list[Job]:
        """Unfinished jobs another owner holds a live lease on (a dead owner's may be taken over);
        `only`: those of these owners."""
        query = f"SELECT * FROM jobs WHERE {_UNFINISHED} AND lease_owner != ? AND lease_expires >= ?"
        args: list[Any] = [owner, time.time()]
        if only is not None:
            query += f" AND lease_owner IN ({', '.join('?' for _ in only)})"
            args.extend(only)
        return [_job(row) for row in self._fetch(query, args)]

    # --- uploads: the same bytes are not uploaded twice while the upstream keeps them ---------

    def find_upload(self, sha256: str, provider: str, max_age_s: float) -> str | None:
        rows = self._fetch(
            "SELECT url FROM uploads WHERE sha256 = ? AND provider = ? AND created_at > ?",
            (sha256, provider, time.time() - max_age_s),
        )
        return str(rows[0]["url"]) if rows else None

    def save_upload(self, sha256: str, provider: str, url: str) -> None:
        self._execute(
            "INSERT INTO uploads (sha256, provider, url, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (sha256, provider)"
            " DO UPDATE SET url = excluded.url, created_at = excluded.created_at",
            (sha256, provider, url, time.time()),
        )

    # --- voices -------------------------------------------------------------------------

    def save_voice(self, voice: SavedVoice, *, job_id: str | None = None, principal: str | None = None) -> None:
        """Saved for `principal`, by default the principal of the job that made it: a name is
        per principal, so nobody overwrites another's voice."""
        if principal is None and job_id is not None:
            rows = self._fetch("SELECT principal FROM jobs WHERE id = ?", (job_id,))
            principal = rows[0]["principal"] if rows else None
        self._execute(
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

    def find_voice(self, name: str, principal: str = LOCAL_PRINCIPAL) -> SavedVoice | None:
        rows = self._fetch("SELECT * FROM voices WHERE principal = ? AND name = ?", (principal, name))
        return _voice(rows[0]) if rows else None

    def voice_names(self, family: str, principal: str = LOCAL_PRINCIPAL) -> list[str]:
        return [voice.name for voice in self.list_voices(principal) if voice.family == family]

    def list_voices(self, principal: str = LOCAL_PRINCIPAL) -> list[SavedVoice]:
        rows = self._fetch("SELECT * FROM voices WHERE principal = ? ORDER BY name", (principal,))
        return [_voice(row) for row in rows]

    # --- spend: running totals per principal, kept across restarts -----------------------------

    def charge(
        self, principal: str, cost: float, *, limit_usd: float | None, server_limit_usd: float | None
    ) -> tuple[bool, float, float]:
        """Add `cost` to `principal`'s total unless that would pass its limit or the server's total
        pass the server's; in one transaction, so concurrent calls (other processes too) cannot
        both slip under a limit. Returns (charged, principal's total, server's total), before."""
        with self._write_transaction():
            mine = self._fetch("SELECT spent_usd FROM spend WHERE principal = ?", (principal,))
            spent = float(mine[0]["spent_usd"]) if mine else 0.0
            server = float(self._fetch("SELECT COALESCE(SUM(spent_usd), 0) AS total FROM spend")[0]["total"])
            over = (limit_usd is not None and spent + cost > limit_usd + 1e-9) or (
                server_limit_usd is not None and server + cost > server_limit_usd + 1e-9
            )
            if not over:
                self._execute(
                    "INSERT INTO spend (principal, spent_usd) VALUES (?, ?)"
                    " ON CONFLICT (principal) DO UPDATE SET spent_usd = spend.spent_usd + excluded.spent_usd",
                    (principal, cost),
                )
        return not over, spent, server

    def spent(self, principal: str) -> float:
        rows = self._fetch("SELECT spent_usd FROM spend WHERE principal = ?", (principal,))
        return float(rows[0]["spent_usd"]) if rows else 0.0

    # --- the rate limit: each principal's calls in a sliding window, shared by every process ---

    def count_call(self, principal: str, limit: int, window_s: float, now: float) -> float | None:
        """Count a call by `principal` at `now` (epoch seconds) unless it made `limit` calls in
        the `window_s` before: then return the seconds until it may call again, counting nothing.
        One transaction, so processes calling at once cannot both slip under the limit."""
        with self._write_transaction():
            self._execute("DELETE FROM calls WHERE at <= ?", (now - window_s,))
            recent = self._fetch(
                "SELECT at FROM calls WHERE principal = ? ORDER BY at DESC LIMIT ?", (principal, limit)
            )
            if len(recent) >= limit:  # free again when the oldest of the last `limit` calls leaves the window
                return max(0.0, float(recent[-1]["at"]) + window_s - now)
            self._execute("INSERT INTO calls (principal, at) VALUES (?, ?)", (principal, now))
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
