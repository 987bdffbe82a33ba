"""SQLite persistence: jobs and saved voices, with ordered, named migrations.

A job row is written before the upstream submit and updated as the job moves, so a restart
(even kill -9) finds every job the upstream may be running. Rows never hold API keys: the
request body is the tool's arguments, and provider handles are URLs and ids.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mcp_audio.catalog import SavedVoice
from mcp_audio.results import JobResult

# `unknown`: a request was sent but no answer said whether the upstream took it; it may have
# run and billed, so it is never resent (see the README's delivery guarantees).
JobState = Literal["queued", "running", "completed", "failed", "cancelled", "unknown"]
FINISHED: frozenset[str] = frozenset({"completed", "failed", "cancelled", "unknown"})
LOG_TAIL = 20  # log lines kept per job
LOCAL_PRINCIPAL = "local"  # stdio, and HTTP without authentication: the one local user


@dataclass
class Job:
    id: str
    tool: str
    provider: str
    endpoint: str
    body: dict[str, Any]  # what the upstream was sent (multipart files as a record of them)
    options: dict[str, Any]  # the call's server-only arguments
    state: JobState
    created_at: float
    updated_at: float
    upstream_id: str | None = None
    handle: dict[str, Any] = field(default_factory=dict)
    queue_position: int | None = None
    logs: list[str] = field(default_factory=list)
    result: JobResult | None = None
    error: str | None = None
    finished_at: float | None = None
    estimated_cost_usd: float | None = None
    lease_owner: str | None = None  # the process following the job, while its lease lasts
    lease_expires: float | None = None
    principal: str = LOCAL_PRINCIPAL  # who started it: only they see it

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def summary(self) -> dict[str, Any]:
        """The job as an agent sees it (no request body: it may be long and the agent sent it)."""
        out: dict[str, Any] = {
            "job_id": self.id,
            "tool": self.tool,
            "status": self.state,
            "endpoint": self.endpoint,
            "created_at": iso_time(self.created_at),
        }
        if self.queue_position is not None and self.state == "queued":
            out["queue_position"] = self.queue_position
        if self.estimated_cost_usd is not None:
            out["estimated_cost_usd"] = self.estimated_cost_usd
        if self.finished_at is not None:
            out["finished_at"] = iso_time(self.finished_at)
            out["duration_s"] = round(self.finished_at - self.created_at, 2)
        if self.error:
            out["error"] = self.error
        if self.logs and not self.finished:
            out["logs"] = self.logs[-5:]
        return out


def iso_time(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


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


_UNFINISHED = "state IN ('queued', 'running')"
_JSON_COLUMNS = ("payload", "options", "handle", "logs", "result")


class JobStore:
    """Jobs and voices in one SQLite file. Calls are short; a lock serialises threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread=False: the CLI and anyio worker threads may share the store.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._lock = threading.Lock()
        self._migrate()

    def close(self) -> None:
        self._db.close()

    def _migrate(self) -> None:
        with self._lock:
            self._db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
            done = {row[0] for row in self._db.execute("SELECT name FROM _migrations")}
            for name, fn in MIGRATIONS:
                if name in done:
                    continue
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    fn(self._db)
                    self._db.execute("INSERT INTO _migrations VALUES (?, ?)", (name, time.time()))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise

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
    ) -> Job:
        """A new queued job, written before anything is sent upstream, leased to `owner`."""
        now = time.time()
        job = Job(
            id=uuid.uuid4().hex,
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
        with self._lock:
            self._db.execute(
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
        with self._lock:
            cursor = self._db.execute(
                "UPDATE jobs SET lease_owner = ?, lease_expires = ? WHERE id = ? AND state IN ('queued', 'running')"
                " AND (lease_owner IS NULL OR lease_owner = ? OR lease_owner = ? OR lease_expires < ?)",
                (owner, now + lease_s, job_id, owner, taking_over, now),
            )
        return cursor.rowcount == 1

    def renew(self, owner: str, job_ids: list[str], lease_s: float) -> set[str]:
        """Extend `owner`'s leases on these jobs; returns the ids it still holds (unfinished)."""
        if not job_ids:
            return set()
        marks = ", ".join("?" for _ in job_ids)
        with self._lock:
            self._db.execute(
                f"UPDATE jobs SET lease_expires = ? WHERE lease_owner = ? AND id IN ({marks})"
                " AND state IN ('queued', 'running')",
                [time.time() + lease_s, owner, *job_ids],
            )
            rows = self._db.execute(
                f"SELECT id FROM jobs WHERE lease_owner = ? AND id IN ({marks}) AND state IN ('queued', 'running')",
                [owner, *job_ids],
            ).fetchall()
        return {row[0] for row in rows}

    def release(self, owner: str) -> None:
        """A stopping process hands its unfinished jobs on at once (the next start or another
        process takes them without waiting for the leases to expire)."""
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET lease_owner = NULL, lease_expires = NULL WHERE lease_owner = ?", (owner,)
            )

    # --- transitions: each names the change it makes -----------------------------------------

    def record_submission(self, job_id: str, upstream_id: str, handle: dict[str, Any]) -> Job:
        """The upstream accepted the job: what re-attaching to it needs."""
        return self._set(job_id, upstream_id=upstream_id, handle=json.dumps(handle))

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

    def _set(self, job_id: str, where: str = "1", where_args: list[Any] | None = None, **columns: Any) -> Job:
        # Column names and conditions come only from the transitions above, never from callers' data.
        columns["updated_at"] = time.time()
        assignments = ", ".join(f"{name} = ?" for name in columns)
        with self._lock:
            self._db.execute(
                f"UPDATE jobs SET {assignments} WHERE id = ? AND {where}",
                [*columns.values(), job_id, *(where_args or [])],
            )
        job = self.get_job(job_id)
        assert job is not None, job_id
        return job

    def get_job(self, job_id: str, principal: str | None = None) -> Job | None:
        """The job; with `principal`, only if it is theirs (another's job is as if it did not exist)."""
        query, args = "SELECT * FROM jobs WHERE id = ?", [job_id]
        if principal is not None:
            query, args = query + " AND principal = ?", [*args, principal]
        with self._lock:
            row = self._db.execute(query, args).fetchone()
        return _job(row) if row else None

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
        with self._lock:
            rows = self._db.execute(query, [*args, limit]).fetchall()
        return [_job(row) for row in rows]

    def unfinished_jobs(self, *, unleased_only: bool = False) -> list[Job]:
        """Unfinished jobs, oldest first; `unleased_only`: those no live lease holds."""
        query = "SELECT * FROM jobs WHERE state IN ('queued', 'running')"
        args: list[Any] = []
        if unleased_only:
            query += " AND (lease_owner IS NULL OR lease_expires < ?)"
            args.append(time.time())
        with self._lock:
            rows = self._db.execute(query + " ORDER BY created_at", args).fetchall()
        return [_job(row) for row in rows]

    def leased_by_others(self, owner: str) -> list[Job]:
        """Unfinished jobs another owner holds a live lease on (a dead owner's may be taken over)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM jobs WHERE state IN ('queued', 'running') AND lease_owner != ? AND lease_expires >= ?",
                (owner, time.time()),
            ).fetchall()
        return [_job(row) for row in rows]

    # --- uploads: the same bytes are not uploaded twice while the upstream keeps them ---------

    def find_upload(self, sha256: str, provider: str, max_age_s: float) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT url FROM uploads WHERE sha256 = ? AND provider = ? AND created_at > ?",
                (sha256, provider, time.time() - max_age_s),
            ).fetchone()
        return str(row[0]) if row else None

    def save_upload(self, sha256: str, provider: str, url: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO uploads VALUES (?, ?, ?, ?)", (sha256, provider, url, time.time()))

    # --- voices -------------------------------------------------------------------------

    def save_voice(self, voice: SavedVoice, *, job_id: str | None = None, principal: str | None = None) -> None:
        """Saved for `principal`, by default the principal of the job that made it: a name is
        per principal, so nobody overwrites another's voice."""
        with self._lock:
            if principal is None and job_id is not None:
                row = self._db.execute("SELECT principal FROM jobs WHERE id = ?", (job_id,)).fetchone()
                principal = row[0] if row else None
            self._db.execute(
                "INSERT OR REPLACE INTO voices (principal, name, family, provider, fields, job_id, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
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
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM voices WHERE principal = ? AND name = ?", (principal, name)
            ).fetchone()
        return _voice(row) if row else None

    def voice_names(self, family: str, principal: str = LOCAL_PRINCIPAL) -> list[str]:
        return [voice.name for voice in self.list_voices(principal) if voice.family == family]

    def list_voices(self, principal: str = LOCAL_PRINCIPAL) -> list[SavedVoice]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM voices WHERE principal = ? ORDER BY name", (principal,)).fetchall()
        return [_voice(row) for row in rows]

    # --- spend: running totals per principal, kept across restarts -----------------------------

    def charge(
        self, principal: str, cost: float, *, limit_usd: float | None, server_limit_usd: float | None
    ) -> tuple[bool, float, float]:
        """Add `cost` to `principal`'s total unless that would pass its limit or the server's total
        pass the server's; in one transaction, so concurrent calls (other processes too) cannot
        both slip under a limit. Returns (charged, principal's total, server's total), before."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                mine = self._db.execute("SELECT spent_usd FROM spend WHERE principal = ?", (principal,)).fetchone()
                spent = float(mine[0]) if mine else 0.0
                server = float(self._db.execute("SELECT COALESCE(SUM(spent_usd), 0) FROM spend").fetchone()[0])
                over = (limit_usd is not None and spent + cost > limit_usd + 1e-9) or (
                    server_limit_usd is not None and server + cost > server_limit_usd + 1e-9
                )
                if not over:
                    self._db.execute(
                        "INSERT INTO spend VALUES (?, ?)"
                        " ON CONFLICT(principal) DO UPDATE SET spent_usd = spent_usd + excluded.spent_usd",
                        (principal, cost),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return not over, spent, server

    def spent(self, principal: str) -> float:
        with self._lock:
            row = self._db.execute("SELECT spent_usd FROM spend WHERE principal = ?", (principal,)).fetchone()
        return float(row[0]) if row else 0.0


def _job(row: sqlite3.Row) -> Job:
    data = dict(row)
    for name in _JSON_COLUMNS:
        if data[name] is not None:
            data[name] = json.loads(data[name])
    data["handle"] = data["handle"] or {}
    data["body"] = data.pop("payload")
    if data["result"] is not None:
        data["result"] = JobResult.model_validate(data["result"])
    return Job(**data)


def _voice(row: sqlite3.Row) -> SavedVoice:
    return SavedVoice(
        name=row["name"], family=row["family"], provider=row["provider"], fields=json.loads(row["fields"])
    )
