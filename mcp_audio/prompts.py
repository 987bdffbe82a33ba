"""MCP prompts for common audio workflows. Each names the tools to use, and is offered only
when those tools are (toolsets may hide them)."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer
from pydantic import Field


def add_prompts(server: MCPServer[Any], tool_names: set[str]) -> None:
    if "qwen3_tts" in tool_names:

        @server.prompt(title="Narrate a script", description="Turn a script into narration with one voice.")
        def narrate_script(
            script: str = Field(description="The text to narrate"),
            voice: str = Field("Vivian", description="A preset (voices://qwen3-tts) or a saved cloned voice"),
        ) -> str:
            return (
                f"Narrate the script below with the qwen3_tts tool using voice '{voice}'. Split it at sentence "
                "boundaries into passages of at most about 600 characters, call qwen3_tts once per passage in "
                "order (set max_new_tokens to about 12 per second of expected speech, e.g. 1200 for a long "
                "passage), and if a call returns a job_id, wait for it with get_job. Finally list the audio "
                f"URLs in reading order.\n\nScript:\n{script}"
            )

    if "whisper_transcribe" in tool_names:

        @server.prompt(title="Transcribe and summarise", description="Transcribe a recording, then summarise it.")
        def transcribe_and_summarise(
            audio_url: str = Field(description="URL of the recording"),
            focus: str = Field("key points, decisions and action items", description="What the summary covers"),
        ) -> str:
            return (
                f"Transcribe {audio_url} with the whisper_transcribe tool (chunk_level 'segment'; set diarize "
                "true if several people speak). If it returns a job_id, wait with get_job. Then write a summary "
                f"of the {focus}, citing segment timestamps as [mm:ss] so the user can find each point."
            )

    if {"lyria2_music", "elevenlabs_sound_effect"} <= tool_names:

        @server.prompt(title="Score a scene", description="Music bed plus sound effects for a scene.")
        def score_scene(
            scene: str = Field(description="What happens in the scene, with its mood"),
        ) -> str:
            return (
                "Score this scene. First list 2-5 distinct sound effects it needs with their timing. Call "
                "lyria2_music once for a 30-second instrumental bed matching the mood (put unwanted elements in "
                "negative_prompt), and elevenlabs_sound_effect once per effect (duration_seconds 0.5-22). Wait "
                "for any job_id with get_job. Reply with a cue sheet: time, element, file URL.\n\n"
                f"Scene: {scene}"
            )
