"""MCP Apps views (SEP-1865) this server ships: self-contained HTML served as ui:// resources."""

from __future__ import annotations

from importlib.resources import files

PLAYER_URI = "ui://mcp-audio/player"
MIME_TYPE = "text/html;profile=mcp-app"


def player_html() -> str:
    """The in-chat audio player: one HTML file with its CSS and JS inline."""
    return files("mcp_audio.server").joinpath("player.html").read_text(encoding="utf-8")
