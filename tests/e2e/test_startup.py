"""What importing a part of the server loads, measured in a fresh interpreter: start-up stays light
and the layers stay apart at run time, not only in the import contract."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mcp_audio.catalog import load_catalog
from mcp_audio.core.upstreams import REMOTE
from tests.helpers import HANDSHAKE, stop


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


# Loaded by the time a stdio server has answered tools/list, they would cost every start: each is
# loaded at the first call that needs it (upstream HTTP, uploads, fetches, PostgreSQL, provenance,
# the audio stack, S3, metrics, HTTP serving), and the manifests come from their parsed cache.
NOT_AT_START = (
    "httpx", "httpcore", "h11", "certifi", "httpx_sse", "fal_client", "tomllib", "psycopg", "psycopg_pool",
    "c2pa", "numpy", "scipy", "av", "pyloudnorm", "mutagen", "srt", "webvtt", "boto3", "botocore",
    "prometheus_client", "tqdm", "mcp_audio.net", "mcp_audio.files.guarded",
    "mcp_audio.providers.fal", "mcp_audio.providers.voice_api", "mcp_audio.providers.eigen",
    "mcp_audio.post", "mcp_audio.deploy", "mcp_audio.sandbox", "mcp_audio.doctor",
)  # fmt: skip
# Loaded at start by the SDK itself (a bare SDK server loads them too), not by anything of ours.
SDK_LOADS = ("uvicorn", "starlette", "sse_starlette", "rich", "urllib.request")

# Runs the server with a SIGUSR1 handler that writes its loaded modules and garbage collector state
# to a file (argv[1]).
_WITH_MODULE_DUMP = """
import gc, json, os, signal, sys
out = sys.argv.pop(1)
def dump(*_):
    with open(out + ".tmp", "w") as f:
        json.dump({"modules": sorted(sys.modules), "collecting": gc.isenabled(), "frozen": gc.get_freeze_count()}, f)
    os.replace(out + ".tmp", out)
signal.signal(signal.SIGUSR1, dump)
"""
_OURS = "from mcp_audio.cli import main\nsys.argv[1:] = []\nraise SystemExit(main())\n"
_BARE = """
from mcp.server import MCPServer
server = MCPServer("bare")
@server.tool()
def hello(name: str) -> str:
    '''Say hello.'''
    return name
server.run("stdio")
"""


def _state_after_tools_list(server: str, out: Path, env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _WITH_MODULE_DUMP + server, str(out)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        for message in (*HANDSHAKE, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}):
            proc.stdin.write(json.dumps(message) + "\n")
        proc.stdin.flush()
        answers = [json.loads(proc.stdout.readline()) for _ in range(2)]
        assert [a.get("id") for a in answers] == [1, 2] and answers[1]["result"]["tools"]
        proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 30
        while not out.exists():
            assert time.monotonic() < deadline, "the server wrote no module list"
            time.sleep(0.05)
        state: dict[str, Any] = json.loads(out.read_text())
        return state
    finally:
        stop(proc)


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="POSIX signals")
def test_a_stdio_server_answers_tools_list_without_loading_what_only_calls_need(tmp_path: Path) -> None:
    load_catalog()  # the shipped manifests' parsed cache exists, as after any earlier start
    drop = {upstream.key_env for upstream in REMOTE.values()}
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_AUDIO_") and k not in drop}
    env.update(MCP_AUDIO_DATA_DIR=str(tmp_path / "data"), FAL_KEY="startup-test-key")
    state = _state_after_tools_list(_OURS, tmp_path / "ours.json", env)
    ours = set(state["modules"])
    assert "mcp_audio.server.app" in ours  # the dump is of a server that answered
    # Collection is back on, with the start-up heap set aside (cli.py): not scanned in tools/list.
    assert state["collecting"] and state["frozen"] > 10_000
    assert sorted(m for m in ours for heavy in NOT_AT_START if m == heavy or m.startswith(heavy + ".")) == []
    bare = set(_state_after_tools_list(_BARE, tmp_path / "bare.json", env)["modules"])
    assert sorted(m for m in SDK_LOADS if m in ours and m not in bare) == []
