"""Write the MCPB desktop-bundle manifest (mcpb/manifest.json) and, with --pack, pack a bundle.

The bundle is a `uv` server (MCPB manifest 0.4): it carries this project's pyproject.toml and
sources, and the desktop host runs `uv run --directory <bundle> mcp-audio serve`, so uv installs
the dependencies for the user's platform (pydantic-core and cryptography are compiled, so a
`python` bundle with vendored server/lib would be per-platform). The three API keys are optional
sensitive strings the host asks for and hands to the server as FAL_KEY, VOICE_API_KEY and
EIGEN_API_KEY.

Usage:
  python scripts/build_mcpb.py            # (re)write mcpb/manifest.json
  python scripts/build_mcpb.py --check    # exit 1 if mcpb/manifest.json is not current
  python scripts/build_mcpb.py --pack [--out dist/mcp-audio-X.Y.Z.mcpb]
                                          # write it, stage the bundle, run `mcpb validate` and `mcpb pack`
  python scripts/build_mcpb.py --check --pack [--out ...]
                                          # pack the committed manifest (fails if it is not current)

The `mcpb` CLI (npm package @anthropic-ai/mcpb) is found through $MCPB_BIN, then PATH, then
node_modules/.bin in the repository.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "mcpb" / "manifest.json"
MANIFEST_VERSION = "0.4"  # the first MCPB manifest version with `server.type: "uv"`
# What the bundle carries: enough for uv to build and run the project.
BUNDLED = ("pyproject.toml", "README.md", "mcp_audio", "manifests")
# user_config key -> (environment variable, title, which tools it enables)
KEYS: dict[str, tuple[str, str, str]] = {
    "fal_key": (
        "FAL_KEY",
        "fal.ai API key",
        "the fal-backed tools (most speech, music, sound-effect and transcription models)",
    ),
    "voice_api_key": (
        "VOICE_API_KEY",
        "Voice API key",
        "the Voice API tools (multi-speaker TTS, transcription, voice cloning)",
    ),
    "eigen_api_key": (
        "EIGEN_API_KEY",
        "Eigen AI API key",
        "the Eigen AI tools (Higgs Audio, ChatterBox, Qwen3-TTS, Whisper)",
    ),
}
INSTALL_HINT = "npm install -g @anthropic-ai/mcpb (or set MCPB_BIN to its `mcpb` executable)"


def find_mcpb() -> str | None:
    """The `mcpb` executable: $MCPB_BIN, else `mcpb` on PATH, else node_modules/.bin/mcpb here."""
    explicit = os.environ.get("MCPB_BIN")
    if explicit:
        return explicit if Path(explicit).is_file() else shutil.which(explicit)
    on_path = shutil.which("mcpb")
    if on_path:
        return on_path
    local = ROOT / "node_modules" / ".bin" / "mcpb"
    return str(local) if local.is_file() else None


async def _server_tools() -> list[dict[str, str]]:
    """The tools the stdio server lists with every toolset on, as MCP's tools/list returns them."""
    from mcp import Client

    from mcp_audio.config import Settings
    from mcp_audio.server import build_server

    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(data_dir=Path(scratch) / "data", output_dir=Path(scratch) / "out", toolsets="all")
        async with Client(build_server(settings)) as client:
            listed = (await client.list_tools()).tools
    return [{"name": tool.name, "description": tool.title or _first_line(tool.description)} for tool in listed]


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def manifest() -> dict[str, Any]:
    """The manifest, from the package's version, description, settings and tool list."""
    import mcp_audio
    from mcp_audio.config import Settings

    fields = Settings.model_fields
    return {
        "manifest_version": MANIFEST_VERSION,
        "name": "mcp-audio",
        "display_name": "mcp-audio",
        "version": mcp_audio.__version__,
        "description": "Typed audio tools for agents: speech, voice cloning, transcription, music, sound effects.",
        "long_description": " ".join((mcp_audio.__doc__ or "").split()),
        "author": {"name": "mcp-audio contributors"},
        "server": {
            "type": "uv",
            "entry_point": "mcp_audio/__main__.py",
            "mcp_config": {
                "command": "uv",
                "args": ["run", "--directory", "${__dirname}", "mcp-audio", "serve"],
                "env": {env: f"${{user_config.{key}}}" for key, (env, _, _) in KEYS.items()},
            },
        },
        "tools": asyncio.run(_server_tools()),
        "tools_generated": False,
        "keywords": ["audio", "speech", "tts", "transcription", "voice-cloning", "music", "sound-effects"],
        "license": "MIT",
        "compatibility": {
            "platforms": ["darwin", "linux", "win32"],
            "runtimes": {"python": ">=3.11"},
        },
        "user_config": {
            key: {
                "type": "string",
                "title": title,
                "description": f"{fields[key].description} Optional: it enables {enables}; "
                "without it those tools answer with an error naming the key.",
                "sensitive": True,
                "required": False,
            }
            for key, (_, title, enables) in KEYS.items()
        },
    }


def render() -> str:
    return json.dumps(manifest(), indent=2, ensure_ascii=False) + "\n"


def stage(directory: Path, text: str) -> None:
    """Lay out the bundle's files in `directory`: the manifest plus BUNDLED from the repository."""
    (directory / "manifest.json").write_text(text)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in BUNDLED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, directory / name, ignore=skip)
        else:
            shutil.copy2(source, directory / name)


def pack(text: str, out: Path, mcpb: str) -> Path:
    """Validate and pack the bundle with the official CLI; returns the .mcpb path."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        bundle = Path(scratch) / "mcp-audio"
        bundle.mkdir()
        stage(bundle, text)
        for command in ([mcpb, "validate", str(bundle / "manifest.json")], [mcpb, "pack", str(bundle), str(out)]):
            proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
            if proc.returncode != 0:
                raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return out


def main(argv: list[str] | None = None) -> int:
    import mcp_audio

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--check", action="store_true", help="fail if mcpb/manifest.json is out of date (never write it)"
    )
    parser.add_argument("--pack", action="store_true", help="also pack a .mcpb bundle with the mcpb CLI")
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / f"mcp-audio-{mcp_audio.__version__}.mcpb")
    args = parser.parse_args(argv)

    text = render()
    if args.check:
        current = MANIFEST.read_text() if MANIFEST.is_file() else ""
        if current != text:
            print(f"{MANIFEST.relative_to(ROOT)} is out of date: run python scripts/build_mcpb.py", file=sys.stderr)
            return 1
    else:
        MANIFEST.parent.mkdir(exist_ok=True)
        MANIFEST.write_text(text)
        print(f"wrote {MANIFEST.relative_to(ROOT)}")
    if args.pack:
        mcpb = find_mcpb()
        if mcpb is None:
            print(f"mcpb CLI not found: {INSTALL_HINT}", file=sys.stderr)
            return 1
        print(f"packed {pack(text, args.out, mcpb)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
