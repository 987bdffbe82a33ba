"""A loopback fake of Eigen AI's generate API (POST /api/v1/generate and /generate/upload).

Serve `FakeEigen().app` with `serve.serve_in_thread`, set `fake.base_url`, inject failures,
then inspect `fake.requests`: every request's multipart parts as parsed by a real multipart
parser (name, file name, content type, bytes or value). TTS answers with a small valid WAV (or
the format asked for), ASR with a transcript, upload with a new voice_id. Deliberate choices:
- stricter than the real API (a FastAPI app that likely ignores unknown form fields): a field
  the model does not take is a 422, so a field sent by mistake fails loudly in tests;
- `stream=true` (SSE) is not implemented: the server under test never asks for it;
- `GET /files/{name}` serves files put with `put_file`, standing in for https inputs.
"""

from __future__ import annotations

import io
import json
import math
import threading
import time
import uuid
import wave
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import anyio
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

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
class Part:
    """One multipart part as the server parsed it."""

    name: str
    filename: str | None  # None: a plain form field
    content_type: str | None
    data: bytes  # the file's bytes, or the field's value encoded as UTF-8

    @property
    def value(self) -> str:
        return self.data.decode()


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


@dataclass(frozen=True)
class _Injection:
    status: int
    headers: dict[str, str]
    body: Any
    delay_s: float


@dataclass
class FakeVoice:
    model: str
    data: bytes
    created_at: float = field(default_factory=time.time)


class FakeEigen:
    """In-memory Eigen generate API. Thread-safe: driven from tests, served from uvicorn."""

    def __init__(self, valid_key: str = "test-key", delay_s: float = 0.0) -> None:
        self.valid_key = valid_key
        self.delay_s = delay_s  # how long every generate/upload takes to answer
        self.base_url: str | None = None
        self.transcript = "Hello from the fake Eigen transcriber."
        self.requests: list[EigenRequest] = []
        self.voices: dict[str, FakeVoice] = {}
        self.files: dict[str, tuple[bytes, str]] = {}
        self._lock = threading.Lock()
        self._injections: dict[str, deque[_Injection]] = {k: deque() for k in KINDS}
        self._body_break: int | None = None
        self.app = Starlette(
            routes=[Route("/{path:path}", self._dispatch, methods=["GET", "HEAD", "POST", "PUT", "DELETE"])]
        )

    # ---- test-side controls -------------------------------------------------------------

    def inject(
        self,
        kind: str,
        status: int,
        *,
        times: int = 1,
        headers: dict[str, str] | None = None,
        body: Any = None,
        delay_s: float = 0.0,
    ) -> None:
        """Answer the next `times` requests of `kind` with `status`/`headers`/`body` (after
        `delay_s`). Status 0 means: delay, then answer normally. Injections beat auth."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}, not {kind!r}")
        if body is None and status:
            body = {"detail": HTTPStatus(status).phrase}
        with self._lock:
            self._injections[kind].extend([_Injection(status, dict(headers or {}), body, delay_s)] * times)

    def break_body_after(self, n_bytes: int) -> None:
        """The next TTS answer announces its full length but the connection drops after n bytes."""
        with self._lock:
            self._body_break = n_bytes

    def put_file(self, name: str, data: bytes, content_type: str) -> str:
        """Serve `data` at GET /files/{name}; returns its URL (set `base_url` first)."""
        if self.base_url is None:
            raise RuntimeError("set fake.base_url to the served URL before put_file()")
        with self._lock:
            self.files[name] = (data, content_type)
        return f"{self.base_url}/files/{quote(name)}"

    def of_kind(self, kind: str) -> list[EigenRequest]:
        with self._lock:
            return [r for r in self.requests if r.kind == kind]

    # ---- HTTP plumbing -----------------------------------------------------------------

    async def _dispatch(self, request: Request) -> Response:
        parts = await _parse_parts(request) if request.method == "POST" else []
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
        with self._lock:
            self.requests.append(record)
            injection = self._injections[kind].popleft() if self._injections.get(kind) else None
        if injection is not None:
            await anyio.sleep(injection.delay_s)
            if injection.status:
                return _answer(injection.status, injection.body, injection.headers)
        if kind == "root":
            return JSONResponse({"message": "Eigen AI model API (fake)"})
        if kind == "file":
            found = self.files.get(request.url.path.removeprefix("/files/"))
            return Response(found[0], media_type=found[1]) if found else JSONResponse({"detail": "Not Found"}, 404)
        if kind == "unknown":
            return JSONResponse({"detail": "Not Found"}, 404)
        if record.headers.get("authorization") != f"Bearer {self.valid_key}":
            return JSONResponse(_UNAUTHORIZED, 401)
        if not record.headers.get("content-type", "").startswith("multipart/form-data"):
            return _invalid("body", "Expected multipart/form-data")
        if self.delay_s:
            await anyio.sleep(self.delay_s)
        handler: Callable[[EigenRequest], Response] = getattr(self, f"_on_{kind}")
        return handler(record)

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
        data = _audio(content_type)
        with self._lock:
            cut, self._body_break = self._body_break, None
        if cut is not None:
            return _TruncatedBody(data, content_type, cut)
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
        if response_format == "text":
            return PlainTextResponse(self.transcript)
        return JSONResponse(
            {
                "text": self.transcript,
                "language": form.get("language", "en"),
                "segments": [{"start": 0.0, "end": 1.5, "text": self.transcript}],
            }
        )

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
        return JSONResponse({"voice_id": voice_id})


class _TruncatedBody(Response):
    """An answer cut mid-body: Content-Length says more than is sent, then the connection drops."""

    def __init__(self, data: bytes, content_type: str, cut: int) -> None:
        self.data, self.cut = data, cut
        self.status_code, self.background = 200, None
        self.init_headers({"content-type": content_type, "content-length": str(len(data))})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.data[: self.cut], "more_body": True})


# ---- helpers ---------------------------------------------------------------------------


async def _parse_parts(request: Request) -> list[Part]:
    """Every part of a multipart (or urlencoded) body, in order, through Starlette's parser."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        return []
    parts: list[Part] = []
    async with request.form(max_part_size=50 * 2**20) as form:
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                data = await value.read()
                parts.append(Part(name, value.filename or "", value.content_type, data))
            else:
                parts.append(Part(name, None, None, value.encode()))
    return parts


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


