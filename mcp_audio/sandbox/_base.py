"""What the loopback fakes share: the request log, injected failures, served files, multipart
parsing and small valid audio. Each fake keeps its own routes, statuses and error bodies."""

from __future__ import annotations

import contextvars
import io
import math
import threading
import wave
from array import array
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from http import HTTPStatus
from typing import Any, ClassVar, Generic, Protocol, TypeVar
from urllib.parse import quote

import anyio
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


class Recorded(Protocol):
    """A fake's record of one request; the base only needs its kind."""

    kind: str


R = TypeVar("R", bound=Recorded)


# An injected status meaning: handle the request as usual (a submit creates its job), then drop
# the connection halfway through the answer, as a reset or a dying proxy does.
CUT = -1
_cut_this_answer: contextvars.ContextVar[list[bool]] = contextvars.ContextVar("cut_this_answer")


@dataclass(frozen=True)
class Injection:
    status: int  # 0: only the delay, then the normal answer; CUT: the normal answer, cut
    headers: dict[str, str]
    body: Any
    delay_s: float


@dataclass
class Part:
    """One part of a multipart (or url-encoded) body: a form field (filename None) or a file."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes  # the file's bytes, or the field's value encoded as UTF-8

    @property
    def value(self) -> str:
        return self.data.decode()


class FakeUpstream(Generic[R]):
    """An in-memory upstream served by Starlette. Thread-safe: driven from tests, served from uvicorn.

    Every request goes to the subclass's `_dispatch`, which builds its record (kind first) and
    passes it to `_record` before any check of its own, so injections beat auth and routing.
    """

    error_field: ClassVar[str] = "detail"  # the key of a default injected error body

    def __init__(self, kinds: Iterable[str], valid_key: str) -> None:
        self.valid_key = valid_key
        self.base_url: str | None = None
        # Re-entrant: fal's output callables may call put_file while the lock is held.
        self._lock = threading.RLock()
        self._kinds = frozenset(kinds)
        self.app = Starlette(
            routes=[Route("/{path:path}", self._answer, methods=["GET", "HEAD", "POST", "PUT", "DELETE"])]
        )
        self.reset()

    def reset(self) -> None:
        """Forget every request, file, injection and job: a fake served once is reused by many tests."""
        with self._lock:
            self.requests: list[R] = []
            self.files: dict[str, tuple[bytes, str]] = {}
            self._injections: dict[str, deque[Injection]] = {k: deque() for k in self._kinds}
            self._reset_state()

    def _reset_state(self) -> None:
        """A subclass's own state, as new."""

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
        `delay_s`). Status 0 means: delay, then answer normally; CUT: answer normally but drop
        the connection halfway through. Injections beat auth, like an ingress or gateway failure would."""
        if kind not in self._kinds:
            raise ValueError(f"kind must be one of {sorted(self._kinds)}, not {kind!r}")
        if body is None and status > 0:
            try:
                body = {self.error_field: HTTPStatus(status).phrase}
            except ValueError:  # e.g. 499 is not in http.HTTPStatus
                body = {self.error_field: f"HTTP {status}"}
        with self._lock:
            self._injections[kind].extend([Injection(status, dict(headers or {}), body, delay_s)] * times)

    def clear_injections(self) -> None:
        """Drop the injections not yet played (an outage ends); jobs and requests stay."""
        with self._lock:
            for queue in self._injections.values():
                queue.clear()

    def put_file(self, name: str, data: bytes, content_type: str) -> str:
        """Serve `data` (no auth) at `{base_url}/files/{name}` and return that URL, e.g. as an
        https input (set `base_url` to the served URL first)."""
        if self.base_url is None:
            raise RuntimeError("set fake.base_url to the served URL before put_file()")
        return self._store(self.base_url, name, data, content_type)

    def requests_of(self, kind: str) -> list[R]:
        with self._lock:
            return [r for r in self.requests if r.kind == kind]

    # ---- HTTP plumbing -----------------------------------------------------------------

    async def _answer(self, request: Request) -> Response:
        cut = [False]
        _cut_this_answer.set(cut)
        response = await self._dispatch(request)
        if not cut[0]:
            return response
        body = bytes(getattr(response, "body", b"") or b"{}")
        return TruncatedBody(body, response.headers.get("content-type", "application/json"), len(body) // 2)

    async def _dispatch(self, request: Request) -> Response:
        raise NotImplementedError

    async def _record(self, record: R) -> Response | None:
        """Log `record`, then play the next injection of its kind: the injected answer, or None
        to answer normally (nothing injected, or a status-0 delay)."""
        with self._lock:
            self.requests.append(record)
            queue = self._injections.get(record.kind)  # None for "unknown"
            injection = queue.popleft() if queue else None
        if injection is None:
            return None
        await anyio.sleep(injection.delay_s)
        if injection.status == CUT:
            _cut_this_answer.get()[0] = True
            return None
        return self._injected(injection) if injection.status else None

    def _injected(self, injection: Injection) -> Response:
        return JSONResponse(injection.body, injection.status, injection.headers)

    def _store(self, base: str, name: str, data: bytes, content_type: str) -> str:
        """Store a file and return its URL under `base` (the request's own base inside a request)."""
        with self._lock:
            self.files[name] = (data, content_type)
        return f"{base}/files/{quote(name)}"

    def _stored(self, path: str) -> tuple[bytes, str] | None:
        """The stored (data, content type) a `/files/{name}` path names."""
        with self._lock:
            return self.files.get(path.removeprefix("/files/"))


class TruncatedBody(Response):
    """An answer cut mid-body: Content-Length says more than is sent, then the connection drops."""

    def __init__(self, data: bytes, content_type: str, cut: int) -> None:
        self.data, self.cut = data, cut
        self.status_code, self.background = 200, None
        self.init_headers({"content-type": content_type, "content-length": str(len(data))})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.data[: self.cut], "more_body": True})


def no_route(wrong_method: bool = False) -> JSONResponse:
    """A router's answer to a path it does not serve (404), or to a wrong method on one (405)."""
    return JSONResponse({"detail": "Method Not Allowed" if wrong_method else "Not Found"}, 405 if wrong_method else 404)


async def read_parts(request: Request, max_part_size: int = 1024 * 1024) -> list[Part]:
    """Every part of a multipart (or url-encoded) body, in order, through Starlette's parser
    (a real one, so tests see what a server would); [] for other bodies. `max_part_size`
    caps a form field, not a file (Starlette's default: 1 MiB)."""
    if not request.headers.get("content-type", "").startswith(FORM_TYPES):
        return []
    parts: list[Part] = []
    async with request.form(max_part_size=max_part_size) as form:
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                parts.append(Part(name, value.filename or "", value.content_type, await value.read()))
            else:
                parts.append(Part(name, None, None, value.encode()))
    return parts


@lru_cache(maxsize=4)
def sine_wav(rate: int = 16_000, seconds: float = 0.5) -> bytes:
    """A quiet 440 Hz tone, mono 16-bit PCM WAV: small valid audio for generated outputs."""
    samples = array("h", (int(3000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(int(rate * seconds))))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return buffer.getvalue()


def silent_mp3(frames: int = 40) -> bytes:
    """Silent MPEG-1 Layer III frames (128 kbit/s, 44.1 kHz, 417 bytes, ~26 ms each): 40 is ~1 s."""
    return (b"\xff\xfb\x90\x64" + bytes(413)) * frames
