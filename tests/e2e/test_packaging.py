"""Published-server packaging: the MCP Registry server.json, the MCPB desktop bundle, and `uvx`.

The tests that need an outside tool skip, with one line saying how to install it, when it is
missing: the `mcpb` CLI (npm package @anthropic-ai/mcpb; found via $MCPB_BIN, PATH or
node_modules/.bin) and uv (`pip install uv`; found on PATH or next to this Python). Those that
run uv reach the package index the same way pip does here (pip's configured indexes are mapped
to uv's variables).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from jsonschema import Draft7Validator  # type: ignore[import-untyped]

import mcp_audio
from mcp_audio.config import ENV_NAMES, Settings
from mcp_audio.core.upstreams import REMOTE

ROOT = Path(__file__).parent.parent.parent
SERVER_JSON = ROOT / "server.json"
MCPB_MANIFEST = ROOT / "mcpb" / "manifest.json"
BUILD_MCPB = ROOT / "scripts" / "build_mcpb.py"
SCHEMA_URL = "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"
# The variables the providers read their keys from: what both packagings must offer.
KEY_ENVS = {upstream.key_env for upstream in REMOTE.values()}
MCPB_INSTALL = "npm install -g @anthropic-ai/mcpb@2.1.2 (or set MCPB_BIN)"
UV_INSTALL = "pip install uv"

# The parts of the 2025-12-11 server.json schema (definitions ServerDetail, Package,
# KeyValueInput/Input, StdioTransport) that constrain what this server.json uses, transcribed by
# hand: the tests run offline, so the published schema is not fetched.
_INPUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "description": {"type": "string"},
        "format": {"type": "string", "enum": ["string", "number", "boolean", "filepath"]},
        "isRequired": {"type": "boolean"},
        "isSecret": {"type": "boolean"},
        "default": {"type": "string"},
        "placeholder": {"type": "string"},
        "value": {"type": "string"},
        "choices": {"type": "array", "items": {"type": "string"}},
    },
}
REGISTRY_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["name", "description", "version"],
    "properties": {
        "$schema": {"type": "string", "format": "uri"},
        "name": {"type": "string", "minLength": 3, "maxLength": 200, "pattern": "^[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+$"},
        "title": {"type": "string", "minLength": 1, "maxLength": 100},
        "description": {"type": "string", "minLength": 1, "maxLength": 100},
        "version": {"type": "string", "maxLength": 255},
        "websiteUrl": {"type": "string", "format": "uri"},
        "packages": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["registryType", "identifier", "transport"],
                "properties": {
                    "registryType": {"type": "string"},
                    "registryBaseUrl": {"type": "string", "format": "uri"},
                    "identifier": {"type": "string"},
                    "version": {"type": "string", "minLength": 1, "maxLength": 255, "not": {"const": "latest"}},
                    "runtimeHint": {"type": "string"},
                    "transport": {
                        "type": "object",
                        "required": ["type"],
                        "properties": {"type": {"type": "string", "enum": ["stdio"]}},
                    },
                    "environmentVariables": {
                        "type": "array",
                        "items": {
                            "allOf": [
                                _INPUT,
                                {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
                            ]
                        },
                    },
                },
            },
        },
    },
}
# The registry rejects version ranges ('^1.2.3', '~1.2.3', '>=1.2.3', '1.x', '1.*').
VERSION_RANGE = re.compile(r"^[\^~<>=]|\.[x*](\.|$)|[*]")


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def cli_version() -> str:
    """The version `mcp-audio --version` prints."""
    proc = subprocess.run(
        [sys.executable, "-m", "mcp_audio", "--version"], capture_output=True, text=True, timeout=60, check=True
    )
    name, version = proc.stdout.split()
    assert name == "mcp-audio"
    return version


def build_mcpb_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_mcpb", BUILD_MCPB)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mcpb_cli() -> str:
    found: str | None = build_mcpb_module().find_mcpb()
    if found is None:
        pytest.skip(f"mcpb CLI not found; install it with: {MCPB_INSTALL}")
    return found


def uv_tool(name: str) -> str:
    """`uv` or `uvx`: on PATH, else beside this interpreter (a venv's bin/)."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip(f"{name} not found; install it with: {UV_INSTALL}")
    return found


def pip_settings() -> dict[str, str]:
    """pip's configuration as `pip config list` shows it: option -> value (global section first)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60, check=False
    )
    found: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition("=")
        section, _, option = key.rpartition(".")
        if option and (option not in found or section == "global"):
            found[option] = value.strip().strip("'\"")
    return found


def uv_env(cache: Path) -> dict[str, str]:
    """The environment for uv: its own cache, and pip's indexes/find-links where uv has none set."""
    env = dict(os.environ, UV_CACHE_DIR=str(cache), UV_NO_PROGRESS="1")
    pip = pip_settings()

    def setting(option: str) -> str | None:
        return os.environ.get("PIP_" + option.upper().replace("-", "_")) or pip.get(option)

    index, extra, links, cert = (setting(o) for o in ("index-url", "extra-index-url", "find-links", "cert"))
    if index and not {"UV_DEFAULT_INDEX", "UV_INDEX_URL"} & env.keys():
        env["UV_DEFAULT_INDEX"] = index
    if extra and not {"UV_INDEX", "UV_EXTRA_INDEX_URL"} & env.keys():
        env["UV_INDEX"] = " ".join(extra.split())
        env.setdefault("UV_INDEX_STRATEGY", "unsafe-best-match")  # pip's rule: best version across indexes
    if links and "UV_FIND_LINKS" not in env:
        env["UV_FIND_LINKS"] = ",".join(links.split())
    if cert and "SSL_CERT_FILE" not in env:
        env["SSL_CERT_FILE"] = cert
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel `pip wheel . --no-deps` builds from this checkout."""
    wheels = tmp_path_factory.mktemp("wheels")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(wheels)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    [built] = wheels.glob("mcp_audio-*.whl")
    return built


@pytest.fixture(scope="module")
def uv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("uv-cache")


# --- server.json (MCP Registry) -------------------------------------------------------------


def test_server_json_fits_the_registry_schema() -> None:
    server = load(SERVER_JSON)
    assert server["$schema"] == SCHEMA_URL
    errors = [f"{list(e.path)}: {e.message}" for e in Draft7Validator(REGISTRY_SCHEMA).iter_errors(server)]
    assert errors == []
    assert server["name"].startswith("io.github.")  # a namespace the registry verifies by GitHub login
    assert not VERSION_RANGE.search(server["version"])
    # The transcription rejects what the registry rejects.
    for broken in ({"name": "mcp-audio"}, {"description": "x" * 101}, {"packages": [{"registryType": "pypi"}]}):
        assert list(Draft7Validator(REGISTRY_SCHEMA).iter_errors(server | broken)), broken


def test_server_json_describes_this_pypi_release() -> None:
    server = load(SERVER_JSON)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert server["version"] == mcp_audio.__version__ == cli_version()
    [package] = server["packages"]
    assert package["registryType"] == "pypi"
    assert package["identifier"] == project["name"] == "mcp-audio"
    assert package["version"] == mcp_audio.__version__
    assert package["transport"] == {"type": "stdio"}
    assert package.get("runtimeHint", "uvx") == "uvx"
    variables = {var["name"]: var for var in package["environmentVariables"]}
    assert set(variables) == KEY_ENVS <= set(ENV_NAMES.values())
    for name, var in variables.items():
        assert var["isSecret"] is True and var["isRequired"] is False, name
        assert len(var["description"]) > 20, name


def test_readme_and_wheel_metadata_carry_the_registry_ownership_line(wheel: Path) -> None:
    # The registry proves the PyPI package is ours by finding this line in its description,
    # which is the README as the wheel's METADATA carries it.
    line = f"mcp-name: {load(SERVER_JSON)['name']}"
    assert line in (ROOT / "README.md").read_text(), f"README.md lacks the line '{line}'"
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(f"mcp_audio-{mcp_audio.__version__}.dist-info/METADATA").decode()
    assert line in metadata


# --- MCPB desktop bundle --------------------------------------------------------------------


def test_mcpb_manifest_is_current() -> None:
    """mcpb/manifest.json is what scripts/build_mcpb.py writes now (version, settings, tool list)."""
    proc = subprocess.run(
        [sys.executable, str(BUILD_MCPB), "--check"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr


def test_mcpb_manifest_passes_keys_from_sensitive_optional_strings() -> None:
    manifest = load(MCPB_MANIFEST)
    assert manifest["version"] == mcp_audio.__version__
    assert manifest["manifest_version"] == "0.4"
    server = manifest["server"]
    assert server["type"] == "uv"
    assert (ROOT / server["entry_point"]).is_file()
    config = server["mcp_config"]
    assert config["command"] == "uv"
    assert config["args"] == ["run", "--directory", "${__dirname}", "mcp-audio", "serve"]
    env: dict[str, str] = config["env"]
    assert set(env) == KEY_ENVS
    user_config: dict[str, Any] = manifest["user_config"]
    used = set()
    for name, value in env.items():
        match = re.fullmatch(r"\$\{user_config\.(\w+)\}", value)
        assert match, (name, value)
        option = user_config[match[1]]
        used.add(match[1])
        assert option["type"] == "string"
        assert option["sensitive"] is True and option["required"] is False
        assert option["title"] and name in option["description"]
    assert used == set(user_config)
    # The keys the server's settings read under these names.
    assert {ENV_NAMES[key] for key in user_config} == KEY_ENVS
    assert set(user_config) <= set(Settings.model_fields)


def test_mcpb_validate_accepts_the_manifest_and_rejects_a_broken_one(tmp_path: Path) -> None:
    mcpb = mcpb_cli()
    proc = subprocess.run([mcpb, "validate", str(MCPB_MANIFEST)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "validation passes" in proc.stdout
    broken = load(MCPB_MANIFEST)
    broken["user_config"]["fal_key"]["type"] = "secret"
    (tmp_path / "manifest.json").write_text(json.dumps(broken))
    rejected = subprocess.run(
        [mcpb, "validate", str(tmp_path / "manifest.json")], capture_output=True, text=True, timeout=120
    )
    assert rejected.returncode != 0


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle packed by scripts/build_mcpb.py --pack with the mcpb CLI."""
    mcpb = mcpb_cli()
    out = tmp_path_factory.mktemp("mcpb") / "mcp-audio.mcpb"
    proc = subprocess.run(  # --check: pack the committed manifest, fail if it is stale, write nothing
        [sys.executable, str(BUILD_MCPB), "--check", "--pack", "--out", str(out)],
        env=dict(os.environ, MCPB_BIN=mcpb),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"packed {out}" in proc.stdout
    return out


def test_mcpb_pack_bundles_the_manifest_project_and_tool_manifests(packed: Path) -> None:
    with zipfile.ZipFile(packed) as bundle:
        names = set(bundle.namelist())
        assert json.loads(bundle.read("manifest.json")) == load(MCPB_MANIFEST)
        assert bundle.read("pyproject.toml") == (ROOT / "pyproject.toml").read_bytes()
    assert {"README.md", "mcp_audio/__main__.py", "mcp_audio/cli.py"} <= names
    assert {f"manifests/{p.name}" for p in (ROOT / "manifests").glob("*.toml")} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or n.startswith((".venv", "tests/"))]


def test_packed_bundle_serves_its_tools_as_the_host_starts_it(packed: Path, tmp_path: Path, uv_cache: Path) -> None:
    """Unpack, resolve mcp_config as a desktop host does (no keys given), speak MCP over stdio."""
    uv = uv_tool("uv")
    home = tmp_path / "installed"
    with zipfile.ZipFile(packed) as bundle:
        bundle.extractall(home)
    manifest = load(home / "manifest.json")
    config = manifest["server"]["mcp_config"]

    def resolve(value: str) -> str:
        return re.sub(r"\$\{user_config\.\w+\}", "", value.replace("${__dirname}", str(home)))

    env = uv_env(uv_cache) | {name: resolve(value) for name, value in config["env"].items()}
    env |= {"MCP_AUDIO_DATA_DIR": str(tmp_path / "data"), "MCP_AUDIO_OUTPUT_DIR": str(tmp_path / "out")}
    command = [uv if config["command"] == "uv" else config["command"], *map(resolve, config["args"])]
    messages = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
    ]
    proc = subprocess.Popen(
        command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        proc.stdin.write("".join(json.dumps(m) + "\n" for m in messages))
        proc.stdin.flush()
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        proc.stdin.close()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        errors = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    assert all(line.startswith("{") for line in lines), (lines, errors[-3000:])
    initialized, listed = map(json.loads, lines)
    assert initialized["result"]["serverInfo"]["version"] == manifest["version"], errors
    assert [tool["name"] for tool in listed["result"]["tools"]] == [tool["name"] for tool in manifest["tools"]]


# --- uvx from the built wheel ---------------------------------------------------------------


def test_uvx_runs_the_built_wheel(wheel: Path, tmp_path: Path, uv_cache: Path) -> None:
    uvx = uv_tool("uvx")
    assert wheel.name.startswith(f"mcp_audio-{mcp_audio.__version__}-")
    proc = subprocess.run(
        [uvx, "--from", str(wheel), "mcp-audio", "--version"],
        env=uv_env(uv_cache),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"mcp-audio {mcp_audio.__version__}"
