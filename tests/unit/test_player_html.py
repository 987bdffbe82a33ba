"""The player view ships inside the package as one self-contained HTML file (checked without a browser)."""

from __future__ import annotations

import re

from mcp_audio.server.player import MIME_TYPE, PLAYER_URI, player_html


def test_player_is_one_self_contained_html_file() -> None:
    html = player_html()
    assert html.lstrip().lower().startswith("<!doctype html>")
    assert len(html.encode()) < 40_000
    # Hosts sandbox the view with a CSP that allows no other origin: nothing may be fetched from elsewhere.
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=|@import|url\(", html, re.I)
    assert set(re.findall(r"https?://[^\s\"')]+", html)) <= {"http://www.w3.org/2000/svg"}
    assert PLAYER_URI == "ui://mcp-audio/player"
    assert MIME_TYPE == "text/html;profile=mcp-app"


def test_player_speaks_the_mcp_apps_methods() -> None:
    html = player_html()
    for method in (
        "ui/initialize",
        "ui/notifications/initialized",
        "ui/notifications/tool-input",
        "ui/notifications/tool-result",
        "ui/notifications/host-context-changed",
        "ui/notifications/size-changed",
        "ui/resource-teardown",
        "tools/call",
        "resources/read",
    ):
        assert f'"{method}"' in html, method
    assert '"2026-01-26"' in html
