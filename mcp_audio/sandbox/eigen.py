"""A loopback fake of Eigen AI's generate API (POST /api/v1/generate and /generate/upload).

Serve `FakeEigen().app` with `serve.serve_in_thread`, set `fake.base_url`, inject failures,
then inspect `fake.requests`: every request's multipart parts as parsed by a real multipart
parser (name, file name, content type, bytes or value). TTS answers with sandbox speech of the
text (see `audio`: WAV, or the format asked for), ASR with the words of such speech (or a fixed
placeholder transcript for other audio), upload with a new voice_id. Deliberate choices:
- stricter than the real API (a FastAPI app that likely ignores unknown form fields): a field
  the model does not take is a 422, so a field sent by mistake fails loudly in tests;
- `stream=true` (SSE) is not implemented: the server under test never asks for it;
- `GET /files/{name}` serves files put with `put_file`, standing in for https inputs.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from mcp_audio.sandbox import audio
from mcp_audio.sandbox._base import FakeUpstream, Injection, Part, TruncatedBody, no_route, read_parts
from mcp_audio.sandbox._base import sine_wav as _sine_wav

KINDS = frozenset({"tts", "asr", "upload", "root", "file"})
TTS_MODELS = frozenset({"higgs2p5", "chatterbox", "qwen3-tts"})
ASR_MODEL = "whisper_v3_turbo"
HIGGS_VOICES = ("Linda", "Jack")
QWEN_VOICES = ("Vivian", "Serena", "Uncle_Fu", "Dylan", "Eric", "Ryan", "Aiden", "Ono_Anna", "Sohee")
QWEN_FORMATS = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "flac": "audio/flac",
    "aac": "audio/aac",
    "opus": "audio/ogg",
    "pcm": "audio/pcm",
}

# Each model's form fields and their kinds, as the API reference lists them.
_STR, _NUM, _INT, _BOOL, _JSON, _FILE = "string", "number", "integer", "boolean", "json", "file"
FIELDS: dict[str, dict[str, str]] = {
    "higgs2p5": {
        "text": _STR,
        "voice": _STR,
        "voice_reference_file": _FILE,
        "voice_id": _STR,
        "voice_url": _STR,
        "voice_name": _STR,
        "voice_settings": _JSON,
        "sampling": _JSON,
        "stream": _BOOL,
    },
    "chatterbox": {
        "text": _STR,
        "language_id": _STR,
        "audio_prompt_file": _FILE,
        "voice_id": _STR,
        "preset_url": _STR,
        "exaggeration": _NUM,
        "temperature": _NUM,
        "diffusion_steps": _NUM,
        "max_tokens": _INT,
        "top_p": _NUM,
        "min_p": _NUM,
        "repetition_penalty": _NUM,
        "seed": _INT,
        "stream": _BOOL,
    },
    "qwen3-tts": {
        "text": _STR,
        "voice": _STR,
        "voice_id": _STR,
        "voice_url": _STR,
        "voice_settings": _JSON,
        "language": _STR,
        "instructions": _STR,
        "response_format": _STR,
        "stream": _BOOL,
    },
    ASR_MODEL: {"file": _FILE, "language": _STR, "response_format": _STR},
    "upload": {"voice_reference_file": _FILE},
}
_UNAUTHORIZED = {"detail": "Invalid or missing API key"}


@dataclass
class EigenRequest:
    method: str
    path: str
    kind: str  # one of KINDS, or "unknown"
    headers: dict[str, str]  # lower-cased names
    parts: list[Part]
    time: float  # wall clock

    @property
    def form(self) -> dict[str, str]:
        """The plain form fields, name -> value."""
        return {p.name: p.value for p in self.parts if p.filename is None}

    @property
    def files(self) -> dict[str, Part]:
        return {p.name: p for p in self.parts if p.filename is not None}


@dataclass
class FakeVoice:
    model: str
    data: bytes
    created_at: float = field(default_factory=time.time)


class FakeEigen(FakeUpstream[EigenRequest]):
    """In-memory Eigen generate API. Thread-safe: driven from tests, served from uvicorn."""

    def __init__(self, valid_key: str = "test-key", delay_s: float = 0.0) -> None:
        self._delay_s = delay_s
        super().__init__(KINDS, valid_key)

    def _reset_state(self) -> None:
        self.delay_s = self._delay_s  # how long every generate/upload takes to answer
        self.transcript = "Hello from the fake Eigen transcriber."
        self.voices: dict[str, FakeVoice] = {}
        self.generated = 0  # speech generations answered (what the upstream would bill)
        self.last_audio: bytes | None = None  # the last TTS answer's bytes (only the last: memory stays bounded)
        self._body_break: int | None = None

    # ---- test-side controls -------------------------------------------------------------

    def break_body_after(self, n_bytes: int) -> None:
        """The next TTS answer announces its full length but the connection drops after n bytes."""
        with self._lock:
            self._body_break = n_bytes

    # ---- HTTP plumbing -----------------------------------------------------------------

    async def _dispatch(self, request: Request) -> Response:
        parts = await read_parts(request, max_part_size=50 * 2**20) if request.method == "POST" else []
        model = next((p.value for p in parts if p.name == "model" and p.filename is None), None)
        kind = _classify(request.method, request.url.path, model)
        record = EigenRequest(
            request.method,
            request.url.path,
            kind,
            {k.lower(): v for k, v in request.headers.items()},
            parts,
            time.time(),
        )
        injected = await self._record(record)
        if injected is not None:
            return injected
        if kind == "root":
            return JSONResponse({"message": "Eigen AI model API (fake)"})
        if kind == "file":
            found = self._stored(request.url.path)
            return Response(found[0], media_type=found[1]) if found else JSONResponse({"detail": "Not Found"}, 404)
        if kind == "unknown":
            return no_route()
        if record.headers.get("authorization") != f"Bearer {self.valid_key}":
            return JSONResponse(_UNAUTHORIZED, 401)
        if not record.headers.get("content-type", "").startswith("multipart/form-data"):
            return _invalid("body", "Expected multipart/form-data")
        if self.delay_s:
            await anyio.sleep(self.delay_s)
        handler: Callable[[EigenRequest], Response] = getattr(self, f"_on_{kind}")
        return handler(record)

    def _injected(self, injection: Injection) -> Response:
        """Injected bodies may also be raw bytes or text (e.g. a proxy's HTML error page)."""
        if isinstance(injection.body, bytes | str):
            return Response(injection.body, injection.status, injection.headers)
        return super()._injected(injection)

    # ---- endpoints ---------------------------------------------------------------------

    def _on_tts(self, record: EigenRequest) -> Response:
        model = record.form.get("model")
        if model is None:
            return _invalid("model", "Field required")
        problem = _check_fields(record, model)
        if problem is not None:
            return problem
        form = record.form
        if not form.get("text", "").strip():
            return _invalid("text", "Field required")
        if form.get("stream") == "true":
            return _invalid("stream", "stream=true (SSE) is not implemented by this fake")
        voice_id = form.get("voice_id")
        if voice_id is not None and voice_id not in self.voices:
            return JSONResponse({"detail": f"Voice not found: {voice_id}"}, 404)
        voice = form.get("voice")
        if model == "higgs2p5" and voice is not None and voice not in HIGGS_VOICES:
            return _invalid("voice", f"Unknown voice '{voice}'")
        content_type = "audio/wav"
        if model == "qwen3-tts":
            if voice is not None and (voice_id is not None or "voice_url" in form):
                return _invalid("voice", "voice cannot be used with voice_id or voice_url")
            if voice is not None and voice not in QWEN_VOICES:
                return _invalid("voice", f"Unknown voice '{voice}'")
            response_format = form.get("response_format", "wav")
            if response_format not in QWEN_FORMATS:
                return _invalid("response_format", f"Unsupported format '{response_format}'")
            content_type = QWEN_FORMATS[response_format]
        speaker = voice or voice_id or form.get("voice_url") or form.get("preset_url") or f"{model} default"
        if "audio_prompt_file" in record.files:  # chatterbox cloning from the sample it was sent
            speaker = "clone " + hashlib.sha256(record.files["audio_prompt_file"].data).hexdigest()[:16]
        data, _ = audio.speak([(form["text"], speaker)], _FORMATS[content_type])
        with self._lock:
            self.generated += 1
            self.last_audio = data
            cut, self._body_break = self._body_break, None
        if cut is not None:
            return TruncatedBody(data, content_type, cut)
        return Response(data, media_type=content_type)

    def _on_asr(self, record: EigenRequest) -> Response:
        problem = _check_fields(record, ASR_MODEL)
        if problem is not None:
            return problem
        if "file" not in record.files:
            return _invalid("file", "Field required")
        form = record.form
        response_format = form.get("response_format", "json")
        if response_format not in ("json", "text"):
            return _invalid("response_format", "Must be json or text")
        heard = audio.recognise(record.files["file"].data)  # speech this sandbox made: its words back
        text = heard.text if heard is not None else self.transcript
        if response_format == "text":
            return PlainTextResponse(text)
        segments = (
            [{"start": s.start, "end": s.end, "text": s.text} for s in heard.sentences]
            if heard is not None
            else [{"start": 0.0, "end": 1.5, "text": self.transcript}]
        )
        body = {"text": text, "language": form.get("language", "en"), "segments": segments}
        return JSONResponse(body | {"sandbox": audio.SANDBOX_NOTE})

    def _on_upload(self, record: EigenRequest) -> Response:
        problem = _check_fields(record, "upload")
        if problem is not None:
            return problem
        model = record.form.get("model")
        if model not in TTS_MODELS:
            return _invalid("model", f"Must be one of {', '.join(sorted(TTS_MODELS))}")
        sample = record.files.get("voice_reference_file")
        if sample is None:
            return _invalid("voice_reference_file", "Field required")
        voice_id = uuid.uuid4().hex
        with self._lock:
            self.voices[voice_id] = FakeVoice(model, sample.data)
        return JSONResponse({"voice_id": voice_id, "sandbox": audio.SANDBOX_NOTE})


# ---- helpers ---------------------------------------------------------------------------


def _classify(method: str, path: str, model: str | None) -> str:
    if method in ("GET", "HEAD"):
        if path == "/":
            return "root"
        return "file" if path.startswith("/files/") else "unknown"
    if method != "POST":
        return "unknown"
    if path == "/api/v1/generate/upload":
        return "upload"
    if path == "/api/v1/generate":
        return "asr" if model == ASR_MODEL else "tts"
    return "unknown"


def _check_fields(record: EigenRequest, model: str) -> Response | None:
    """422 for an unknown model, a field the model does not take, or a value of the wrong kind."""
    allowed = FIELDS.get(model)
    if allowed is None:
        return _invalid("model", f"Unknown model '{model}'")
    for part in record.parts:
        if part.name == "model":
            continue
        kind = allowed.get(part.name)
        if kind is None:
            return _invalid(part.name, f"Not a parameter of {model}")
        if (kind == _FILE) != (part.filename is not None):
            return _invalid(part.name, "Expected a file" if kind == _FILE else "Expected a form value, not a file")
        if kind != _FILE and not _value_ok(kind, part.value):
            return _invalid(part.name, f"Not a valid {kind}: {part.value!r}")
    return None


def _value_ok(kind: str, value: str) -> bool:
    try:
        if kind == _NUM:
            float(value)
        elif kind == _INT:
            int(value)
        elif kind == _BOOL:
            return value in ("true", "false")
        elif kind == _JSON:
            return isinstance(json.loads(value), dict)
    except ValueError:
        return False
    return True


def _invalid(name: str, message: str) -> JSONResponse:
    """A FastAPI-style 422: {"detail": [{"loc": ["body", name], "msg": ..., "type": ...}]}."""
    return JSONResponse({"detail": [{"loc": ["body", name], "msg": message, "type": "value_error"}]}, 422)


# The container each answered media type is made in.
_FORMATS = {v: k for k, v in QWEN_FORMATS.items()}


def sine_wav() -> bytes:
    """The shared 0.5 s test tone at 24 kHz (Eigen's TTS sample rate): small valid audio for tests."""
    return _sine_wav(rate=24_000)


if __name__ == "__main__":
    from mcp_audio.sandbox.serve import main

    main(["eigen", *sys.argv[1:]])
