"""Eigen AI's generate API: every call is one synchronous multipart POST.

TTS answers with the audio bytes (WAV unless `response_format` says otherwise), ASR with JSON
or plain text, the voice-reference upload with {"voice_id"}. There is no task to follow or
cancel, so Eigen manifests use mode = "stream" and only `stream()` does work. The upstream's
own SSE mode (`stream=true`) is not used: the whole file is stored anyway, and one response body
is what the output folder writes atomically. Facts: ../shared/notes/providers.md (Eigen AI).
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from mcp_audio.errors import InvalidArguments, McpAudioError, UpstreamJobFailed, UpstreamUnavailable
from mcp_audio.inputs import sniff_content_type
from mcp_audio.providers._file_parts import FilePart, form_value, media_type, read_file_part
from mcp_audio.providers._http import (
    NOT_SENT_ERRORS,
    SAFE_SUBMIT_STATUSES,
    HttpProvider,
    describe_error_body,
    require_key,
    send,
)
from mcp_audio.providers.base import FileSink, Report, Submitted, Update

log = logging.getLogger("mcp_audio.eigen")
KEY_ENV = "EIGEN_API_KEY"
UPLOAD = "upload"  # the endpoint id of POST /api/v1/generate/upload; every other id is a `model`
ASR_MODELS = frozenset({"whisper_v3_turbo"})
# Payload fields the upstream reads as file parts (names as the API reference spells them).
FILE_FIELDS = frozenset({"file", "voice_reference_file", "audio_prompt_file"})
# Fields the upstream reads as a URL to fetch: an https URL passes as is; a local file or data:
# URI there is uploaded first (POST /generate/upload) and sent as the `voice_id` it gets.
URL_FIELDS = frozenset({"voice_url", "preset_url"})
# What qwen3-tts `response_format` values are, for a response without a usable Content-Type.
_FORMAT_TYPES = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "flac": "audio/flac",
    "aac": "audio/aac",
    "opus": "audio/ogg",
    "pcm": "audio/pcm",
}


class EigenProvider(HttpProvider):
    name = "eigen"
    max_upload_bytes = 50 * 2**20  # no limit is published; a minute of WAV is ~10 MiB
    takes_file_bytes = True  # files travel as multipart parts of the generate request itself
    upload_lifetime_s = 0.0  # nothing is stored upstream for later requests

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str,
        http: httpx.AsyncClient | None = None,
        read_timeout_s: float = 300.0,
        retry_attempts: int = 5,
        retry_backoff: tuple[float, float] = (0.5, 8.0),
    ) -> None:
        self._base_url = base_url.rstrip("/")
        super().__init__(api_key, http, httpx.Timeout(30.0, connect=10.0))
        # Generation happens while the request is open: a long text takes a while to answer.
        self._generate_timeout = httpx.Timeout(30.0, connect=10.0, read=read_timeout_s)
        self._retry: dict[str, Any] = {"attempts": retry_attempts, "backoff": retry_backoff}

    def _headers(self) -> dict[str, str]:
        key = require_key(self._api_key, KEY_ENV, "Eigen AI, which needs an API key")
        return {"Authorization": f"Bearer {key}"}

    async def health(self) -> str:
        """Eigen has no health endpoint: a GET of the base URL proves DNS, TLS and routing."""
        try:
            response = await self._http.get(self._base_url)  # no key: reachability needs none
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(f"Eigen AI unreachable ({type(exc).__name__})", provider="eigen") from exc
        return f"reachable (HTTP {response.status_code})"

    # --- the one request --------------------------------------------------------------------

    async def stream(
        self, endpoint: str, payload: dict[str, Any], report: Report, partial_path: str | None, files: FileSink
    ) -> dict[str, Any]:
        """POST the call as multipart/form-data and turn the answer into the tool's output."""
        headers = self._headers()
        await report(Update(state="running"))
        parts: list[tuple[str, Any]] = []  # (name, (file name or None, content[, content type]))
        if endpoint != UPLOAD:
            parts.append(("model", (None, endpoint)))
        for name, value in payload.items():
            if name in FILE_FIELDS:
                parts.append((name, await self._file_part(name, value)))
            elif name in URL_FIELDS and not str(value).startswith(("https://", "http://")):
                parts.append(("voice_id", (None, await self._voice_from_sample(endpoint, name, value, payload))))
            else:
                # Every value goes as a part (even without files) so the body is always multipart.
                parts.append((name, (None, form_value(value))))
        path = "/api/v1/generate/upload" if endpoint == UPLOAD else "/api/v1/generate"
        response = await self._post(f"{self._base_url}{path}", parts, headers)
        if endpoint == UPLOAD:
            return _voice_id(response)
        if endpoint in ASR_MODELS:
            return _transcript(response)
        return {"audio": files(response.content, _audio_type(response, payload))}

    async def _voice_from_sample(self, model: str, field: str, value: Any, payload: dict[str, Any]) -> str:
        """A local file or data: URI given where the model reads a URL: upload it, use its voice id."""
        if "voice_id" in payload:
            raise InvalidArguments(f"`{field}`: give a voice sample or a voice id (or saved voice), not both.")
        sample = await self._file_part(field, value)
        parts = [("model", (None, model)), ("voice_reference_file", sample)]
        response = await self._post(f"{self._base_url}/api/v1/generate/upload", parts, self._headers())
        return str(_voice_id(response)["voice_id"])

    async def _post(self, url: str, parts: list[Any], headers: dict[str, str]) -> httpx.Response:
        # Each generate is billed: only answers proving nothing ran (429, ingress 5xx) and
        # connection failures before sending are retried, never a request that may have run.
        try:
            return await send(
                self._http,
                "POST",
                url,
                provider="eigen",
                key_env=KEY_ENV,
                retry_statuses=SAFE_SUBMIT_STATUSES,
                retry_errors=NOT_SENT_ERRORS,
                files=parts,
                headers=headers,
                timeout=self._generate_timeout,
                **self._retry,
            )
        except UpstreamUnavailable as exc:
            cause = exc.__cause__
            if isinstance(cause, httpx.TimeoutException) and not isinstance(cause, NOT_SENT_ERRORS):
                raise UpstreamUnavailable(
                    f"eigen did not answer in time ({type(cause).__name__}); it was not resent, since the "
                    "request may have run (and been billed). Call the tool again.",
                    provider="eigen",
                ) from cause
            if isinstance(cause, httpx.TransportError) and not isinstance(cause, NOT_SENT_ERRORS):
                raise UpstreamUnavailable(
                    f"eigen's response broke off ({type(cause).__name__}) before it was complete, so nothing "
                    "was saved; it was not resent, since the request may have run (and been billed). "
                    "Call the tool again.",
                    provider="eigen",
                ) from cause
            text = str(exc)
            if exc.status_code not in SAFE_SUBMIT_STATUSES and text.endswith(_EXHAUSTED):
                # e.g. a 500: the shared wording says retries ran out, but none were made.
                raise UpstreamUnavailable(
                    text.removesuffix(_EXHAUSTED).replace(" is unavailable ", " failed ", 1)
                    + " It was not resent, since the request may have run (and been billed). Call the tool again.",
                    provider="eigen",
                    status_code=exc.status_code,
                ) from exc
            raise

    async def _file_part(self, field: str, value: Any) -> FilePart:
        return await read_file_part(self._http, field, value, max_bytes=self.max_upload_bytes, upstream="Eigen AI")

    # --- what Eigen does not have -------------------------------------------------------------

    async def submit(self, endpoint: str, payload: dict[str, Any]) -> Submitted:
        raise McpAudioError(_NO_QUEUE)

    async def follow(self, endpoint: str, handle: dict[str, Any], report: Report, files: FileSink) -> dict[str, Any]:
        raise McpAudioError(_NO_QUEUE)

    async def upload(self, data: bytes, content_type: str, file_name: str) -> str:
        raise McpAudioError("Eigen AI takes files as parts of the request itself; nothing is uploaded first.")

    async def cancel(self, endpoint: str, handle: dict[str, Any]) -> bool:
        """Nothing to cancel upstream: the runner abandons the open request instead."""
        return False


