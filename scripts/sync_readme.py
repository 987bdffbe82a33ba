"""Regenerate the README's tool table from the manifests (tests/test_cli.py checks it is current).

Usage: python scripts/sync_readme.py
"""

from __future__ import annotations

import re
from pathlib import Path

from mcp_audio.catalog import load_catalog
from mcp_audio.resources import tools_markdown

README = Path(__file__).parent.parent / "README.md"
text = README.read_text()
table = tools_markdown(load_catalog())
marked = re.compile(r"(<!-- tools:start -->\n).*?(<!-- tools:end -->)", re.S)
README.write_text(marked.sub(lambda m: m[1] + table + m[2], text))
