"""The one exception the audio engine raises on purpose."""

from __future__ import annotations

from mcp_audio.core.errors import McpAudioError


class PostError(McpAudioError, ValueError):
    """Bad input or impossible request: not audio, unreadable, empty, too long, wrong format.

    The message names the file (by name, not full path) and the problem, written for an agent
    to act on; the PyAV/FFmpeg exception, if any, is chained as `__cause__`.
    """
