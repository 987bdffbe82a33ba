"""What the fal fake makes when a test did not script an output: audio that follows the request.

Speech endpoints speak their text (its length follows the text), music and effect endpoints
last the duration asked for (each endpoint's own field, else its schema's default, else a
default here), transcription endpoints give back the words of speech this sandbox made (see
`audio.recognise`; other audio keeps the schema-shaped placeholder), and audio-to-audio
endpoints given sandbox speech hand it back (the voice changer in the new voice). Every output
carries `sandbox`: a note that it is a placeholder. Which endpoint does what is read from its
id and input fields, so endpoints added to the schema snapshot are covered where they look alike.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from mcp_audio.sandbox import audio, fal_contract

JSON = dict[str, Any]
Role = Literal["speech", "stt", "music", "effect", "transform", "other"]
Fetch = Callable[[str], bytes | None]  # an input URL -> its bytes, when this fake has them
MAX_SOUND_S = 600.0  # the longest music or effect made (ElevenLabs' music maximum)
DEFAULT_SECONDS = {"music": 30.0, "effect": 5.0}
# Fields that ask for a length, and how to read them as seconds.
_DURATION_FIELDS: tuple[tuple[str, float], ...] = (
    ("duration", 1.0),
    ("seconds_total", 1.0),
    ("duration_seconds", 1.0),
    ("music_length_ms", 0.001),
    ("music_duration", 1.0),  # DiffRhythm: "95s" / "285s"
)


@dataclass
class Made:
    """The audio made for one job (None: the schema-shaped sample file) and, for speech, its timeline."""

    file: tuple[bytes, str, str] | None = None  # bytes, content type, extension
    speech: audio.Timeline | None = None


def role(endpoint_id: str, body: JSON) -> Role:
    eid = endpoint_id.lower()
    if "speech-to-text" in eid or eid.endswith("/asr") or eid in ("fal-ai/whisper", "fal-ai/wizper"):
        return "stt"
    if "clone-voice" in eid:
        return "other"  # makes a speaker embedding, not audio
    if any(k in eid for k in ("tts", "text-to-speech", "text-to-dialogue", "/speech-", "kokoro", "voice-design")):
        return "speech"
    if eid == "fal-ai/minimax/voice-clone":
        return "speech" if isinstance(body.get("text"), str) and body["text"].strip() else "other"
    if any(k in eid for k in ("sound-effects", "mmaudio", "stable-audio", "sfx")):
        return "effect"
    if any(k in eid for k in ("audio-to-audio", "inpaint", "outpaint")):
        return "transform"
    if any(k in eid for k in ("music", "lyria", "ace-step", "diffrhythm", "yue")):
        return "music"
    if "audio_url" in body or "audio_urls" in body:
        return "transform"
    return "other"


def make(endpoint_id: str, body: JSON, fetch: Fetch) -> Made:
    """The job's audio: speech, music, an effect, or the sandbox speech it was given."""
    kind = role(endpoint_id, body)
    if kind == "speech":
        parts = speech_parts(endpoint_id, body)
        if parts:
            data, plan = audio.speak(parts)
            return Made((data, "audio/wav", "wav"), plan)
    if kind in ("music", "effect"):
        fmt, content_type = ("mp3", "audio/mpeg") if _wants_mp3(endpoint_id, body) else ("wav", "audio/wav")
        data = audio.sound(kind, requested_seconds(endpoint_id, body, kind), _prompt(body), fmt)
        return Made((data, content_type, fmt))
    if kind == "transform":
        given = _input_audio(body, fetch)
        heard = audio.recognise(given) if given is not None else None
        if given is not None and heard is not None:
            if "voice-changer" in endpoint_id and isinstance(body.get("voice"), str):
                data, heard = audio.speak([(heard.text, body["voice"])])
                return Made((data, "audio/wav", "wav"), heard)
            return Made((given, _sniff(given), _extension(given)), heard)
    return Made()


def finish(endpoint_id: str, body: JSON, output: JSON, made: Made, fetch: Fetch) -> JSON:
    """The schema-shaped `output` with what the request asked for filled in, and the note."""
    output = dict(output)
    if made.speech is not None and "duration_ms" in output:
        output["duration_ms"] = int(made.speech.duration * 1000)
    if made.speech is not None and body.get("timestamps") is True and "timestamps" in output:
        output["timestamps"] = [{"text": w.text, "start": w.start, "end": w.end} for w in made.speech.words]
    if role(endpoint_id, body) == "stt":
        given = _input_audio(body, fetch)
        plan = audio.recognise(given) if given is not None else None
        if plan is not None:
            output.update(transcript(endpoint_id, body, plan))
    output["sandbox"] = audio.SANDBOX_NOTE
    return output