_EXHAUSTED = " Retries were exhausted; try again later."  # the end of _http's 429/5xx message
_NO_QUEUE = 'Eigen AI has no job queue: its tools must use mode = "stream" in their manifest.'


def _audio_type(response: httpx.Response, payload: dict[str, Any]) -> str:
    """The returned audio's media type: the upstream's word, else the bytes', else the format asked for."""
    declared = media_type(response)
    if declared.startswith(("application/json", "text/")) or not response.content:
        # A 2xx without audio: say what the upstream said instead of saving it as a sound file.
        detail = _body_text(response) or "an empty body"
        raise UpstreamJobFailed(f"eigen answered without audio: {detail}", provider="eigen")
    if declared.startswith(("audio/", "video/")):
        return declared
    sniffed = sniff_content_type(response.content[:64])
    if sniffed is not None:
        return sniffed
    return _FORMAT_TYPES.get(str(payload.get("response_format", "")), "application/octet-stream")


def _transcript(response: httpx.Response) -> dict[str, Any]:
    """{"text": ..., plus whatever else the JSON carries (segments, language)}; text answers as is."""
    if "json" not in media_type(response):
        return {"text": response.text.strip()}
    try:
        body = response.json()
    except ValueError:
        return {"text": response.text.strip()}
    if isinstance(body, str):
        return {"text": body}
    if not isinstance(body, dict):
        raise UpstreamJobFailed(f"eigen returned an unexpected transcript: {str(body)[:200]}", provider="eigen")
    output = dict(body)
    if not isinstance(output.get("text"), str) and isinstance(output.get("transcription"), str):
        output["text"] = output["transcription"]  # some Eigen ASR models name it so
    return output


def _voice_id(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not body.get("voice_id"):
        raise UpstreamJobFailed(f"eigen's upload answer has no voice_id: {_body_text(response)}", provider="eigen")
    return {**body, "voice_id": str(body["voice_id"])}


def _body_text(response: httpx.Response) -> str:
    try:
        return describe_error_body(response.json())
    except ValueError:
        return response.text[:300].strip()
