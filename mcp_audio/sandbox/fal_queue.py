"""A loopback fake of fal.ai's queue and storage HTTP API (see the fal queue protocol notes).

Serve `FakeFal().app` with `serve.serve_in_thread`, set `fake.base_url`, script endpoints,
inject failures, then inspect `fake.requests` / `fake.jobs` / `fake.files`. A body sent to an
endpoint of fal's published schemas (`fal_schemas.json`) is checked against its input schema
and refused as fal refuses it: 422 with a `detail` list naming each field; an endpoint the
snapshot lacks is a 404 (unless scripted). Unscripted outputs follow the endpoint's output schema. Job state is a
pure function of the clock (submit time + scripted queue/run durations), so nothing runs in
the background. Deliberate simplifications:
- a cancelled job completes at once with error_type `client_cancelled`; its result is 499;
- `X-Fal-Request-Timeout` shorter than the scripted queue time fails the job at the deadline
  with 504 `request_timeout` and `X-Fal-Request-Timeout-Type: user`, as fal does;
- multipart uploads (fal-client's, for files over 100 MiB) keep their parts in memory and
  check nothing but the token, the upload id and the part numbers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import struct
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from mcp_audio.sandbox import fal_contract, fal_sandbox
from mcp_audio.sandbox._base import FakeUpstream, TruncatedBody, no_route, silent_mp3, sine_wav

JSON = dict[str, Any]
Output = JSON | Callable[[JSON], JSON] | None
State = Literal["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
KINDS = frozenset(
    {"submit", "status", "stream", "result", "cancel", "token", "upload", "multipart", "file", "run", "jwks"}
)
JWKS_PATH = "/.well-known/jwks.json"  # fal's webhook keys (on rest.alpha.fal.ai)
WEBHOOK_USER = "fake-fal-user"
# fal.run (synchronous and streaming runs) is another host; the fake serves it under /run/.
RUN_PREFIX = "/run/"
_UNAUTHORIZED = {"detail": "No user found for Key ID and Secret"}
_CANCELLED: tuple[int, JSON, dict[str, str]] = (
    499,
    {"detail": "Request cancelled by user", "error_type": "client_cancelled"},
    {},
)
# {app}/requests/{id}[/status[/stream]|/cancel]; {app} is owner/alias (or namespace/owner/alias).
_QUEUE_PATH = re.compile(r"^/(?P<app>.+)/requests/(?P<rid>[^/]+)(?P<tail>/status/stream|/status|/cancel)?$")
# {access_url}/multipart/{upload id}/{part number | complete}, access_url being /files/{name}
_MULTIPART_PATH = re.compile(r"^/files/.+/multipart/(?P<uid>[0-9a-f]{32})/(?P<part>\d+|complete)$")
_QUEUE_ROUTES = {
    "": ("GET", "result"),
    "/status": ("GET", "status"),
    "/status/stream": ("GET", "stream"),
    "/cancel": ("PUT", "cancel"),
}


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    json: Any | None
    kind: str  # one of KINDS, or "unknown" for unrouted requests
    request_id: str | None
    time: float  # wall clock


@dataclass(frozen=True)
class Script:
    output: Output = None
    queue_s: float = 0.0
    run_s: float = 0.0
    logs: tuple[str, ...] = ()
    error: tuple[int, JSON, dict[str, str]] | None = None  # status, body, extra headers
    queue_positions: int | None = None
    stream_events: tuple[JSON, ...] = ()  # streaming runs: events before the final output event


@dataclass
class FakeJob:
    request_id: str
    endpoint_id: str
    app: str  # the owner/alias prefix used by status/result/cancel URLs
    input: JSON
    script: Script
    headers: dict[str, str]
    submitted_at: float = field(default_factory=time.monotonic)
    submitted_wall: float = field(default_factory=time.time)
    cancelled_at: float | None = None
    output: JSON | None = None  # computed on first observation of completion
    webhook_url: str | None = None  # the submit's fal_webhook
    # Its open status streams' wake-ups: set by a cancel, the one change no clock predicts.
    watchers: set[anyio.Event] = field(default_factory=set)

    @property
    def cancelled(self) -> bool:
        return self.cancelled_at is not None

    @property
    def state(self) -> State:
        return self.phase()[0]

    def _elapsed(self, now: float) -> float:
        end = self.cancelled_at if self.cancelled_at is not None else now
        return min(now, end) - self.submitted_at

    def phase(self, now: float | None = None) -> tuple[State, int]:
        """(state, queue_position); the position counts down evenly over queue_s to 0."""
        now = time.monotonic() if now is None else now
        t, s = self._elapsed(now), self.script
        if self.cancelled:
            return "COMPLETED", 0
        if t < s.queue_s:
            start = 3 if s.queue_positions is None else s.queue_positions
            return "IN_QUEUE", min(start, int((start + 1) * (s.queue_s - t) / s.queue_s))
        return ("IN_PROGRESS" if t < s.queue_s + s.run_s else "COMPLETED"), 0

    def next_change(self, now: float) -> float | None:
        """The monotonic time at which the status (state, queue position, visible logs) next
        changes by itself, or None once it never will: a status stream sleeps until then."""
        if self.cancelled:
            return None
        t, s = self._elapsed(now), self.script
        start = 3 if s.queue_positions is None else s.queue_positions
        steps = [s.queue_s * (1 - k / (start + 1)) for k in range(start, 0, -1)] if s.queue_s > 0 else []
        logs = [s.queue_s + s.run_s * i / len(s.logs) for i in range(len(s.logs))]
        due = [at for at in (*steps, *logs, s.queue_s, s.queue_s + s.run_s) if at > t]
        return self.submitted_at + min(due) if due else None

    def failure(self) -> tuple[int, JSON, dict[str, str]] | None:
        return _CANCELLED if self.cancelled else self.script.error

    def visible_logs(self, now: float) -> list[JSON]:
        """Log lines spread evenly over the run; line i appears at queue_s + run_s * i / n."""
        t, s, n = self._elapsed(now), self.script, len(self.script.logs)
        out = []
        for i, message in enumerate(s.logs):
            at = s.queue_s + s.run_s * i / n
            if t >= at:
                stamp = datetime.fromtimestamp(self.submitted_wall + at, tz=UTC)
                out.append({"message": message, "level": "INFO", "source": "user", "timestamp": stamp.isoformat()})
        return out


class FakeFal(FakeUpstream[RecordedRequest]):
    """In-memory fal queue + storage. Thread-safe: driven from tests, served from uvicorn."""

    def __init__(self, valid_key: str = "test-key", keepalive_s: float = 15.0) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        self.keepalive_s = keepalive_s
        # Webhooks are signed with the first; the key set also lists an unrelated one, as fal's has several.
        self.signing_key = Ed25519PrivateKey.generate()
        self._listed_keys = [Ed25519PrivateKey.generate().public_key(), self.signing_key.public_key()]
        super().__init__(KINDS, valid_key)

    def _reset_state(self) -> None:
        self.jobs: dict[str, FakeJob] = {}
        self._scripts: dict[str, Script] = {}
        self._stream_break: int | None = None
        self._file_break: int | None = None
        self._fail_after_create: int | None = None
        self._refuse_submit: tuple[int, Any] | None = None
        self._stream_mute = False
        self._tokens: set[str] = set()
        self._pending_uploads: dict[str, str] = {}  # signed-PUT name -> content type
        self._multipart: dict[str, tuple[str, str, dict[int, bytes]]] = {}  # id -> name, type, parts
        self.send_webhooks = True  # False: a submit's fal_webhook is never called (lost deliveries)
        self.webhooks: list[tuple[str, int]] = []  # (request id, the receiver's HTTP status) per delivery

    # ---- test-side controls -------------------------------------------------------------

    def script(
        self,
        endpoint_id: str,
        *,
        output: Output = None,
        queue_s: float = 0.0,
        run_s: float = 0.0,
        logs: Iterable[str] = (),
        error: tuple[int, JSON] | tuple[int, JSON, dict[str, str]] | None = None,
        queue_positions: int | None = None,
        stream_events: Iterable[JSON] = (),
    ) -> None:
        """Script every later submit to `endpoint_id` (exact id). `error` may carry a third
        item, extra response headers for the result (e.g. X-Fal-Retryable). A streaming run
        (`POST /run/{endpoint_id}`) sends `stream_events` over `run_s`, then the output."""
        err: tuple[int, JSON, dict[str, str]] | None = None
        if error is not None:
            status, body, *extra = error
            err = (status, body, dict(extra[0]) if extra else {})
        with self._lock:
            self._scripts[endpoint_id] = Script(
                output, queue_s, run_s, tuple(logs), err, queue_positions, tuple(stream_events)
            )

    def fail_submit_after_creating(self, status: int) -> None:
        """The next submit creates its job, then answers `status` (with X-Fal-Request-Id), as a
        gateway that fails after the queue accepted the request does."""
        with self._lock:
            self._fail_after_create = status

    def refuse_next_submit(self, status: int, detail: Any) -> None:
        """The next submit is refused with `status` and `detail`, creating no job (as fal refuses a
        body it will not run: 422 with its field messages)."""
        with self._lock:
            self._refuse_submit = (status, detail)

    def break_file_after(self, n_bytes: int) -> None:
        """The next file download announces its full length but drops after n bytes."""
        with self._lock:
            self._file_break = n_bytes

    def mute_next_stream(self) -> None:
        """The next status stream sends only keep-alive comments, never a status, and stays open."""
        with self._lock:
            self._stream_mute = True

    def break_stream_after(self, n_events: int) -> None:
        """The next status stream drops the connection (no final chunk) after n data events."""
        with self._lock:
            self._stream_break = n_events

    # ---- webhooks: fal POSTs a job's outcome to the submit's fal_webhook, signed ------------

    def signed_headers(self, request_id: str, body: bytes, *, key: Any = None, timestamp: int | None = None) -> JSON:
        """fal's signature headers for `body` (tests forge with another `key` or an old `timestamp`)."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        # fal's published scheme, written out here (not shared with the server's verifier, so a
        # wrong format on either side shows in the tests): id, user, timestamp, body SHA-256 hex.
        message = "\n".join([request_id, WEBHOOK_USER, stamp, hashlib.sha256(body).hexdigest()]).encode()
        signature = (key or self.signing_key).sign(message)
        return {
            "Content-Type": "application/json",
            "X-Fal-Webhook-Request-Id": request_id,
            "X-Fal-Webhook-User-Id": WEBHOOK_USER,
            "X-Fal-Webhook-Timestamp": stamp,
            "X-Fal-Webhook-Signature": signature.hex(),
        }

    def webhook_body(self, request_id: str) -> bytes:
        """What fal POSTs for a finished job: its output, or its error."""
        job = self.jobs[request_id]
        failure = job.failure()
        if failure is not None:
            _, body, _ = failure
            outcome: JSON = {"status": "ERROR", "error": _error_message(body), "payload": body}
        else:
            outcome = {"status": "OK", "payload": self._ensure_output(job, self.base_url or "")}
        return json.dumps({"request_id": request_id, "gateway_request_id": request_id, **outcome}).encode()

    def deliver_webhook(self, request_id: str) -> int:
        """POST the job's webhook to its submit's fal_webhook now; the receiver's HTTP status."""
        import httpx

        url = self.jobs[request_id].webhook_url
        assert url is not None, "the job was submitted without fal_webhook"
        body = self.webhook_body(request_id)
        headers = self.signed_headers(request_id, body)
        try:
            with httpx.Client(trust_env=False, timeout=10) as http:
                status = http.post(url, content=body, headers=headers).status_code
        except httpx.HTTPError:
            status = 0
        with self._lock:
            self.webhooks.append((request_id, status))
        return status

    def _schedule_webhook(self, job: FakeJob) -> None:
        def deliver() -> None:
            with self._lock:
                current = self.jobs.get(job.request_id) is job and self.send_webhooks
            if current:
                self.deliver_webhook(job.request_id)

        timer = threading.Timer(job.script.queue_s + job.script.run_s + 0.05, deliver)
        timer.daemon = True
        timer.start()

    def jwks(self) -> JSON:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        raw = [key.public_bytes(Encoding.Raw, PublicFormat.Raw) for key in self._listed_keys]
        # One without padding, one with: fal's set has been seen both ways.
        x = [base64.urlsafe_b64encode(raw[0]).decode().rstrip("="), base64.urlsafe_b64encode(raw[1]).decode()]
        return {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": f"k{n}", "x": value} for n, value in enumerate(x)]}

    def _on_jwks(self, request: Request, record: RecordedRequest, base: str) -> Response:
        return JSONResponse(self.jwks())

    def requests_for(self, request_id: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.request_id == request_id]

    # ---- HTTP plumbing -----------------------------------------------------------------

    async def _dispatch(self, request: Request) -> Response:
        method, path = request.method, request.url.path
        kind, rid, wrong_method = _classify(method, path)
        body = await request.body()
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        if kind == "file":  # default outputs live under /files/{request_id}/...
            first = path.removeprefix("/files/").split("/", 1)[0]
            rid = first if first in self.jobs else None
        record = RecordedRequest(
            method,
            path,
            dict(request.query_params),
            {k.lower(): v for k, v in request.headers.items()},
            body,
            parsed,
            kind,
            rid,
            time.time(),
        )
        injected = await self._record(record)
        if injected is not None:
            return injected
        if kind == "unknown":
            return no_route(wrong_method)
        base = self.base_url or str(request.base_url).rstrip("/")
        handler: Callable[[Request, RecordedRequest, str], Response] = getattr(self, f"_on_{kind}")
        return handler(request, record, base)

    def _key_ok(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Key {self.valid_key}"

    def _urls(self, job: FakeJob, base: str) -> JSON:
        root = f"{base}/{job.app}/requests/{job.request_id}"
        return {"status_url": f"{root}/status", "response_url": root, "cancel_url": f"{root}/cancel"}

    def _job(self, request: Request, record: RecordedRequest) -> FakeJob | None:
        """The job a queue path names, if it exists under that app prefix."""
        match = _QUEUE_PATH.match(request.url.path)
        job = self.jobs.get(record.request_id or "")
        ok = job is not None and match is not None and match["app"] == job.app
        return job if ok else None

    # ---- queue -------------------------------------------------------------------------

    def _refused(self, endpoint_id: str, body: JSON) -> Response | None:
        """fal's own answer to a body its published schema refuses: 422 with `detail` per field;
        404 for an endpoint fal does not have (unless a test scripted it)."""
        if not fal_contract.known(endpoint_id):
            with self._lock:
                scripted = endpoint_id in self._scripts
            if scripted:
                return None  # tests of the fake itself, on made-up endpoints
            return JSONResponse({"detail": f"Application '{endpoint_id}' not found"}, 404)
        errors = fal_contract.validate_input(endpoint_id, body)
        return JSONResponse({"detail": errors}, 422) if errors else None

    def _on_submit(self, request: Request, record: RecordedRequest, base: str) -> Response:
        if not self._key_ok(request):
            return JSONResponse(_UNAUTHORIZED, 401)
        if not isinstance(record.json, dict):
            return JSONResponse({"detail": "Request body must be a JSON object"}, 400)
        endpoint_id = request.url.path.strip("/")
        refused = self._refused(endpoint_id, record.json)
        with self._lock:
            scripted_refusal, self._refuse_submit = self._refuse_submit, None
        if scripted_refusal is not None:
            refused = JSONResponse({"detail": scripted_refusal[1]}, scripted_refusal[0])
        if refused is not None:
            return refused
        with self._lock:
            script = self._scripts.get(endpoint_id, Script())
            timeout = _float_or_none(record.headers.get("x-fal-request-timeout"))
            if timeout is not None and script.queue_s > timeout:
                # The job would not start before the caller's deadline: fal gives up then.
                script = replace(
                    script,
                    queue_s=timeout,
                    run_s=0.0,
                    logs=(),
                    error=(
                        504,
                        {"detail": "Request timed out", "error_type": "request_timeout"},
                        {"X-Fal-Request-Timeout-Type": "user", "X-Fal-Error-Type": "request_timeout"},
                    ),
                )
            job = FakeJob(str(uuid.uuid4()), endpoint_id, _app_prefix(endpoint_id), record.json, script, record.headers)
            job.webhook_url = record.query.get("fal_webhook")
            self.jobs[job.request_id] = job
            record.request_id = job.request_id
            _, position = job.phase()
            failed, self._fail_after_create = self._fail_after_create, None
        if job.webhook_url:
            self._schedule_webhook(job)
        if failed is not None:
            return JSONResponse(
                {"detail": "upstream connect error"}, failed, headers={"X-Fal-Request-Id": job.request_id}
            )
        return JSONResponse(
            {"request_id": job.request_id, "status": "IN_QUEUE", "queue_position": position, **self._urls(job, base)},
            headers={"X-Fal-Request-Id": job.request_id},
        )

    def _status_body(self, job: FakeJob, base: str, with_logs: bool) -> JSON:
        """The status object fal returns for `job` right now (also each SSE event's data)."""
        with self._lock:
            now = time.monotonic()
            state, position = job.phase(now)
            body: JSON = {"status": state, "request_id": job.request_id, **self._urls(job, base)}
            if state == "IN_QUEUE":
                body.update(queue_position=position, logs=None)
                return body
            body["logs"] = job.visible_logs(now) if with_logs else None
            if state == "COMPLETED":
                body["metrics"] = {} if job.cancelled else {"inference_time": job.script.run_s}
                failure = job.failure()
                if failure is not None:
                    body["error"] = _error_message(failure[1])
                    body["error_type"] = failure[1].get("error_type")
                else:
                    self._ensure_output(job, base)
            return body

    def _on_status(self, request: Request, record: RecordedRequest, base: str) -> Response:
        if not self._key_ok(request):
            return JSONResponse(_UNAUTHORIZED, 401)
        job = self._job(request, record)
        if job is None:
            return JSONResponse({"detail": "Request not found"}, 404)
        body = self._status_body(job, base, _wants_logs(request))
        return JSONResponse(body, 200 if body["status"] == "COMPLETED" else 202)

    def _on_stream(self, request: Request, record: RecordedRequest, base: str) -> Response:
        if not self._key_ok(request):
            return JSONResponse(_UNAUTHORIZED, 401)
        job = self._job(request, record)
        if job is None:
            return JSONResponse({"detail": "Request not found"}, 404)
        with self._lock:
            break_after, self._stream_break = self._stream_break, None
            mute, self._stream_mute = self._stream_mute, False
        return _StatusStream(self, job, base, _wants_logs(request), break_after, mute)

    def _on_result(self, request: Request, record: RecordedRequest, base: str) -> Response:
        if not self._key_ok(request):
            return JSONResponse(_UNAUTHORIZED, 401)
        job = self._job(request, record)
        if job is None:
            return JSONResponse({"detail": "Request not found"}, 404)
        if job.state != "COMPLETED":
            return JSONResponse({"detail": "Request is still in progress"}, 400)
        headers = {"X-Fal-Request-Id": job.request_id}
        failure = job.failure()
        if failure is not None:
            status, body, extra = failure
            if body.get("error_type"):
                headers["X-Fal-Error-Type"] = str(body["error_type"])
            return JSONResponse(body, status, {**headers, **extra})
        with self._lock:
            return JSONResponse(self._ensure_output(job, base), 200, headers)

    def _on_run(self, request: Request, record: RecordedRequest, base: str) -> Response:
        """fal.run streaming: SSE of the scripted events, then the output as the last event."""
        if not self._key_ok(request):
            return JSONResponse(_UNAUTHORIZED, 401)
        if not isinstance(record.json, dict):
            return JSONResponse({"detail": "Request body must be a JSON object"}, 400)
        endpoint_id = request.url.path.removeprefix(RUN_PREFIX).strip("/")
        refused = self._refused(endpoint_id, record.json)
        if refused is not None:
            return refused
        with self._lock:
            script = self._scripts.get(endpoint_id, Script())
            job = FakeJob(str(uuid.uuid4()), endpoint_id, _app_prefix(endpoint_id), record.json, script, record.headers)
            self.jobs[job.request_id] = job
            record.request_id = job.request_id
        if script.error is not None:
            status, body, extra = script.error
            return JSONResponse(body, status, extra)
        gap = script.run_s / (len(script.stream_events) + 1)

        async def events() -> Any:
            for event in script.stream_events:
                await anyio.sleep(gap)
                yield f"data: {json.dumps(event)}\n\n"
            await anyio.sleep(gap)
            with self._lock:
                output = self._ensure_output(job, base)
            yield f"data: {json.dumps(output)}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    def _on_cancel(self, request: Request, record: RecordedRequest, base: str) -> Response:
        if not self._key_ok(request):
            return JSONResponse(_UNAUTHORIZED, 401)
        with self._lock:
            job = self._job(request, record)
            if job is None:
                return JSONResponse({"status": "NOT_FOUND"}, 404)
            if job.state == "COMPLETED":
                return JSONResponse({"status": "ALREADY_COMPLETED"}, 400)
            job.cancelled_at = time.monotonic()
            wake = list(job.watchers)
        for event in wake:  # its status streams send the cancelled status now
            event.set()
        return JSONResponse({"status": "CANCELLATION_REQUESTED"}, 202)

    def _ensure_output(self, job: FakeJob, base: str) -> JSON:
        """Compute (once) the job's output; files are stored at this point, like a real run."""
        with self._lock:
            if job.output is None:
                spec = job.script.output
                if callable(spec):
                    job.output = spec(json.loads(json.dumps(job.input)))
                else:
                    job.output = spec if spec is not None else self._default_output(job, base)
            return job.output

    def _default_output(self, job: FakeJob, base: str) -> JSON:
        """An output shaped by the endpoint's published output schema, its files stored here.

        Endpoints the snapshot lacks (only reachable when scripted) get `{audio: File}`."""
        eid = job.endpoint_id
        made = fal_sandbox.make(eid, job.input, self._own_file)

        def make_file(kind: fal_contract.FileKind, name: str) -> JSON:
            found = made.file if kind == "audio" and made.file is not None else None
            data, content_type, ext = found or _sample_file(eid, kind, name)
            file_name = f"{name}.{ext}"
            url = self._store(base, f"{job.request_id}/{file_name}", data, content_type)
            return {"url": url, "content_type": content_type, "file_name": file_name, "file_size": len(data)}

        known = fal_contract.known(eid)
        output = fal_contract.sample_output(eid, make_file) if known else {"audio": make_file("audio", "audio")}
        return fal_sandbox.finish(eid, job.input, output, made, self._own_file)

    def _own_file(self, url: str) -> bytes | None:
        """The bytes of a file this fake serves (an upload or an output), by its URL."""
        found = self._stored(unquote(urlsplit(url).path))
        return found[0] if found else None

    # ---- storage -----------------------------------------------------------------------

    def _on_token(self, request: Request, record: RecordedRequest, base: str) -> Response:
        if not self._key_ok(request):
            return JSONResponse(_UNAUTHORIZED, 401)
        token = secrets.token_urlsafe(16)
        with self._lock:
            self._tokens.add(token)
        expires = datetime.now(UTC) + timedelta(hours=1)
        return JSONResponse(
            {"token": token, "token_type": "Bearer", "base_url": base, "expires_at": expires.isoformat()}
        )

    def _token_ok(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme == "Bearer" and token in self._tokens

    def _on_multipart(self, request: Request, record: RecordedRequest, base: str) -> Response:
        """fal_v3 multipart: create (POST /files/upload/multipart), PUT each part to
        {access_url}/multipart/{id}/{n} (answered with an ETag), then POST .../complete."""
        if not self._token_ok(request):
            return JSONResponse({"detail": "Invalid or expired token"}, 401)
        path = request.url.path
        if path == "/files/upload/multipart":
            name = _unique_name(request.headers.get("x-fal-file-name"))
            upload_id = uuid.uuid4().hex
            content_type = request.headers.get("content-type") or "application/octet-stream"
            with self._lock:
                self._multipart[upload_id] = (name, content_type, {})
            return JSONResponse({"access_url": f"{base}/files/{quote(name)}", "uploadId": upload_id})
        match = _MULTIPART_PATH.match(path)
        with self._lock:
            upload = self._multipart.get(match["uid"]) if match else None
        if match is None or upload is None:
            return JSONResponse({"detail": "Unknown upload"}, 404)
        name, content_type, parts = upload
        if match["part"] != "complete":
            with self._lock:
                parts[int(match["part"])] = record.body
            return Response(status_code=200, headers={"ETag": f'"{len(record.body):x}-{match["part"]}"'})
        listed = record.json.get("parts") if isinstance(record.json, dict) else None
        numbers = sorted(int(p["partNumber"]) for p in listed or [] if isinstance(p, dict) and "partNumber" in p)
        if not numbers or numbers != sorted(parts) or numbers != list(range(1, len(numbers) + 1)):
            return JSONResponse({"detail": "Parts missing or out of order"}, 400)
        with self._lock:
            del self._multipart[match["uid"]]
        self._store(base, name, b"".join(parts[n] for n in numbers), content_type)
        return JSONResponse({"access_url": f"{base}/files/{quote(name)}"})

    def _on_upload(self, request: Request, record: RecordedRequest, base: str) -> Response:
        path, content_type = request.url.path, request.headers.get("content-type", "")
        if path == "/files/upload":  # fal_v3 CDN: single-part upload with a storage token
            if not self._token_ok(request):
                return JSONResponse({"detail": "Invalid or expired token"}, 401)
            name = _unique_name(request.headers.get("x-fal-file-name"))
            return JSONResponse(
                {"access_url": self._store(base, name, record.body, content_type or "application/octet-stream")}
            )
        if path == "/storage/upload/initiate":  # fal-client's fallback: a signed PUT URL
            if not self._key_ok(request):
                return JSONResponse(_UNAUTHORIZED, 401)
            info = record.json if isinstance(record.json, dict) else {}
            name = _unique_name(info.get("file_name"))
            with self._lock:
                self._pending_uploads[name] = info.get("content_type", "application/octet-stream")
            return JSONResponse(
                {"upload_url": f"{base}/storage/upload/put/{quote(name)}", "file_url": f"{base}/files/{quote(name)}"}
            )
        name = path.removeprefix("/storage/upload/put/")  # the signed PUT itself: no auth
        with self._lock:
            expected = self._pending_uploads.pop(name, None)
        if expected is None:
            return JSONResponse({"detail": "Unknown upload"}, 404)
        self._store(base, name, record.body, content_type or expected)
        return Response(status_code=200)

    def _on_file(self, request: Request, record: RecordedRequest, base: str) -> Response:
        found = self._stored(request.url.path)
        with self._lock:
            cut, self._file_break = self._file_break, None
        if found is None:
            return JSONResponse({"detail": "File not found"}, 404)
        if cut is not None:
            return TruncatedBody(found[0], found[1], cut)
        return Response(found[0], media_type=found[1])


class _StatusStream(Response):
    """SSE of status objects: one now, one per change, `: ping` while idle, end after
    COMPLETED. A break drops the connection without the final chunk, like a network cut."""

    def __init__(
        self, fake: FakeFal, job: FakeJob, base: str, with_logs: bool, break_after: int | None, mute: bool = False
    ) -> None:
        self.fake, self.job, self.base = fake, job, base
        self.with_logs, self.break_after, self.mute = with_logs, break_after, mute
        self.status_code, self.background = 200, None
        self.init_headers(
            {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", "x-accel-buffering": "no"}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        finished = False
        async with anyio.create_task_group() as tg:

            async def pump() -> None:
                nonlocal finished
                finished = await self._pump(send)
                tg.cancel_scope.cancel()

            tg.start_soon(pump)
            while (await receive())["type"] != "http.disconnect":
                pass
            tg.cancel_scope.cancel()  # the client went away: stop polling
        if finished:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _pump(self, send: Send) -> bool:
        """Send events; True when COMPLETED was sent, False for a scripted break."""
        while self.mute:  # a stuck proxy: keep-alives only, until the client goes away
            await send({"type": "http.response.body", "body": b": ping\n\n", "more_body": True})
            await anyio.sleep(self.fake.keepalive_s)
        last: JSON | None = None
        sent, last_write = 0, time.monotonic()
        while self.break_after is None or sent < self.break_after:
            body = self.fake._status_body(self.job, self.base, self.with_logs)
            now = time.monotonic()
            if body != last:
                chunk = f"data: {json.dumps(body)}\n\n".encode()
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                sent, last, last_write = sent + 1, body, now
                if body["status"] == "COMPLETED":
                    return True
            elif now - last_write >= self.fake.keepalive_s:
                await send({"type": "http.response.body", "body": b": ping\n\n", "more_body": True})
                last_write = now
            await self._until_change(last_write + self.fake.keepalive_s)
        return False

    async def _until_change(self, keepalive_at: float) -> None:
        """Sleep until the job's status changes (its script's next step, or a cancel) or a
        keep-alive is due: thousands of open streams cost nothing while nothing changes."""
        with self.fake._lock:
            change = self.job.next_change(time.monotonic())
            wake = anyio.Event()
            self.job.watchers.add(wake)
        try:
            at = keepalive_at if change is None else min(change, keepalive_at)
            with anyio.move_on_after(max(0.0, at - time.monotonic()) + 0.001):  # past the step, not just before
                await wake.wait()
        finally:
            with self.fake._lock:
                self.job.watchers.discard(wake)


# ---- helpers ---------------------------------------------------------------------------


def _classify(method: str, path: str) -> tuple[str, str | None, bool]:
    """(kind, request id, wrong_method) for a request line. Queue paths are matched before
    submit so `POST /a/b/requests/x/status` is a 405, never a new job."""
    if method == "HEAD":
        method = "GET"
    if (method == "POST" and path == "/files/upload/multipart") or _MULTIPART_PATH.match(path):
        return ("multipart", None, False) if method in ("POST", "PUT") else ("unknown", None, True)
    if path == JWKS_PATH:
        return ("jwks", None, False) if method == "GET" else ("unknown", None, True)
    if path == "/storage/auth/token":
        return ("token", None, False) if method == "POST" else ("unknown", None, True)
    if (method, path) in (("POST", "/files/upload"), ("POST", "/storage/upload/initiate")) or (
        method == "PUT" and path.startswith("/storage/upload/put/")
    ):
        return "upload", None, False
    if path.startswith("/files/") and method == "GET":
        return "file", None, False
    if path.startswith(RUN_PREFIX):
        return ("run", None, False) if method == "POST" else ("unknown", None, True)
    match = _QUEUE_PATH.match(path)
    if match:
        want_method, kind = _QUEUE_ROUTES[match["tail"] or ""]
        if method != want_method:
            return "unknown", match["rid"], True
        return kind, match["rid"], False
    if method == "POST" and len(path.strip("/").split("/")) >= 2:
        return "submit", None, False
    return "unknown", None, method != "POST" and len(path.strip("/").split("/")) >= 2


def _app_prefix(endpoint_id: str) -> str:
    """`fal-ai/qwen-3-tts/text-to-speech/1.7b` -> `fal-ai/qwen-3-tts`; namespaces add one."""
    parts = endpoint_id.split("/")
    return "/".join(parts[:3] if parts[0] in ("workflows", "comfy") else parts[:2])


def _wants_logs(request: Request) -> bool:
    return request.query_params.get("logs", "").lower() in ("1", "true")


def _float_or_none(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _error_message(body: JSON) -> str:
    detail = body.get("detail")
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):  # 422 validation errors: join their messages
        return "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
    return json.dumps(body)


def _unique_name(file_name: str | None) -> str:
    base = (file_name or "").replace("\\", "/").rsplit("/", 1)[-1].strip() or "upload.bin"
    return f"{uuid.uuid4().hex[:16]}/{base}"


def _sample_file(endpoint_id: str, kind: fal_contract.FileKind, name: str) -> tuple[bytes, str, str]:
    """(bytes, content type, extension) of a plausible file for an output field."""
    if kind == "video":
        return _MP4, "video/mp4", "mp4"
    if kind == "file":
        if "embedding" in name:
            return _safetensors(), "application/octet-stream", "safetensors"
        return b"{}", "application/json", "json"
    if endpoint_id.startswith("fal-ai/elevenlabs/sound-effects"):  # ElevenLabs answers MP3 by default
        return silent_mp3(20), "audio/mpeg", "mp3"
    return sine_wav(rate=16_000), "audio/wav", "wav"


# The smallest MP4 header a player recognises (an `ftyp` box): enough for a download test.
_MP4 = bytes.fromhex("0000001866747970") + b"isom" + bytes(4) + b"isomiso2"


@lru_cache(maxsize=1)
def _safetensors() -> bytes:
    """A valid one-tensor safetensors file (4 float32 zeros)."""
    header = json.dumps({"embedding": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})
    return struct.pack("<Q", len(header)) + header.encode() + bytes(16)


if __name__ == "__main__":
    from mcp_audio.sandbox.serve import main

    main(["fal", *sys.argv[1:]])
