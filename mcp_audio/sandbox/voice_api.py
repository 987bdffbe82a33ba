"""A loopback fake of the Voice API (an API-marketplace listing): TTS, STT and clone tasks.

Serve `FakeVoiceApi(valid_key, host).app` with `serve.serve_in_thread`, set `fake.base_url`,
script task kinds, inject failures, then inspect `fake.requests` / `fake.tasks`. A task's
state is a pure function of the clock (submit time + scripted phases), so nothing runs in
the background. Multipart bodies are parsed for real; each part is recorded.

Where the listing is silent the fake makes choices (mirrored in manifests/voice-api.toml):
- task JSON: `{task_id, status, progress, result, error}`; `status` passes through scripted
  interim values (e.g. "queued", "processing") before "succeeded" or "failed" (+ `error`);
- TTS body `{text, model_ids}`; `<|speaker:N|>` beyond `model_ids` is a 422;
- TTS audio is sandbox speech (see `audio`) of the text in the voices of `model_ids`, as MP3;
  STT gives back the words of such speech, and the placeholder segments for other audio;
- STT and clone forms carry the file as part `audio`; clone also takes `title`, and refuses a
  WAV reference outside 10-90 s with a 422;
- `GET /v1/stt/{id}/result` gives `{text}` (plain_text=true) or `{text, language, segments}`
  with `start`/`end`/`speaker` per segment;
- `GET /v1/models` answers `{total, items}`; `sort` is one of created_at, score, task_count;
- the marketplace gateway answers a bad key with 401 and a wrong host with 404, before the API.
"""

from __future__ import annotations

import io
import json
import re
import sys
import time
import uuid
import wave
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mcp_audio.sandbox import audio
from mcp_audio.sandbox._base import FORM_TYPES, FakeUpstream, Part, no_route, read_parts

JSON = dict[str, Any]
TASK_KINDS = ("tts", "stt", "clone")
KINDS = frozenset(
    {
        "health",
        "models",
        "file",
        *(f"{kind}_submit" for kind in TASK_KINDS),
        *(f"{kind}_status" for kind in TASK_KINDS),
        "tts_audio",
        "stt_result",
    }
)
INVALID_KEY = {"message": "Invalid API key. Go to https://docs.rapidapi.com/docs/keys for more info."}
_SPEAKER = re.compile(r"<\|speaker:(\d+)\|>")
_PATH = re.compile(r"^/v1/(?P<kind>tts|stt|clone)(?:/(?P<tid>[^/]+)(?P<tail>/audio|/result)?)?$")

DEFAULT_SEGMENTS = (
    {"start": 0.0, "end": 1.2, "text": "Hello there.", "speaker": "SPEAKER_00"},
    {"start": 1.3, "end": 2.6, "text": "Hi, how are you?", "speaker": "SPEAKER_01"},
)
DEFAULT_MODELS = (
    {
        "id": "m-warm-narrator",
        "title": "Warm Narrator",
        "languages": ["en"],
        "tags": ["narration", "male"],
        "created_at": "2025-03-02T10:00:00Z",
        "score": 4.8,
        "task_count": 12000,
    },
    {
        "id": "m-bright-host",
        "title": "Bright Podcast Host",
        "languages": ["en", "es"],
        "tags": ["podcast", "female"],
        "created_at": "2025-05-20T10:00:00Z",
        "score": 4.5,
        "task_count": 30000,
    },
    {
        "id": "m-calm-guide",
        "title": "Calm Guide",
        "languages": ["ja"],
        "tags": ["meditation", "female"],
        "created_at": "2024-11-11T10:00:00Z",
        "score": 4.9,
        "task_count": 800,
    },
)


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    json: Any | None
    form: dict[str, str]  # multipart/url-encoded text fields
    parts: list[Part]  # every multipart part, files included, in order
    kind: str  # one of KINDS, or "unknown"
    task_id: str | None
    time: float  # wall clock


@dataclass(frozen=True)
class Script:
    """How tasks of one kind unfold: (status, progress, seconds) phases, then the end."""

    phases: tuple[tuple[str, float, float], ...]
    error: str | None = None  # end as "failed" with this message instead of "succeeded"
    result: JSON | None = None  # clone: the result object; stt: the non-plain transcript body


DEFAULT_SCRIPTS = {
    "tts": Script((("queued", 0, 0.05), ("running", 40, 0.15))),
    "stt": Script((("running", 50, 0.1), ("running", 80, 0.1))),
    "clone": Script((("training", 30, 0.2),)),
}


