"""MCP prompts for common audio workflows. Each names the tools to use, and is offered only
when those tools are (toolsets may hide them).

Prompts are built as `Prompt` values rather than with `@server.prompt`: the decorator derives
a pydantic model and a validating wrapper per function, about 3 ms each at every start-up,
for arguments that arrive as strings anyway (numbers are converted here, naming the argument).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Sequence
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.prompts.base import Prompt, PromptArgument

from mcp_audio.catalog import CHOOSER, Family, listings

# The finishing tools an episode needs, and the tools of each earlier step, in preference order.
EPISODE_TOOLS = {"audio_join", "audio_mix", "audio_master", "transcript_subtitles"}
SPEECH_TOOLS = ("qwen3_tts", "elevenlabs_tts", "voice_api_tts", "eigen_higgs_tts")
MUSIC_TOOLS = ("lyria2_music", "cassetteai_music", "minimax_music", "ace_step_music")
TRANSCRIBE_TOOLS = ("whisper_transcribe", "elevenlabs_transcribe", "wizper_transcribe")


def _first(candidates: tuple[str, ...], tool_names: set[str], fallback: str) -> str:
    return next((name for name in candidates if name in tool_names), fallback)


def _number(name: str, value: float | str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"Prompt argument `{name}` must be a number, got {str(value)[:40]!r}") from None


def _add(server: MCPServer[Any], fn: Callable[..., str], title: str, description: str, **arguments: str) -> None:
    """Offer `fn` as a prompt; `arguments` describe its parameters (those without a default are required)."""
    parameters = inspect.signature(fn).parameters
    server.add_prompt(
        Prompt(
            name=fn.__name__,
            title=title,
            description=description,
            arguments=[
                PromptArgument(
                    name=name, description=text, required=parameters[name].default is inspect.Parameter.empty
                )
                for name, text in arguments.items()
            ],
            fn=fn,
        )
    )


def add_prompts(server: MCPServer[Any], tool_names: set[str], families: Sequence[Family] = ()) -> None:
    """The prompts whose tools are offered; a tool a family lists is named as that family's call
    ("transcribe with model 'whisper'"), as tools/list shows it."""
    # A capability a family lists -> that family and the (first) choice that picks it.
    routes = {tool: (options[0][0].name, options[0][1].choice) for tool, options in listings(families).items()}

    def call(tool: str) -> str:
        return f"{routes[tool][0]} with {CHOOSER} '{routes[tool][1]}'" if tool in routes else tool

    if tool_names >= EPISODE_TOOLS:
        speech = call(_first(SPEECH_TOOLS, tool_names, "a text-to-speech tool"))
        music = call(_first(MUSIC_TOOLS, tool_names, "a music tool"))
        transcribe = call(_first(TRANSCRIBE_TOOLS, tool_names, "a transcription tool"))

        def produce_episode(topic: str, minutes: float | str = 3, loudness_lufs: float | str = -16) -> str:
            minutes, loudness_lufs = _number("minutes", minutes), _number("loudness_lufs", loudness_lufs)
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

        _add(
            server,
            produce_episode,
            "Produce an episode",
            "Script to a finished, mastered episode with a music bed and subtitles.",
            topic="What the episode is about, or its full script",
            minutes="Target length in minutes",
            loudness_lufs="Loudness target (-16 podcasts, -23 broadcast)",
        )

    if "qwen3_tts" in tool_names:
        qwen3 = call("qwen3_tts")

        def narrate_script(script: str, voice: str = "Vivian") -> str:
            return (
                f"Narrate the script below with {qwen3} using voice '{voice}'. Split it at sentence "
                f"boundaries into passages of at most about 600 characters, call {qwen3} once per passage in "
                "order (set max_new_tokens to about 12 per second of expected speech, e.g. 1200 for a long "
                "passage), and if a call returns a job_id, wait for it with get_job. Finally list the audio "
                f"URLs in reading order.\n\nScript:\n{script}"
            )

        _add(
            server,
            narrate_script,
            "Narrate a script",
            "Turn a script into narration with one voice.",
            script="The text to narrate",
            voice="A preset (voices://qwen3-tts) or a saved cloned voice",
        )

    if "whisper_transcribe" in tool_names:
        whisper = call("whisper_transcribe")

        def transcribe_and_summarise(audio_url: str, focus: str = "key points, decisions and action items") -> str:
            return (
                f"Transcribe {audio_url} with {whisper} (chunk_level 'segment'; set diarize "
                "true if several people speak). If it returns a job_id, wait with get_job. Then write a summary "
                f"of the {focus}, citing segment timestamps as [mm:ss] so the user can find each point."
            )

        _add(
            server,
            transcribe_and_summarise,
            "Transcribe and summarise",
            "Transcribe a recording, then summarise it.",
            audio_url="URL of the recording",
            focus="What the summary covers",
        )

    if {"lyria2_music", "elevenlabs_sound_effect"} <= tool_names:
        lyria2, effect = call("lyria2_music"), call("elevenlabs_sound_effect")

        def score_scene(scene: str) -> str:
            return (
                "Score this scene. First list 2-5 distinct sound effects it needs with their timing. Call "
                f"{lyria2} once for a 30-second instrumental bed matching the mood (put unwanted elements in "
                f"negative_prompt), and {effect} once per effect (duration_seconds 0.5-22). Wait "
                "for any job_id with get_job. Reply with a cue sheet: time, element, file URL.\n\n"
                f"Scene: {scene}"
            )

        _add(
            server,
            score_scene,
            "Score a scene",
            "Music bed plus sound effects for a scene.",
            scene="What happens in the scene, with its mood",
        )

    if "produce_audio" in tool_names:
        kokoro = {"tool": "kokoro_tts"}
        if "kokoro_tts" in routes:  # as tools/list shows it: speak with model kokoro
            kokoro = {"tool": routes["kokoro_tts"][0], CHOOSER: routes["kokoro_tts"][1]}
        example_voices = {"narrator": kokoro | {"voice": "af_heart"}, "Bob": kokoro | {"voice": "am_adam"}}

        def produce_document(document: str, kind: str = "podcast") -> str:
            return (
                f"Turn the document below into a finished {kind} with the produce_audio tool.\n"
                "1. Script: keep the author's words. Put '# Title' on its own line before each chapter or "
                "section; start a paragraph with 'Name:' where a named speaker talks (others are read by "
                "the narrator); use [pause 2s] for a deliberate silence. Escape a literal '[' as '\\['.\n"
                f"2. Voices: one per speaker, e.g. {json.dumps(example_voices)} (presets: "
                "voices://kokoro; saved clones: voices://cloned). Without voices the narrator is kokoro.\n"
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

        _add(
            server,
            produce_document,
            "Produce a document",
            "A document (article, chapters, dialogue) to a finished episode or audiobook in one job.",
            document="The text to produce, or where it is",
            kind="podcast, audiobook or broadcast",
        )