def speech_parts(endpoint_id: str, body: JSON) -> list[tuple[str, str]]:
    """(text, voice) pairs a speech request speaks, in order."""
    inputs = body.get("inputs")
    if isinstance(inputs, list):  # ElevenLabs' dialogue: [{text, voice}]
        return [
            (str(i["text"]), str(i.get("voice") or "default"))
            for i in inputs
            if isinstance(i, dict) and isinstance(i.get("text"), str)
        ]
    text = next(
        (body[k] for k in ("text", "prompt", "preview_text") if isinstance(body.get(k), str) and body[k].strip()), ""
    )
    if "voice-design" in endpoint_id and isinstance(body.get("text"), str):
        text = body["text"]  # its `prompt` describes the voice
    if "minimax/voice-design" in endpoint_id:
        text = str(body.get("preview_text") or "")
    return [(text, _voice(endpoint_id, body))] if text.strip() else []


def _voice(endpoint_id: str, body: JSON) -> str:
    setting = body.get("voice_setting")
    for value in (
        body.get("voice"),
        setting.get("voice_id") if isinstance(setting, dict) else None,
        body.get("speaker_voice_embedding_file_url"),
        body.get("audio_url"),  # a clone's reference
        body.get("prompt") if "voice-design" in endpoint_id else None,
    ):
        if isinstance(value, str) and value:
            return value
    if fal_contract.known(endpoint_id):
        schema = fal_contract.input_schema(endpoint_id)
        default = fal_contract.resolve(schema.get("properties", {}).get("voice", {}), schema).get("default")
        if isinstance(default, str):
            return default
    return endpoint_id


def requested_seconds(endpoint_id: str, body: JSON, kind: str) -> float:
    """The length asked for, else the schema's default for that field, else DEFAULT_SECONDS."""
    properties: JSON = {}
    schema: JSON = {}
    if fal_contract.known(endpoint_id):
        schema = fal_contract.input_schema(endpoint_id)
        properties = schema.get("properties", {})
    for name, scale in _DURATION_FIELDS:
        seconds = _seconds(body.get(name), scale)
        if seconds is None and name in properties:
            seconds = _seconds(fal_contract.resolve(properties[name], schema).get("default"), scale)
        if seconds is not None and seconds > 0:
            return min(seconds, MAX_SOUND_S)
    return DEFAULT_SECONDS.get(kind, 5.0)


def _seconds(value: Any, scale: float) -> float | None:
    if isinstance(value, str) and value.strip().lower().endswith("s"):
        value = value.strip()[:-1]
    if isinstance(value, bool):
        return None
    try:
        return float(value) * scale if value is not None else None
    except (TypeError, ValueError):
        return None


def transcript(endpoint_id: str, body: JSON, plan: audio.Timeline) -> JSON:
    """The transcript fields of an STT endpoint's output for sandbox speech."""
    eid = endpoint_id.lower()
    if eid.endswith("/asr") or "turbo" in eid:
        return {"output": plan.text, "partial": False}
    if "elevenlabs" in eid:
        speaker = {"speaker_id": "speaker_0"} if body.get("diarize") else {}
        words = [{"text": w.text, "start": w.start, "end": w.end, "type": "word", **speaker} for w in plan.words]
        return {"text": plan.text, "words": words, "language_code": "en", "language_probability": 1.0}
    if body.get("chunk_level") == "word":
        chunks = [{"timestamp": [w.start, w.end], "text": w.text} for w in plan.words]
    else:
        chunks = [{"timestamp": [s.start, s.end], "text": s.text} for s in plan.sentences]
    out: JSON = {"text": plan.text, "chunks": chunks}
    if eid == "fal-ai/whisper":
        out["diarization_segments"] = (
            [{"timestamp": [s.start, s.end], "speaker": "SPEAKER_00"} for s in plan.sentences]
            if body.get("diarize")
            else []
        )
        if body.get("diarize"):
            for chunk in chunks:
                chunk["speaker"] = "SPEAKER_00"
    return out


def _prompt(body: JSON) -> str:
    for key in ("prompt", "text", "tags", "style_prompt", "genres", "text_prompt"):
        if isinstance(body.get(key), str):
            return str(body[key])
    return ""


def _wants_mp3(endpoint_id: str, body: JSON) -> bool:
    """ElevenLabs answers MP3 unless a pcm_ format is asked for."""
    if not endpoint_id.startswith("fal-ai/elevenlabs/"):
        return False
    return not str(body.get("output_format") or "mp3").startswith("pcm")


def _input_audio(body: JSON, fetch: Fetch) -> bytes | None:
    url = body.get("audio_url")
    if not isinstance(url, str):
        return None
    if url.startswith("data:"):
        header, _, payload = url.partition(",")
        try:
            return base64.b64decode(payload) if header.endswith(";base64") else payload.encode()
        except (binascii.Error, ValueError):
            return None
    return fetch(url)


def _sniff(data: bytes) -> str:
    if data[:4] == b"RIFF":
        return "audio/wav"
    if data[:3] == b"ID3" or data[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio/mpeg"
    if data[:4] == b"fLaC":
        return "audio/flac"
    if data[:4] == b"OggS":
        return "audio/ogg"
    return "application/octet-stream"


def _extension(data: bytes) -> str:
    return {"audio/wav": "wav", "audio/mpeg": "mp3", "audio/flac": "flac", "audio/ogg": "ogg"}.get(_sniff(data), "bin")
