"""Eigen AI's generate API: every call is one synchronous multipart POST.

TTS answers with the audio bytes (WAV unless `response_format` says otherwise), ASR with JSON
or plain text, the voice-reference upload with {"voice_id"}; the manifest's `returns` says
which. There is no task to follow or cancel: Eigen is a one-shot provider. The upstream's own
SSE mode (`stream=true`) is not used: the whole file is stored anyway, and one response body is
what the output folder writes atomically. Facts: ../shared/notes/providers.md (Eigen AI).
"""

from __future__ import annotations

import logging
from typing import Any

import anyio.to_thread
import httpx

from mcp_audio.core.errors import UpstreamBadAnswer, UpstreamJobFailed, UpstreamUnavailable
from mcp_audio.core.media import FORMAT_TYPES, sniff_content_type
from mcp_audio.core.upstreams import EIGEN
from mcp_audio.providers._http import HttpProvider, describe_error_body, form_value, media_type
from mcp_audio.providers.base import FileBytes, FileSink, Pacing, Report, Update, UpstreamRequest

log = logging.getLogger("mcp_audio.eigen")
UPLOAD = "upload"  # the endpoint id of POST /api/v1/generate/upload; every other id is a `model`
# What qwen3-tts `response_format` values are, for a response without a usable Content-Type.
_FORMAT_TYPES = FORMAT_TYPES


class EigenProvider(HttpProvider):
    upstream = EIGEN
    max_upload_bytes = 50 * 2**20  # no limit is published; a minute of WAV is ~10 MiB
    upload_lifetime_s = 0.0  # a voice id is made per call: never reused for another

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str,
        http: httpx.AsyncClient | None = None,
        read_timeout_s: float = 300.0,
        pacing: Pacing | None = None,
    ) -> None:
        super().__init__(api_key, http, httpx.Timeout(30.0, connect=10.0), pacing)
        self._base_url = base_url.rstrip("/")
        # Generation happens while the request is open: a long text takes a while to answer.
        self._generate_timeout = httpx.Timeout(30.0, connect=10.0, read=read_timeout_s)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key()}"}

    async def health(self) -> str:
        """Eigen has no health endpoint: a GET of the base URL proves DNS, TLS and routing."""
        try:
            response = await self._http.get(self._base_url)  # no key: reachability needs none
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(f"unreachable ({type(exc).__name__})", provider=EIGEN.label) from exc
        return f"reachable (HTTP {response.status_code})"

    async def run(self, request: UpstreamRequest, report: Report, files: FileSink) -> dict[str, Any]:
        """POST the call as multipart/form-data and turn the answer into the tool's output."""
        headers = self._headers()
        await report(Update(state="running"))
        parts: list[tuple[str, Any]] = []  # (name, (file name or None, content[, content type]))
        if request.endpoint != UPLOAD:
            parts.append(("model", (None, request.endpoint)))
        for name, value in request.body.items():
            # Every value goes as a part (even without files) so the body is always multipart.
            parts.append((name, (None, form_value(value))))
        parts.extend((name, (part.name, part.data, part.content_type)) for name, part in request.parts.items())
        path = "/api/v1/generate/upload" if request.endpoint == UPLOAD else "/api/v1/generate"
        response = await self._post(path, parts, headers)
        if request.returns == "audio":
            audio_type = _audio_type(response, request.body)
            return {"audio": await anyio.to_thread.run_sync(files, response.content, audio_type)}
        if request.endpoint == UPLOAD:
            return _voice_id(response)
        return _transcript(response)

    async def upload(self, endpoint: str, file: FileBytes) -> str:
        """A voice sample given where the model reads a URL: upload it for `endpoint`; its voice id."""
        parts = [("model", (None, endpoint)), ("voice_reference_file", (file.name, file.data, file.content_type))]
        response = await self._post("/api/v1/generate/upload", parts, self._headers())
        return str(_voice_id(response)["voice_id"])

    async def _post(self, path: str, parts: list[Any], headers: dict[str, str]) -> httpx.Response:
        # Each generate is billed: only answers proving nothing ran (429, ingress 5xx) and
        # connection failures before sending are retried, never a request that may have run.
        return await self._send(
            "POST",
            f"{self._base_url}{path}",
            idempotent=False,
            files=parts,
            headers=headers,
            timeout=self._generate_timeout,
        )


def _audio_type(response: httpx.Response, payload: dict[str, Any]) -> str:
    """The returned audio's media type: the upstream's word, else the bytes', else the format asked for."""
    declared = media_type(response)
    if declared.startswith(("application/json", "text/")) or not response.content:
        # A 2xx without audio: say what the upstream said instead of saving it as a sound file.
        detail = _body_text(response) or "an empty body"
        raise UpstreamBadAnswer(f"answered without audio: {detail}", provider=EIGEN.label)
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
        raise UpstreamJobFailed(f"eigen returned an unexpected transcript: {str(body)[:200]}", provider=EIGEN.label)
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
        raise UpstreamJobFailed(f"eigen's upload answer has no voice_id: {_body_text(response)}", provider=EIGEN.label)
    return {**body, "voice_id": str(body["voice_id"])}


def _body_text(response: httpx.Response) -> str:
    try:
        return describe_error_body(response.json())
    except ValueError:
        return response.text[:300].strip()
