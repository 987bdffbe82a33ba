"""The Voice API (an API-marketplace listing): TTS, STT and voice cloning as upstream tasks.

Every call creates a task (`POST /v1/{kind}`) that is polled (`GET /v1/{kind}/{task_id}`)
until `status` is `succeeded`; the output is then fetched the way each kind returns it: TTS
as MP3 bytes (`/audio`), STT as JSON (`/result?plain_text=`), clone as `result.model_id` in
the status itself. Only `succeeded` is documented: other values are taken as "still
running", and `failed`/`error`/`cancelled` as the end. Facts and guesses:
../shared/notes/providers.md ("Voice API") and manifests/voice-api.toml.

The endpoint ids of the manifest are the task kinds: "tts", "stt", "clone". TTS takes a JSON
body; STT and clone take multipart forms whose file part is the manifest's `sent_as = "part"`
input. The API has no way to cancel a task (the registry says so).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import anyio
import anyio.to_thread
import httpx
from pydantic import BaseModel, ConfigDict

from mcp_audio.core.errors import UpstreamBadAnswer, UpstreamJobFailed, UpstreamUnavailable
from mcp_audio.core.upstreams import VOICE_API
from mcp_audio.providers._http import HttpProvider, error_detail, form_value, json_object, media_type
from mcp_audio.providers.base import FileSink, Pacing, Report, Submitted, Update, UpstreamRequest

log = logging.getLogger("mcp_audio.voice_api")
FAILED_STATUSES = frozenset({"failed", "error", "cancelled", "canceled"})
MODELS_TTL_S = 300.0


class VoiceApiTask(BaseModel):
    """What following a task needs; stored with the job, validated when it is resumed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    task_id: str
    plain_text: bool = False  # stt: the `plain_text` query parameter of its result


class VoiceApiProvider(HttpProvider):
    upstream = VOICE_API
    handle_type = VoiceApiTask
    max_upload_bytes = 50 * 2**20  # one multipart request; far above any 90 s reference clip
    models_ttl_s = MODELS_TTL_S

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str,
        host: str,
        http: httpx.AsyncClient | None = None,
        pacing: Pacing | None = None,
    ) -> None:
        # Long reads: an upload of a big recording or an MP3 download can take a while.
        super().__init__(api_key, http, httpx.Timeout(60.0, connect=10.0), pacing)
        self._base_url = base_url.rstrip("/")
        self._host = host
        self._models: dict[tuple[tuple[str, str], ...], tuple[float, list[dict[str, Any]]]] = {}

    def _headers(self) -> dict[str, str]:
        return {"X-RapidAPI-Key": self._key(), "X-RapidAPI-Host": self._host}

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("headers", self._headers())
        return await self._send(method, f"{self._base_url}{path}", **kwargs)

    async def health(self) -> str:
        """`GET /v1/health` needs no key: it proves DNS, TLS, routing and the service itself."""
        label = self.upstream.label
        try:
            response = await self._http.get(f"{self._base_url}/v1/health")
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(f"could not be reached ({type(exc).__name__})", provider=label) from exc
        if response.status_code >= 400:
            raise UpstreamUnavailable(
                f"health check answered HTTP {response.status_code}: {error_detail(response)}", provider=label
            )
        return f"healthy (HTTP {response.status_code})"

    async def verify_key(self) -> str:
        """The voice model list: authenticated by the gateway, free of charge."""
        response = await self._call("GET", "/v1/models", params={"title": "mcp-audio-doctor"}, attempts=1)
        return f"accepted (GET /v1/models answered HTTP {response.status_code})"

    # --- tasks --------------------------------------------------------------------------

    async def submit(self, request: UpstreamRequest) -> Submitted:
        kind = request.endpoint
        if request.parts:
            form = {key: form_value(value) for key, value in request.body.items()}
            files = {name: (part.name, part.data, part.content_type) for name, part in request.parts.items()}
            response = await self._call("POST", f"/v1/{kind}", data=form, files=files, idempotent=False)
        else:
            response = await self._call("POST", f"/v1/{kind}", json=request.body, idempotent=False)
        body = json_object(response, self.upstream, f"POST /v1/{kind}")
        task_id = body.get("task_id") or body.get("id")
        if not task_id:
            raise UpstreamBadAnswer(
                f"accepted the task but sent no task_id: {str(body)[:200]}",
                provider=self.upstream.label,
                may_have_run=True,
            )
        plain = bool(request.options.get("plain_text", False))
        return Submitted(
            upstream_id=str(task_id), handle=VoiceApiTask(kind=kind, task_id=str(task_id), plain_text=plain)
        )

    async def follow(self, endpoint: str, handle: VoiceApiTask, report: Report, files: FileSink) -> dict[str, Any]:
        kind, task_id = handle.kind, handle.task_id
        interval, ceiling = self._pacing.poll_initial_s, self._pacing.poll_max_s
        last: tuple[str, float | None] | None = None
        while True:
            status = json_object(
                await self._call("GET", f"/v1/{kind}/{task_id}"), self.upstream, f"/v1/{kind}/{task_id}"
            )
            state = str(status.get("status") or "").lower()
            if state == "succeeded":
                return await self._output(handle, status, files)
            if state in FAILED_STATUSES:
                reason = _failure_message(status) or "no reason given"
                raise UpstreamJobFailed(
                    f"Voice API {kind} task {task_id} {state}: {reason}", provider=self.upstream.label
                )
            progress = _progress(status.get("progress"))
            if (state, progress) != last:
                last = (state, progress)
                line = (state or "running") + (f" {progress:g}%" if progress is not None else "")
                await report(Update(state="running", logs=[line]))
            # Short first: most tasks end in seconds; long ones do not need fast polling.
            await anyio.sleep(interval)
            interval = min(ceiling, interval * 1.5)

    async def _output(self, handle: VoiceApiTask, status: dict[str, Any], files: FileSink) -> dict[str, Any]:
        kind, task_id, label = handle.kind, handle.task_id, self.upstream.label
        if kind == "tts":
            response = await self._call("GET", f"/v1/tts/{task_id}/audio")
            if not response.content:
                raise UpstreamJobFailed(
                    f"Voice API tts task {task_id} succeeded but its audio is empty", provider=label
                )
            content_type = media_type(response)
            audio_type = content_type if content_type.startswith("audio/") else "audio/mpeg"
            return {"audio": await anyio.to_thread.run_sync(files, response.content, audio_type)}
        if kind == "stt":
            plain = "true" if handle.plain_text else "false"
            response = await self._call("GET", f"/v1/stt/{task_id}/result", params={"plain_text": plain})
            try:
                result = response.json()
            except ValueError:  # a bare transcript
                return {"text": response.text}
            return result if isinstance(result, dict) else {"text": result}
        result = status.get("result")
        if not isinstance(result, dict) or not result.get("model_id"):
            raise UpstreamJobFailed(f"Voice API clone task {task_id} succeeded without a model_id", provider=label)
        return {"model_id": result["model_id"], **{k: v for k, v in result.items() if k != "model_id"}}

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
        body = (await self._call("GET", "/v1/models", params=params)).json()
        models = _model_list(body)
        self._models[key] = (time.monotonic(), models)
        return [dict(model) for model in models]


# --- helpers ------------------------------------------------------------------------------


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
        raise UpstreamBadAnswer(
            f"answered GET /v1/models with no model list: {str(body)[:200]}", provider=VOICE_API.label
        )
    return [model for model in body if isinstance(model, dict)]
