"""Manifests as parsed TOML, kept as JSON beside them (`__pycache__/manifests.json`), each file's
entry keyed by the SHA-256 of its bytes: parsing the TOML cost ~40 ms of every start, reading the
JSON ~1 ms. A stale, missing, damaged or unwritable cache only means parsing again; what is parsed
is validated as before (`load.py`), so the cache never changes what a manifest says."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

__all__ = ["CACHE_NAME", "parsed_manifests"]

CACHE_NAME = "manifests.json"

log = logging.getLogger("mcp_audio.catalog")


def parsed_manifests(paths: list[Path]) -> list[tuple[Path, dict[str, Any] | ValueError]]:
    """Each path with its parsed TOML, or the `tomllib.TOMLDecodeError` parsing it raised."""
    if not paths:
        return []
    cache_path = paths[0].parent / "__pycache__" / CACHE_NAME
    cached = _read(cache_path)
    fresh: dict[str, dict[str, Any]] = {}
    results: list[tuple[Path, dict[str, Any] | ValueError]] = []
    for path in paths:
        text = path.read_text("utf-8")
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        entry = cached.get(path.name)
        if isinstance(entry, dict) and entry.get("sha256") == digest and isinstance(entry.get("data"), dict):
            fresh[path.name] = entry
            results.append((path, entry["data"]))
            continue
        import tomllib  # only for a changed manifest: parsing is the cost this module saves

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            results.append((path, exc))
            continue
        if _json_safe(data):  # a TOML date or nan has no exact JSON form: such a file is parsed each time
            fresh[path.name] = {"sha256": digest, "data": data}
        results.append((path, data))
    if fresh.keys() != cached.keys() or any(fresh[name] is not cached[name] for name in fresh):
        _write(cache_path, fresh)
    return results


def _json_safe(data: dict[str, Any]) -> bool:
    try:
        return bool(json.loads(json.dumps(data)) == data)
    except (TypeError, ValueError):
        return False


def _read(cache_path: Path) -> dict[str, Any]:
    try:
        cached = json.loads(cache_path.read_bytes())
    except (OSError, ValueError):
        return {}
    return cached if isinstance(cached, dict) else {}


def _write(cache_path: Path, entries: dict[str, dict[str, Any]]) -> None:
    """Written whole under a temporary name, then renamed: a reader never sees half a file."""
    temporary = cache_path.with_name(f".{CACHE_NAME}.{os.getpid()}.tmp")
    try:
        cache_path.parent.mkdir(exist_ok=True)
        temporary.write_text(json.dumps(entries, separators=(",", ":")), "utf-8")
        os.replace(temporary, cache_path)
    except OSError as exc:  # a read-only install: parse each time, as before the cache
        log.debug("manifest cache not written (%s): %s", cache_path, exc)
        with contextlib.suppress(OSError):
            temporary.unlink()
