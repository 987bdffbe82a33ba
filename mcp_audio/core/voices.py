"""A cloned voice saved by name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["SavedVoice"]


@dataclass(frozen=True)
class SavedVoice:
    """A cloned voice saved by name, with the upstream values that select it."""

    name: str
    family: str
    provider: str
    fields: dict[str, Any]
