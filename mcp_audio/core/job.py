"""A job as the store keeps it: its state, its request, its result, who owns it and who follows it."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from mcp_audio.core.results import JobResult

__all__ = [
    "FINISHED",
    "IDEMPOTENCY_TTL_S",
    "LOCAL_PRINCIPAL",
    "LOG_TAIL",
    "IdempotencyKey",
    "Job",
    "JobState",
    "iso_time",
]

# `unknown`: a request was sent but no answer said whether the upstream took it; it may have
# run and billed, so it is never resent (see the README's delivery guarantees).
JobState = Literal["queued", "running", "completed", "failed", "cancelled", "unknown"]
FINISHED: frozenset[str] = frozenset({"completed", "failed", "cancelled", "unknown"})
LOG_TAIL = 20  # log lines kept per job
LOCAL_PRINCIPAL = "local"  # stdio, and HTTP without authentication: the one local user
IDEMPOTENCY_TTL_S = 24 * 3600.0  # how long a caller's idempotency key names its job


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
    lease_expires: float | None = None  # unused: a lease is its owner's heartbeat (store.heartbeat)
    principal: str = LOCAL_PRINCIPAL  # who started it: only they see it
    webhook: dict[str, Any] | None = None  # the upstream's verified webhook delivery, until the follower uses it
    traceparent: str | None = None  # the W3C trace of the call that started it (logged, sent upstream)

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


@dataclass(frozen=True)
class IdempotencyKey:
    """A caller's key for one tool call, with the hash of what that call asked (its tool and
    arguments, as canonical JSON): the same key with other arguments is another call, refused."""

    key: str
    request_hash: str

    @classmethod
    def of(cls, key: str, tool: str, arguments: dict[str, Any]) -> IdempotencyKey:
        canonical = json.dumps([tool, arguments], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return cls(key, hashlib.sha256(canonical.encode()).hexdigest())


def iso_time(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
