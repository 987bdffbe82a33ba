"""fal webhooks: `POST /webhooks/fal`, verified, kept on the job for its follower.

With MCP_AUDIO_PUBLIC_URL set, fal submits carry `fal_webhook={public_url}/webhooks/fal`. fal
signs each delivery with ED25519 (../shared/notes/fal-queue-protocol.md, "Webhooks"): over
`request_id \\n user_id \\n timestamp \\n sha256_hex(body)`, with keys from a JWKS. A delivery
whose signature no key verifies, or whose timestamp is over 300 s away, is refused with 401
and changes nothing. A verified one is written to the job's row (any replica may receive it);
the replica following the job reads it there and finishes the job without a status stream.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio
import httpx

from mcp_audio.net import http_client

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from mcp_audio.config import ServerSettings

log = logging.getLogger("mcp_audio.webhooks")

FAL_PATH = "/webhooks/fal"
MAX_SKEW_S = 300.0  # fal's rule: a delivery signed longer ago than this (or ahead) is refused
KEYS_CACHE_S = 24 * 3600.0  # fal's rule: keep the key set at most a day
KEYS_REFRESH_S = 300.0  # a signature no cached key verifies fetches the set again, at most this often
# A delivery is JSON naming output URLs: kilobytes. Bodies are read only after their headers pass,
# and at most READERS at a time, so what webhooks can hold in memory is READERS * MAX_BODY.
MAX_BODY = 8 * 2**20
READERS = 8


class WebhookRefused(Exception):
    """Why a delivery is not believed (the 401's body)."""


def _b64url(value: str) -> bytes:
    """base64url, with or without padding (fal's JWKS has been seen with it)."""
    value = value.strip().rstrip("=")
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def signed_message(request_id: str, user_id: str, timestamp: str, body: bytes) -> bytes:
    return "\n".join([request_id, user_id, timestamp, hashlib.sha256(body).hexdigest()]).encode()


class FalKeys:
    """fal's ED25519 public keys, fetched from the JWKS URL and cached."""

    def __init__(self, jwks_url: str, http: httpx.AsyncClient | None = None) -> None:
        self._url = jwks_url
        self._http = http or http_client(timeout=httpx.Timeout(10.0))  # the shared trust store
        self._keys: list[Any] = []
        self._fetched = 0.0
        self._lock = anyio.Lock()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def keys(self, *, refresh: bool = False) -> list[Any]:
        async with self._lock:
            age = time.monotonic() - self._fetched
            if not self._keys or age > KEYS_CACHE_S or (refresh and age > KEYS_REFRESH_S):
                self._keys = await self._fetch()
                self._fetched = time.monotonic()
            return self._keys

    async def _fetch(self) -> list[Any]:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            response = await self._http.get(self._url)
            response.raise_for_status()
            entries = response.json().get("keys", [])
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            log.warning("could not fetch fal's webhook keys from %s: %s", self._url, type(exc).__name__)
            return self._keys  # keep what we had; with none, every delivery is refused until it works
        keys = []
        for entry in entries if isinstance(entries, list) else []:
            try:
                if entry.get("kty") == "OKP" and entry.get("crv", "Ed25519") == "Ed25519":
                    keys.append(Ed25519PublicKey.from_public_bytes(_b64url(str(entry["x"]))))
            except (KeyError, ValueError, binascii.Error, AttributeError):
                log.warning("skipped a key of fal's webhook key set that is not an ED25519 public key")
        return keys

    async def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Raises WebhookRefused unless a fal key signed this delivery within MAX_SKEW_S."""
        from cryptography.exceptions import InvalidSignature

        request_id, user_id, timestamp, raw_signature = check_headers(headers)
        message = signed_message(request_id, user_id, timestamp, body)
        for refresh in (False, True):  # a key fal rotated in since we fetched: fetch the set once more
            for key in await self.keys(refresh=refresh):
                try:
                    key.verify(raw_signature, message)
                    return
                except InvalidSignature:
                    continue
        raise WebhookRefused("no key of fal's key set verifies the signature")


def check_headers(headers: Mapping[str, str]) -> tuple[str, str, str, bytes]:
    """What can be refused before the body is read: (request id, user id, timestamp, signature)."""
    fields = [headers.get(f"x-fal-webhook-{name}") for name in ("request-id", "user-id", "timestamp", "signature")]
    request_id, user_id, timestamp, signature = fields
    if request_id is None or user_id is None or timestamp is None or signature is None:
        raise WebhookRefused("missing X-Fal-Webhook-Request-Id, -User-Id, -Timestamp or -Signature")
    try:
        skew = abs(time.time() - int(timestamp))
        raw_signature = bytes.fromhex(signature)
    except ValueError:
        raise WebhookRefused("X-Fal-Webhook-Timestamp or -Signature is malformed") from None
    if skew > MAX_SKEW_S:
        raise WebhookRefused(f"the signature's timestamp is {skew:.0f} s away (at most {MAX_SKEW_S:g})")
    if len(raw_signature) != 64:  # ED25519
        raise WebhookRefused("X-Fal-Webhook-Signature is not an ED25519 signature")
    return request_id, user_id, timestamp, raw_signature


async def read_limited(request: Request, limit: int, idle_s: float) -> bytes | None:
    """The body, or None as soon as it is known to be over `limit` (its Content-Length, or the
    bytes read so far): never more than `limit` is held. BodyStalled when it stops coming."""
    from mcp_audio.deploy.slow_clients import paced

    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in paced(request.stream(), idle_s):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def fal_webhook_route(settings: ServerSettings) -> Route:
    """`POST /webhooks/fal`: 401 for a delivery not signed by fal; else 200, the job's row updated
    once (a repeat is 200 and changes nothing); 404 for a request id no job has, so fal repeats it
    (its submit's answer may not have been recorded yet)."""
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    keys = FalKeys(settings.fal_jwks_url)
    from mcp_audio.store import store_on_first_use

    store = store_on_first_use(settings)  # this process's own connection, opened on the first delivery

    readers = anyio.Semaphore(READERS)

    async def receive(request: Request) -> JSONResponse:
        try:
            check_headers(request.headers)  # before a byte of the body is read
        except WebhookRefused as exc:
            log.warning("refused a fal webhook: %s", exc)
            return JSONResponse({"error": f"webhook refused: {exc}"}, status_code=401)
        if readers.value == 0:  # fal delivers again later; a slow sender holds no more than its slot
            return JSONResponse({"error": "busy; deliver again later"}, status_code=503, headers={"Retry-After": "5"})
        from mcp_audio.deploy.slow_clients import BodyStalled

        try:
            async with readers:
                body = await read_limited(request, MAX_BODY, settings.body_idle_s)
        except BodyStalled as exc:
            return JSONResponse({"error": str(exc)}, status_code=408)
        if body is None:
            return JSONResponse({"error": f"the delivery is over {MAX_BODY // 2**20} MiB"}, status_code=413)
        try:
            await keys.verify(request.headers, body)
            delivery = json.loads(body)
            request_id = delivery["request_id"]
            if not isinstance(request_id, str) or request_id != request.headers["x-fal-webhook-request-id"]:
                raise WebhookRefused("the body's request_id is not the signed one")
        except WebhookRefused as exc:
            log.warning("refused a fal webhook: %s", exc)
            return JSONResponse({"error": f"webhook refused: {exc}"}, status_code=401)
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "the body is not a fal webhook (JSON with request_id)"}, status_code=400)
        outcome = await (await store()).record_webhook("fal", request_id, delivery)
        if outcome == "unknown":
            return JSONResponse({"error": f"no job has fal request {request_id[:64]}"}, status_code=404)
        return JSONResponse({"job": outcome})

    return Route(FAL_PATH, receive, methods=["POST"])
