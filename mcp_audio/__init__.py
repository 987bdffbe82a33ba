"""mcp-audio: an MCP server that gives AI agents typed audio tools (speech, transcription,
music, sound effects, editing) backed by queued upstream models."""

__version__ = "0.1.0"