@dataclass
class FakeTask:
    task_id: str
    kind: str
    input: JSON  # the TTS JSON body, or the form's text fields
    parts: list[Part]
    script: Script
    submitted_at: float = field(default_factory=time.monotonic)
    model_id: str = field(default_factory=lambda: f"model-{uuid.uuid4().hex[:12]}")
    audio: bytes | None = None  # tts: the speech, made on the first download

    def phase(self, now: float | None = None) -> tuple[str, float]:
        """(status, progress) right now."""
        elapsed = (time.monotonic() if now is None else now) - self.submitted_at
        for status, progress, seconds in self.script.phases:
            if elapsed < seconds:
                return status, progress
            elapsed -= seconds
        return ("failed", 100.0) if self.script.error else ("succeeded", 100.0)


class FakeVoiceApi(FakeUpstream[RecordedRequest]):
    """In-memory Voice API behind a marketplace gateway. Thread-safe: driven from tests, served from uvicorn."""

    error_field = "message"  # the gateway's error bodies are {"message": ...}

    def __init__(self, valid_key: str = "test-key", host: str = "voice-api.p.rapidapi.com") -> None:
        self.host = host
        super().__init__(KINDS, valid_key)

    def _reset_state(self) -> None:
        self.tasks: dict[str, FakeTask] = {}
        self.models: list[JSON] = [dict(model) for model in DEFAULT_MODELS]
        self._scripts: dict[str, Script] = dict(DEFAULT_SCRIPTS)

    # ---- test-side controls -------------------------------------------------------------

    def script(
        self,
        kind: str,
        *,
        phases: Iterable[tuple[str, float, float]] | None = None,
        error: str | None = None,
        result: JSON | None = None,
    ) -> None:
        """Script every later task of `kind` (tts, stt, clone): interim (status, progress,
        seconds) phases, then "failed" with `error`, or "succeeded" (with `result`)."""
        if kind not in TASK_KINDS:
            raise ValueError(f"kind must be one of {TASK_KINDS}, not {kind!r}")
        with self._lock:
            steps = DEFAULT_SCRIPTS[kind].phases if phases is None else tuple(phases)
            self._scripts[kind] = Script(steps, error, result)

    # ---- HTTP plumbing -----------------------------------------------------------------

    async def _dispatch(self, request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        kind, task_id, wrong_method = _classify(method, request.url.path)
        body = await request.body()
        parsed: Any = None
        form: dict[str, str] = {}
        parts: list[Part] = []
        malformed = False
        if request.headers.get("content-type", "").startswith(FORM_TYPES):
            try:
                parts = await read_parts(request)  # reads the cached body
            except Exception:  # python-multipart's parse errors; FastAPI answers them with a 400
                malformed = True
            form = {p.name: p.data.decode(errors="replace") for p in parts if p.filename is None}
        elif body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        record = RecordedRequest(
            method,
            request.url.path,
            dict(request.query_params),
            {k.lower(): v for k, v in request.headers.items()},
            body,
            parsed,
            form,
            parts,
            kind,
            task_id,
            time.time(),
        )
        injected = await self._record(record)
        if injected is not None:
            return injected
        if kind == "unknown":
            return no_route(wrong_method)
        if malformed:
            return JSONResponse({"detail": "There was an error parsing the body"}, 400)
        if kind not in ("health", "file"):
            denied = self._gateway(request)
            if denied is not None:
                return denied
        handler = getattr(self, f"_on_{kind}")
        response: Response = handler(request, record)
        return response

    def _gateway(self, request: Request) -> Response | None:
        """The marketplace gateway: wrong host, then missing or wrong key."""
        if request.headers.get("x-rapidapi-host") != self.host:
            return JSONResponse({"message": "API doesn't exists"}, 404)
        if request.headers.get("x-rapidapi-key") != self.valid_key:
            return JSONResponse(INVALID_KEY, 401)
        return None

    def _task(self, record: RecordedRequest, kind: str) -> FakeTask | None:
        task = self.tasks.get(record.task_id or "")
        return task if task is not None and task.kind == kind else None

    # ---- routes ------------------------------------------------------------------------

    def _on_health(self, request: Request, record: RecordedRequest) -> Response:
        return JSONResponse({"status": "ok"})

    def _on_file(self, request: Request, record: RecordedRequest) -> Response:
        found = self._stored(request.url.path)
        if found is None:
            return JSONResponse({"detail": "File not found"}, 404)
        return Response(found[0], media_type=found[1])

    def _on_models(self, request: Request, record: RecordedRequest) -> Response:
        query = record.query
        sort = query.get("sort")
        if sort not in (None, "created_at", "score", "task_count"):
            return _invalid("query", "sort", "Input should be 'created_at', 'score' or 'task_count'", sort)
        with self._lock:
            items = [dict(model) for model in self.models]
        if query.get("title"):
            items = [m for m in items if _fuzzy(query["title"], str(m.get("title", "")))]
        if query.get("language"):
            items = [m for m in items if query["language"] in m.get("languages", [])]
        if query.get("tag"):
            items = [m for m in items if query["tag"] in m.get("tags", [])]
        if sort:
            items.sort(key=lambda m: m.get(sort) or 0, reverse=True)
        return JSONResponse({"total": len(items), "items": items})

    def _submit(self, kind: str, record: RecordedRequest, task_input: JSON) -> Response:
        with self._lock:
            task = FakeTask(uuid.uuid4().hex, kind, task_input, record.parts, self._scripts[kind])
            self.tasks[task.task_id] = task
            record.task_id = task.task_id
            status, progress = task.phase()
        return JSONResponse({"task_id": task.task_id, "status": status, "progress": progress}, 202)

    def _on_tts_submit(self, request: Request, record: RecordedRequest) -> Response:
        body = record.json
        if not isinstance(body, dict):
            return _invalid("body", None, "Input should be a valid dictionary", body, "dict_type")
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            return _invalid("body", "text", "Field required" if text is None else "String should not be empty", text)
        model_ids = body.get("model_ids", [])
        if not isinstance(model_ids, list) or not all(isinstance(m, str) for m in model_ids):
            return _invalid("body", "model_ids", "Input should be a valid list of strings", model_ids)
        speakers = [int(n) for n in _SPEAKER.findall(text)]
        if speakers and max(speakers) >= len(model_ids):
            message = f"speaker {max(speakers)} has no model in model_ids ({len(model_ids)} given)"
            return _invalid("body", "text", message, text, "value_error")
        return self._submit("tts", record, body)

    def _on_stt_submit(self, request: Request, record: RecordedRequest) -> Response:
        if _file_part(record, "audio") is None:
            return _invalid("body", "audio", "Field required", None, "missing")
        return self._submit("stt", record, record.form)

    def _on_clone_submit(self, request: Request, record: RecordedRequest) -> Response:
        audio = _file_part(record, "audio")
        if audio is None:
            return _invalid("body", "audio", "Field required", None, "missing")
        seconds = _wav_seconds(audio.data)
        if seconds is not None and seconds < 10:
            return _invalid("body", "audio", f"Reference audio must be at least 10 s long (got {seconds:.1f} s)", None)
        if seconds is not None and seconds > 90:
            return _invalid("body", "audio", f"Reference audio is too long ({seconds:.1f} s; at most 90 s)", None)
        return self._submit("clone", record, record.form)

    def _status(self, kind: str, record: RecordedRequest) -> Response:
        task = self._task(record, kind)
        if task is None:
            return JSONResponse({"detail": "Task not found"}, 404)
        status, progress = task.phase()
        result: JSON | None = None
        if status == "succeeded" and kind == "clone":
            result = {"model_id": task.model_id, "title": task.input.get("title"), "sandbox": audio.SANDBOX_NOTE}
            result |= task.script.result or {}
        body = {
            "task_id": task.task_id,
            "status": status,
            "progress": progress,
            "result": result,  # STT never puts the transcript here: it has its own route
            "error": task.script.error if status == "failed" else None,
        }
        return JSONResponse(body)

    def _on_tts_status(self, request: Request, record: RecordedRequest) -> Response:
        return self._status("tts", record)

    def _on_stt_status(self, request: Request, record: RecordedRequest) -> Response:
        return self._status("stt", record)

    def _on_clone_status(self, request: Request, record: RecordedRequest) -> Response:
        return self._status("clone", record)

    def _finished(self, kind: str, record: RecordedRequest) -> FakeTask | Response:
        task = self._task(record, kind)
        if task is None:
            return JSONResponse({"detail": "Task not found"}, 404)
        status, _ = task.phase()
        if status != "succeeded":
            return JSONResponse({"detail": f"Task is not finished (status: {status})"}, 400)
        return task

    def _on_tts_audio(self, request: Request, record: RecordedRequest) -> Response:
        task = self._finished("tts", record)
        if isinstance(task, Response):
            return task
        with self._lock:
            if task.audio is None:
                task.audio, _ = audio.speak(_speakers(task.input), "mp3")
            data = task.audio
        return Response(
            data,
            media_type="audio/mpeg",
            headers={"Content-Disposition": f'attachment; filename="{task.task_id}.mp3"'},
        )

    def _on_stt_result(self, request: Request, record: RecordedRequest) -> Response:
        task = self._finished("stt", record)
        if isinstance(task, Response):
            return task
        given = _file_part(task, "audio")
        heard = audio.recognise(given.data) if given is not None else None
        if task.script.result is not None:
            full = task.script.result
        elif heard is not None:  # speech this sandbox made: its own words back
            segments = [
                {"start": s.start, "end": s.end, "text": s.text, "speaker": "SPEAKER_00"} for s in heard.sentences
            ]
            full = {"text": heard.text, "language": "en", "segments": segments, "sandbox": audio.SANDBOX_NOTE}
        else:
            full = {
                "text": " ".join(str(s["text"]) for s in DEFAULT_SEGMENTS),
                "language": "en",
                "segments": [dict(s) for s in DEFAULT_SEGMENTS],
                "sandbox": audio.SANDBOX_NOTE,
            }
        plain = record.query.get("plain_text", "false").lower() == "true"
        return JSONResponse({"text": full.get("text", "")} if plain else full)


# ---- helpers ---------------------------------------------------------------------------


def _classify(method: str, path: str) -> tuple[str, str | None, bool]:
    """(kind, task id, wrong_method) of a request line."""
    if path == "/v1/health":
        return ("health", None, False) if method == "GET" else ("unknown", None, True)
    if path == "/v1/models":
        return ("models", None, False) if method == "GET" else ("unknown", None, True)
    if path.startswith("/files/"):
        return ("file", None, False) if method == "GET" else ("unknown", None, True)
    match = _PATH.match(path)
    if match is None:
        return "unknown", None, False
    kind, task_id, tail = match["kind"], match["tid"], match["tail"]
    if task_id is None:
        return (f"{kind}_submit", None, False) if method == "POST" else ("unknown", None, True)
    if method != "GET":
        return "unknown", task_id, True
    if tail is None:
        return f"{kind}_status", task_id, False
    routes = {("tts", "/audio"): "tts_audio", ("stt", "/result"): "stt_result"}
    found = routes.get((kind, tail))
    return (found, task_id, False) if found else ("unknown", task_id, False)


def _speakers(body: JSON) -> list[tuple[str, str]]:
    """(text, voice) of a TTS body: `<|speaker:N|>` switches to `model_ids[N]`; text before any
    tag is the first model's."""
    model_ids = [str(m) for m in body.get("model_ids") or []] or ["default"]
    pieces = _SPEAKER.split(str(body.get("text", "")))
    parts = [(pieces[0], model_ids[0])]
    for n, text in zip(pieces[1::2], pieces[2::2], strict=True):
        parts.append((text, model_ids[min(int(n), len(model_ids) - 1)]))
    return [(text, voice) for text, voice in parts if text.strip()]


def _file_part(record: RecordedRequest | FakeTask, name: str) -> Part | None:
    return next((p for p in record.parts if p.name == name and p.filename is not None), None)


def _invalid(where: str, name: str | None, message: str, given: Any, error_type: str = "value_error") -> Response:
    """A FastAPI-style 422."""
    loc = [where] + ([name] if name else [])
    return JSONResponse({"detail": [{"loc": loc, "msg": message, "type": error_type, "input": given}]}, 422)


def _fuzzy(query: str, title: str) -> bool:
    """Every character of the query, in order, in the title (case-insensitive)."""
    rest = iter(title.lower())
    return all(char in rest for char in query.lower() if not char.isspace())


def _wav_seconds(data: bytes) -> float | None:
    try:
        with wave.Wave_read(io.BytesIO(data)) as reader:
            return reader.getnframes() / reader.getframerate()
    except (wave.Error, EOFError):
        return None


if __name__ == "__main__":
    from mcp_audio.sandbox.serve import main

    main(["voice-api", *sys.argv[1:]])
