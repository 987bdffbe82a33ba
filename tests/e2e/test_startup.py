"""What importing a part of the server loads, measured in a fresh interpreter: start-up stays light
and the layers stay apart at run time, not only in the import contract."""

from __future__ import annotations

import json
import subprocess
import sys


def _loaded_after(statement: str, modules: tuple[str, ...]) -> list[str]:
    code = f"import sys, json; {statement}; print(json.dumps(sorted(m for m in {modules!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded: list[str] = json.loads(out.stdout)
    return loaded


def test_importing_the_server_does_not_load_the_audio_stack() -> None:
    statement = "import mcp_audio.server, mcp_audio.post, mcp_audio.post.subtitles"
    assert _loaded_after(statement, ("av", "numpy")) == []


def test_importing_the_store_loads_neither_the_catalog_nor_the_mcp_protocol() -> None:
    modules = ("mcp_audio.catalog", "mcp_audio.core.manifest", "mcp_types", "mcp", "httpx")
    assert _loaded_after("import mcp_audio.store", modules) == []
