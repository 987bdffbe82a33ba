"""Values and rules with no I/O: errors, the upstream table, the manifest format, jobs, results,
voices, media types, prices, redaction. Imports nothing else of mcp_audio; stdlib and pydantic only.

Import from the module that defines a name (`mcp_audio.core.errors`, `mcp_audio.core.job`, ...).
"""

__all__ = ["errors", "job", "manifest", "media", "pricing", "redaction", "results", "upstreams", "voices"]
