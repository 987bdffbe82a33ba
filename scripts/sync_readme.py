"""Regenerate the README's generated tables: tools (from the manifests) and settings (from the
settings fields and the provider registry). tests/test_cli.py checks both are current.

Usage: python scripts/sync_readme.py
"""

from __future__ import annotations

import re
from pathlib import Path

from mcp_audio.catalog import load_catalog
from mcp_audio.config import settings_markdown
from mcp_audio.server.resources import tools_markdown

README = Path(__file__).parent.parent / "README.md"
text = README.read_text()
for marker, table in (("tools", tools_markdown(load_catalog())), ("settings", settings_markdown())):
    marked = re.compile(rf"(<!-- {marker}:start -->\n).*?(<!-- {marker}:end -->)", re.S)
    text = marked.sub(lambda m, table=table: m[1] + table + m[2], text)
README.write_text(text)
