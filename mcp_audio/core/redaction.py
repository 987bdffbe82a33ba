"""Keep secrets out of everything we say: tool results, errors, logs."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

MASK = "[redacted]"


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    return text


def redact_json(value: Any, secrets: Iterable[str]) -> Any:
    """`value` with every secret masked in every string it holds (keys and values alike)."""
    secrets = list(secrets)
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, list):
        return [redact_json(item, secrets) for item in value]
    if isinstance(value, dict):
        return {redact(str(key), secrets): redact_json(item, secrets) for key, item in value.items()}
    return value


class RedactingFilter(logging.Filter):
    """A logging filter that masks the configured secrets in every record it passes."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            record.msg = redact(record.getMessage(), self._secrets)
            record.args = None
        return True
