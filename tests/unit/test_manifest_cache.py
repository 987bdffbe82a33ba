"""The parsed-manifest cache (catalog/parsed.py): a catalog read through it is the catalog the
TOML says, whatever state the cache is in."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest

from mcp_audio.catalog import Catalog, load_catalog, manifests_dir
from mcp_audio.catalog.parsed import CACHE_NAME
from mcp_audio.core.errors import ManifestError


def _copy_manifests(tmp_path: Path) -> Path:
    directory = tmp_path / "manifests"
    directory.mkdir()
    for path in manifests_dir().glob("*.toml"):
        shutil.copy(path, directory / path.name)
    return directory


def _specs(catalog: Catalog) -> dict[str, object]:
    return {
        "tools": {name: cap.spec.model_dump() for name, cap in catalog.capabilities.items()},
        "voices": {name: family.model_dump() for name, family in catalog.voice_families.items()},
        "examples": [example.model_dump() for example in catalog.examples],
    }


def _cache(directory: Path) -> dict[str, dict[str, object]]:
    cached: dict[str, dict[str, object]] = json.loads((directory / "__pycache__" / CACHE_NAME).read_text())
    return cached


def test_a_catalog_read_from_the_cache_is_the_one_the_toml_gives(tmp_path: Path) -> None:
    directory = _copy_manifests(tmp_path)
    first = load_catalog(directory)  # parses the TOML and writes the cache
    cached = _cache(directory)
    assert set(cached) == {path.name for path in directory.glob("*.toml")}
    assert all(cached[p.name]["data"] == tomllib.loads(p.read_text()) for p in directory.glob("*.toml"))
    assert _specs(load_catalog(directory)) == _specs(first)


def test_a_changed_manifest_is_read_again_and_a_removed_one_leaves_the_cache(tmp_path: Path) -> None:
    directory = _copy_manifests(tmp_path)
    load_catalog(directory)
    path = directory / "kokoro.toml"
    path.write_text(path.read_text().replace('"Text to speak"', '"Text to speak (changed since cached)"'))
    kokoro = load_catalog(directory).get("kokoro_tts")
    assert kokoro is not None
    assert "Text to speak (changed since cached)" in [item.description for item in kokoro.spec.inputs]
    (directory / "audio-understanding.toml").unlink()  # in no family (families.toml)
    assert "audio_understanding" not in load_catalog(directory).capabilities
    assert "audio-understanding.toml" not in _cache(directory)


@pytest.mark.parametrize("damage", [b"", b"{not json", b"[1, 2]", b'{"kokoro.toml": {"sha256": 1, "data": []}}'])
def test_a_damaged_cache_is_parsed_past_and_rewritten(tmp_path: Path, damage: bytes) -> None:
    directory = _copy_manifests(tmp_path)
    expected = _specs(load_catalog(directory))
    (directory / "__pycache__" / CACHE_NAME).write_bytes(damage)
    assert _specs(load_catalog(directory)) == expected
    assert "kokoro.toml" in _cache(directory)


def test_a_cache_that_cannot_be_written_changes_nothing(tmp_path: Path) -> None:
    directory = _copy_manifests(tmp_path)
    (directory / "__pycache__").write_text("a file where the cache folder would go")
    assert _specs(load_catalog(directory)) == _specs(load_catalog(manifests_dir()))
    assert not list(directory.glob("__pycache__/*")) and not list(directory.glob(".*.tmp"))


def test_a_file_that_is_not_toml_is_reported_every_time_and_never_cached(tmp_path: Path) -> None:
    directory = _copy_manifests(tmp_path)
    (directory / "syntax.toml").write_text("provider = \n")
    for _ in range(2):
        with pytest.raises(ManifestError) as caught:
            load_catalog(directory)
        assert "syntax.toml: not valid TOML" in "\n".join(caught.value.problems)
    assert "syntax.toml" not in _cache(directory)
