"""The Voice API (an API-marketplace listing): TTS, STT and voice cloning as upstream tasks.

Every call creates a task (`POST /v1/{kind}`) that is polled (`GET /v1/{kind}/{task_id}`)
until `status` is `succeeded`; the output is then fetched the way each kind returns it: TTS
as MP3 bytes (`/audio`), STT as JSON (`/result?plain_text=`), clone as `result.model_id` in
the status itself. Only `succeeded` is documented: other values are taken as "still
running", and `failed`/`error`/`cancelled` as the end. Facts and guesses:
../shared/notes/providers.md ("Voice API") and manifests/voice-api.toml.

The endpoint ids of the manifest are the task kinds: "tts", "stt", "clone". TTS takes a JSON
body; STT and clone take multipart forms whose file part is the `audio` input (a `file://`
URI of a checked local file, an http(s) URL, or a data URI: all sent as bytes).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import anyio
import httpx

from mcp_audio.errors import (
    InvalidArguments,
    McpAudioError,
    ProviderError,
    UpstreamJobFailed,
    UpstreamRejected,
    UpstreamUnavailable,
)
from mcp_audio.providers._file_parts import form_value, media_type, read_file_part
from mcp_audio.providers._http import (
    NOT_SENT_ERRORS,
    SAFE_SUBMIT_STATUSES,
    HttpProvider,
    error_detail,
    require_key,
    send,
)
from mcp_audio.providers.base import FileSink, Report, Submitted, Update

log = logging.getLogger("mcp_audio.voice_api")
KEY_ENV = "VOICE_API_KEY"
LABEL = "Voice API"  # how messages name this upstream
KINDS = ("tts", "stt", "clone")
# The multipart file part of each form kind; the manifest's file input has this name.
FILE_FIELDS = {"stt": "audio", "clone": "audio"}
# Tool inputs that are not part of the submit: popped from the payload into the handle.
# stt: `plain_text` is a query parameter of GET /v1/stt/{id}/result (default false).
HANDLE_FIELDS: dict[str, tuple[str, ...]] = {"stt": ("plain_text",)}
FAILED_STATUSES = frozenset({"failed", "error", "cancelled", "canceled"})
MODELS_TTL_S = 300.0


class VoiceApiProvider(HttpProvider):
    name = "voice_api"
    max_upload_bytes = 50 * 2**20  # one multipart request; far above any 90 s reference clip
    takes_file_bytes = True  # files travel as multipart parts, never uploaded separately
    upload_lifetime_s = 0.0
    models_ttl_s = MODELS_TTL_S

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str,
        host: str,
        http: httpx.AsyncClient | None = None,
        poll_interval: tuple[float, float] = (0.5, 8.0),
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._host = host
        # Long reads: an upload of a big recording or an MP3 download can take a while.
        super().__init__(api_key, http, httpx.Timeout(60.0, connect=10.0))
        self._poll_interval = poll_interval
        self._models: dict[tuple[tuple[str, str], ...], tuple[float, list[dict[str, Any]]]] = {}

    def _headers(self) -> dict[str, str]:
        needs = "the Voice API, which needs the API key of your subscription to its marketplace listing"
        key = require_key(self._api_key, KEY_ENV, needs)
        return {"X-RapidAPI-Key": key, "X-RapidAPI-Host": self._host}

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("headers", self._headers())
        return await send(self._http, method, f"{self._base_url}{path}", provider=LABEL, key_env=KEY_ENV, **kwargs)

    async def health(self) -> str:
        """`GET /v1/health` needs no key: it proves DNS, TLS, routing and the service itself."""
        try:
            response = await self._http.get(f"{self._base_url}/v1/health")
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(f"{LABEL} could not be reached ({type(exc).__name__})", provider=LABEL) from exc
        if response.status_code >= 400:
            raise UpstreamUnavailable(
                f"{LABEL} health check answered HTTP {response.status_code}: {error_detail(response)}",
                provider=LABEL,
                status_code=response.status_code,
            )
        return f"healthy (HTTP {response.status_code})"

    # --- tasks --------------------------------------------------------------------------

    async def submit(self, endpoint: str, payload: dict[str, Any]) -> Submitted:
        kind = _kind(endpoint)
        body = dict(payload)
        extras = {name: body.pop(name) for name in HANDLE_FIELDS.get(kind, ()) if name in body}
        # Only answers that prove no task was created (429, ingress 5xx) and connection
        # failures before sending are retried: a read timeout may hide a billed task.
        safe: dict[str, Any] = {"retry_statuses": SAFE_SUBMIT_STATUSES, "retry_errors": NOT_SENT_ERRORS}
        if kind == "tts":
            response = await self._send("POST", "/v1/tts", json=body, **safe)
        else:
            self._headers()  # a missing key fails before any file is read or fetched
            field = FILE_FIELDS[kind]
            source = body.pop(field, None)
            if not isinstance(source, str):
                raise InvalidArguments(f"`{field}`: required: an audio file path or URL.")
            part = await read_file_part(self._http, field, source, max_bytes=self.max_upload_bytes, upstream=LABEL)
            form = {key: form_value(value) for key, value in body.items()}
            response = await self._send("POST", f"/v1/{kind}", data=form, files={field: part}, **safe)
        task_id = _task_id(response)
        handle: dict[str, Any] = {"kind": kind, "task_id": task_id}
        if kind == "stt":
            handle["plain_text"] = bool(extras.get("plain_text", False))
        return Submitted(upstream_id=task_id, handle=handle)

    async def follow(self, endpoint: str, handle: dict[str, Any], report: Report, files: FileSink) -> dict[str, Any]:
        kind, task_id = handle["kind"], str(handle["task_id"])
        interval, ceiling = self._poll_interval
        last: tuple[str, float | None] | None = None
        while True:
            status = _json_object(await self._send("GET", f"/v1/{kind}/{task_id}"))
            state = str(status.get("status") or "").lower()
            if state == "succeeded":
                return await self._output(kind, task_id, handle, status, files)
            if state in FAILED_STATUSES:
                reason = _failure_message(status) or "no reason given"
                raise UpstreamJobFailed(f"{LABEL} {kind} task {task_id} {state}: {reason}", provider=LABEL)
            progress = _progress(status.get("progress"))
            if (state, progress) != last:
                last = (state, progress)
                line = (state or "running") + (f" {progress:g}%" if progress is not None else "")
                await report(Update(state="running", progress=progress, logs=[line]))
            # Short first: most tasks end in seconds; long ones do not need fast polling.
            await anyio.sleep(interval)
            interval = min(ceiling, interval * 1.5)

    async def _output(
        self, kind: str, task_id: str, handle: dict[str, Any], status: dict[str, Any], files: FileSink
    ) -> dict[str, Any]:
        if kind == "tts":
            response = await self._send("GET", f"/v1/tts/{task_id}/audio")
            if not response.content:
                raise UpstreamJobFailed(f"{LABEL} tts task {task_id} succeeded but its audio is empty", provider=LABEL)
            content_type = media_type(response)
            audio_type = content_type if content_type.startswith("audio/") else "audio/mpeg"
            return {"audio": files(response.content, audio_type)}
        if kind == "stt":
            plain = "true" if handle.get("plain_text") else "false"
            response = await self._send("GET", f"/v1/stt/{task_id}/result", params={"plain_text": plain})
            try:
                result = response.json()
            except ValueError:  # a bare transcript
                return {"text": response.text}
            return result if isinstance(result, dict) else {"text": result}
        result = status.get("result")
        if not isinstance(result, dict) or not result.get("model_id"):
            raise UpstreamJobFailed(f"{LABEL} clone task {task_id} succeeded without a model_id", provider=LABEL)
        return {"model_id": result["model_id"], **{k: v for k, v in result.items() if k != "model_id"}}

    async def stream(
        self, endpoint: str, payload: dict[str, Any], report: Report, partial_path: str | None, files: FileSink
    ) -> dict[str, Any]:
        raise McpAudioError(f'{LABEL} tools run as tasks: their manifest must say mode = "queue"')

    async def upload(self, data: bytes, content_type: str, file_name: str) -> str:
        raise McpAudioError(f"{LABEL} takes files as multipart parts of the task request; it has no upload step")

    async def cancel(self, endpoint: str, handle: dict[str, Any]) -> bool:
        raise UpstreamRejected(
            f"The {LABEL} cannot cancel tasks; task {handle.get('task_id')} keeps running upstream and it will "
            "finish on its own (get_job returns its result).",
            provider=LABEL,
        )

    # --- voice models -------------------------------------------------------------------

    async def list_models(
        self,
        *,
        title: str | None = None,
        language: str | None = None,
        tag: str | None = None,
        sort: str | None = None,
        refresh: bool = False,
    ) -> list[dict[str, Any]]:
        """Voice models (`GET /v1/models`), filtered upstream; cached 5 minutes per filter set.

        `refresh` skips this cache and asks the upstream to skip its own (`refresh=true`).
        """
        params = {k: v for k, v in (("title", title), ("language", language), ("tag", tag), ("sort", sort)) if v}
        key = tuple(sorted(params.items()))
        cached = self._models.get(key)
        if cached is not None and not refresh and time.monotonic() - cached[0] < self.models_ttl_s:
            return [dict(model) for model in cached[1]]
        if refresh:
            params["refresh"] = "true"
        body = (await self._send("GET", "/v1/models", params=params)).json()
        models = _model_list(body)
        self._models[key] = (time.monotonic(), models)
        return [dict(model) for model in models]


# --- helpers ------------------------------------------------------------------------------


def _kind(endpoint: str) -> str:
    if endpoint not in KINDS:
        raise McpAudioError(f"{LABEL} has no task kind {endpoint!r}; the manifest endpoint must be one of {KINDS}")
    return endpoint


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ProviderError(
            f"{LABEL} answered {response.request.url.path} with something other than a JSON object: "
            f"{response.text[:200]}",
            provider=LABEL,
            status_code=response.status_code,
        )
    return body


def _task_id(response: httpx.Response) -> str:
    body = _json_object(response)
    task_id = body.get("task_id") or body.get("id")
    if not task_id:
        raise ProviderError(f"{LABEL} accepted the task but sent no task_id: {str(body)[:200]}", provider=LABEL)
    return str(task_id)


def _progress(value: Any) -> float | None:
    try:
        return max(0.0, min(100.0, float(value))) if value is not None else None
    except (TypeError, ValueError):
        return None


def _failure_message(status: dict[str, Any]) -> str:
    for key in ("error", "message", "detail", "reason"):
        value = status.get(key)
        if isinstance(value, dict):
            value = value.get("message") or value.get("detail") or json.dumps(value)
        if value:
            return str(value)[:500]
    return ""


def _model_list(body: Any) -> list[dict[str, Any]]:
    """A list of models, whether the upstream sends a bare list or a page object."""
    if isinstance(body, dict):
        for key in ("items", "models", "data", "results"):
            if isinstance(body.get(key), list):
                body = body[key]
                break
    if not isinstance(body, list):
        raise ProviderError(f"{LABEL} answered GET /v1/models with no model list: {str(body)[:200]}", provider=LABEL)
    return [model for model in body if isinstance(model, dict)]
