"""The MCP face: tools, resources, prompts, completions, tasks, subscriptions and the in-chat
player, built on the official SDK around the job engine (`mcp_audio.jobs`).

Entry point: `build_server(settings, catalog=None, transport=..., pacing=None)`.
"""

from mcp_audio.server.app import INSTRUCTIONS, build_server

__all__ = ["INSTRUCTIONS", "build_server"]
