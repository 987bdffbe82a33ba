"""MCP prompts for common audio workflows. Each names the tools to use, and is offered only
when those tools are (toolsets may hide them)."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer
from pydantic import Field

# The finishing tools an episode needs, and the tools of each earlier step, in preference order.
EPISODE_TOOLS = {"audio_join", "audio_mix", "audio_master", "transcript_subtitles"}
SPEECH_TOOLS = ("qwen3_tts", "elevenlabs_tts", "voice_api_tts", "eigen_higgs_tts")
MUSIC_TOOLS = ("lyria2_music", "cassetteai_music", "minimax_music", "ace_step_music")
TRANSCRIBE_TOOLS = ("whisper_transcribe", "elevenlabs_transcribe", "wizper_transcribe")


def _first(candidates: tuple[str, ...], tool_names: set[str], fallback: str) -> str:
    return next((name for name in candidates if name in tool_names), fallback)


def add_prompts(server: MCPServer[Any], tool_names: set[str]) -> None:
    if tool_names >= EPISODE_TOOLS:
        speech = _first(SPEECH_TOOLS, tool_names, "a text-to-speech tool")
        music = _first(MUSIC_TOOLS, tool_names, "a music tool")
        transcribe = _first(TRANSCRIBE_TOOLS, tool_names, "a transcription tool")

        @server.prompt(
            title="Produce an episode",
            description="Script to a finished, mastered episode with a music bed and subtitles.",
        )
        def produce_episode(
            topic: str = Field(description="What the episode is about, or its full script"),
            minutes: float = Field(3, description="Target length in minutes"),
            loudness_lufs: float = Field(-16, description="Loudness target (-16 podcasts, -23 broadcast)"),
        ) -> str:
            return (
                f"Produce a finished audio episode of about {minutes:g} minutes on the topic below.\n"
                "1. Script: write it (or use the one given) in parts of at most about 600 characters, "
                "split at sentence boundaries; one speaker per part.\n"
                f"2. Speech: call {speech} once per part, in order. If a call returns a job_id, wait with "
                "get_job. Keep each part's job_id.\n"
                "3. Join: call audio_join with audio_urls = the parts in order as jobs://{job_id} references "
                "(gap_s 0.4 between parts).\n"
                f"4. Music bed: call {music} once for a calm instrumental bed (no vocals).\n"
                "5. Mix: call audio_mix with voice_url = jobs://{join job_id} and music_url = jobs://{music job_id}.\n"
                "6. Master: call audio_master with audio_url = jobs://{mix job_id}, "
                f"loudness_lufs {loudness_lufs:g}, format mp3. Check that its result says on_target true.\n"
                f"7. Subtitles: transcribe the master with {transcribe} (audio_url = jobs://{{master job_id}}, with "
                "word or segment timestamps), then call transcript_subtitles with that job_id (format srt).\n"
                "Reply with the mastered file's path and URL, its duration and loudness, and the subtitle "
                f"file.\n\nTopic or script:\n{topic}"
            )

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

    if "produce_audio" in tool_names:

        @server.prompt(
            title="Produce a document",
            description="A document (article, chapters, dialogue) to a finished episode or audiobook in one job.",
        )
        def produce_document(
            document: str = Field(description="The text to produce, or where it is"),
            kind: str = Field("podcast", description="podcast, audiobook or broadcast"),
        ) -> str:
            return (
                f"Turn the document below into a finished {kind} with the produce_audio tool.\n"
                "1. Script: keep the author's words. Put '# Title' on its own line before each chapter or "
                "section; start a paragraph with 'Name:' where a named speaker talks (others are read by "
                "the narrator); use [pause 2s] for a deliberate silence. Escape a literal '[' as '\\['.\n"
                '2. Voices: one per speaker, e.g. {"narrator": {"tool": "kokoro_tts", "voice": '
                '"af_heart"}, "Bob": {"tool": "kokoro_tts", "voice": "am_adam"}} (presets: '
                "voices://kokoro; saved clones: voices://cloned). Without voices the narrator is kokoro_tts.\n"
                "3. Lexicon: words the voices would mispronounce -> how to say them (e.g. SQL -> sequel).\n"
                f"4. Call produce_audio with script, voices, lexicon, delivery '{kind}', format "
                f"{'m4b' if kind == 'audiobook' else 'mp3'}, and a title; add music (a file, or "
                '{"tool": <music tool>, "prompt": "calm instrumental bed"}) for a podcast. The user '
                "approves the whole cost once. If it returns a job_id, wait with get_job (wait_s 600).\n"
                "5. Read the delivery report: for a failed rule, tell the user which and why. If a part "
                "sounds wrong or failed, call redo_part(job_id, part, text?, voice?): only that part is "
                "sent again.\n"
                "Reply with the finished file, its chapters, the subtitle files and the report.\n\n"
                f"Document:\n{document}"
            )
