"""What a tool call carries beside its arguments, read from the request's `_meta` (any transport)
and, over HTTP, its headers: the caller's idempotency key, and its OpenTelemetry trace.

Both are client input: a value that does not fit is refused with the field named, never used.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mcp_audio.core.errors import InvalidArguments
from mcp_audio.core.trace import TRACEPARENT_META, valid_traceparent

__all__ = ["IDEMPOTENCY_HEADER", "IDEMPOTENCY_META", "idempotency_key", "traceparent"]

IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_META = "io.mcp-audio/idempotency-key"
# Visible ASCII, as the IETF draft's examples and the usual UUIDs; bounded, since it is stored.
_KEY = re.compile(r"[\x21-\x7e]{1,255}")


def idempotency_key(meta: Mapping[str, Any] | None, headers: Mapping[str, str] | None) -> str | None:
    """The call's idempotency key: `_meta` or the HTTP header (the same value when both are
    given); None when neither is. InvalidArguments names the field when a key does not fit."""
    from_meta = (meta or {}).get(IDEMPOTENCY_META)
    from_header = headers.get(IDEMPOTENCY_HEADER) if headers is not None else None
    given = ((f"_meta[{IDEMPOTENCY_META!r}]", from_meta), (f"the {IDEMPOTENCY_HEADER} header", from_header))
    for where, value in given:
        if value is not None and not (isinstance(value, str) and _KEY.fullmatch(value)):
            raise InvalidArguments(
                f"{where}: got {repr(value)[:80]}; an idempotency key is 1 to 255 visible ASCII characters "
                "(letters, digits, punctuation; a UUID is a good one)."
            )
    if from_meta is not None and from_header is not None and from_meta != from_header:
        raise InvalidArguments(
            f"The {IDEMPOTENCY_HEADER} header and _meta[{IDEMPOTENCY_META!r}] name different keys; send one."
        )
    key = from_meta if from_meta is not None else from_header
    return str(key) if key is not None else None


def traceparent(meta: Mapping[str, Any] | None) -> str | None:
    """The W3C `traceparent` in the request's `_meta` (OpenTelemetry's MCP convention); a value
    not in the W3C format is ignored, as the spec asks of a receiver."""
    return valid_traceparent((meta or {}).get(TRACEPARENT_META))