def _answer(status: int, body: Any, headers: dict[str, str]) -> Response:
    if isinstance(body, bytes | str):
        return Response(body, status, headers)
    return JSONResponse(body, status, headers)


def _audio(content_type: str) -> bytes:
    if content_type == "audio/wav":
        return sine_wav()
    if content_type == "audio/mpeg":
        return (b"\xff\xfb\x90\x64" + bytes(413)) * 20  # ~0.5 s of silent MPEG-1 Layer III frames
    return bytes(4800)  # raw silence stands in for the other formats


@lru_cache(maxsize=1)
def sine_wav() -> bytes:
    """0.5 s of a quiet 440 Hz tone, 24 kHz mono 16-bit PCM (Eigen's TTS sample rate)."""
    rate = 24_000
    samples = array("h", (int(3000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(rate // 2)))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return buffer.getvalue()


def main() -> None:
    """Serve a FakeEigen on loopback until Ctrl-C (`python -m mcp_audio.sandbox.eigen`)."""
    import argparse
    import logging
    import sys

    import uvicorn

    parser = argparse.ArgumentParser(
        prog="python -m mcp_audio.sandbox.eigen", description="A loopback fake of Eigen AI's generate API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8798)
    parser.add_argument("--key", default="test-key", help="the Eigen API key the fake accepts")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds each generate call takes")
    args = parser.parse_args()
    fake = FakeEigen(valid_key=args.key, delay_s=args.delay)
    fake.base_url = f"http://{args.host}:{args.port}"
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)
    logging.getLogger(__name__).info("fake Eigen AI on %s (key %r)", fake.base_url, args.key)
    uvicorn.run(fake.app, host=args.host, port=args.port, http="h11", log_level="warning")


if __name__ == "__main__":
    main()
