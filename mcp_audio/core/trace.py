"""Which job a piece of work is for, and the OpenTelemetry trace it belongs to: context variables
that the runner sets for a job's follower, the log formatter reads (job_id, traceparent fields)
and the providers send on as a `traceparent` header. Values only: no tracing library."""

from __future__ import annotations

import re
from contextvars import ContextVar
from dataclasses import dataclass

__all__ = ["TRACEPARENT_META", "JobContext", "current_job", "valid_traceparent"]

TRACEPARENT_META = "traceparent"  # the key in a request's `_meta` (the MCP convention for W3C trace context)
# W3C Trace Context, version 00: 00-<trace id>-<parent id>-<flags>; all-zero ids are invalid.
_TRACEPARENT = re.compile(r"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")


@dataclass(frozen=True)
class JobContext:
    job_id: str | None = None
    traceparent: str | None = None


# Set by the runner in each job's follower task (and by a tool call while it starts its job).
current_job: ContextVar[JobContext] = ContextVar("mcp_audio_job", default=JobContext())  # noqa: B039 (frozen)


def valid_traceparent(value: object) -> str | None:
    """The value when it is a W3C traceparent (`00-<32 hex>-<16 hex>-<2 hex>`), else None: a
    client's malformed or foreign value is ignored, never stored or sent on."""
    return value if isinstance(value, str) and _TRACEPARENT.fullmatch(value) else None
