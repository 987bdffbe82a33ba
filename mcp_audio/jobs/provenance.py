"""What a job's saved files say made them (C2PA Content Credentials, written by the output saver:
files/marking.py). Decided here, in one place, from what the job layer knows: a remote
upstream's outputs were created by its model (upstream + endpoint); a local tool's (join, mix,
master, trim, and any other local endpoint with file inputs) are an edit of every input file,
each kept as an ingredient with its own credentials, a caller's own file marked as captured.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from mcp_audio.catalog import Capability
from mcp_audio.files.marking import Origin
from mcp_audio.files.references import is_reference
from mcp_audio.providers.base import LocalFile, UpstreamRequest

if TYPE_CHECKING:  # the signing code loads at the first save, not at start-up
    from mcp_audio.files.provenance import Ingredient

__all__ = ["edit_origin", "origin_for"]


def origin_for(capability: Capability, endpoint: str, request: UpstreamRequest | None) -> Origin | None:
    """What made the files of a job of `capability` at `endpoint`; None: nothing to state (a
    local tool without file inputs). `request` is None for a job resumed after a restart."""
    if not capability.upstream.local:
        return Origin.generated(capability.provider, endpoint)
    inputs = request.local_files() if request is not None else []
    return edit_origin(inputs, endpoint) if inputs else None


def edit_origin(parts: Sequence[LocalFile | Path], operation: str) -> Origin:
    """An edit (`operation`: "join", "production"...) of `parts` in order, for the saver's
    `origin=`. A LocalFile given as a files:// or jobs:// reference is an earlier output (its own
    credentials say what it is); any other input is the caller's own recording (captured).
    A bare Path is an earlier output of this server (not captured)."""
    return Origin.edit([_ingredient(part) for part in parts], operation)


def _ingredient(part: LocalFile | Path) -> Ingredient:
    from mcp_audio.files.provenance import Ingredient

    if isinstance(part, Path):
        return Ingredient(part)
    # The title is a name, never a local path (the manifest travels with the file).
    name = part.source if is_reference(part.source) else Path(unquote(urlsplit(part.source).path)).name
    return Ingredient(part.path, title=(name or part.field)[:200], captured=not is_reference(part.source))
