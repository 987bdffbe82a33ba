"""Shared HTTP plumbing for providers: retries with back-off that honour Retry-After, and the
translation of upstream answers and transport failures into the mcp_audio error family.

A request is either idempotent (status, result, downloads: resent freely on transient
failures) or not (a submit or a generate, which the upstream may bill): that one is resent
only when the answer proves nothing was created, and a failure after it was sent is an error
with `may_have_run` set, so no layer above resends it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from email.utils import parsedate_to_datetime
from typing import Any

import anyio
import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, retry_if_result, stop_after_attempt

from mcp_audio import metrics
from mcp_audio.core.errors import (
    AuthenticationFailed,
    ConfigError,
    UpstreamBadAnswer,
    UpstreamRejected,
    UpstreamUnavailable,
)
from mcp_audio.core.trace import current_job
from mcp_audio.core.upstreams import Upstream
from mcp_audio.net import http_client
from mcp_audio.providers.base import Pacing

log = logging.getLogger("mcp_audio.http")

# Statuses that mean "the upstream did not do it, try again later".
TRANSIENT_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
# A submit answered with one of these created no job, so resending cannot double-bill.
SAFE_SUBMIT_STATUSES = frozenset({429, 502, 503, 504})
# Transport errors raised before the request reached the upstream: safe to resend anything.
NOT_SENT_ERRORS: tuple[type[Exception], ...] = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
MAX_RETRY_AFTER_S = 60.0
# Short requests (submits, results, status checks) in flight at once per provider. httpcore
# looks at every pooled connection (a socket poll for each idle one) on each request's start
# and end, so a burst of 700 submits that opened 700 connections cost O(n) per event and
# O(n^2) per burst, seconds of held loop per replica (bench/replicas.py --slow-callbacks).
# Past this many, requests wait their turn on a limiter, which costs nothing while waiting.
SHORT_REQUESTS = 32
# Clients of finished status streams kept for the next stream (with their idle connection):
# creating one per stream (its pool, its transport) was a visible share of a replica's CPU.
SPARE_STREAM_CLIENTS = 64


class HttpProvider:
    """What every HTTP provider shares: its upstream, an API key and an httpx client (its own unless given one)."""

    upstream: Upstream

    def __init__(
        self, api_key: str | None, http: httpx.AsyncClient | None, timeout: httpx.Timeout, pacing: Pacing | None
    ) -> None:
        self._api_key = api_key
        self._owns_http = http is None
        self._http = http or http_client(timeout=timeout, event_hooks=upstream_hooks(self.upstream))
        self._pacing = pacing or Pacing()
        self._slots: anyio.CapacityLimiter | None = None  # made on the loop, at the first request
        self._spare: list[httpx.AsyncClient] = []

    async def aclose(self) -> None:
        spare, self._spare = self._spare, []
        for client in spare:
            await client.aclose()
        if self._owns_http:
            await self._http.aclose()

    @asynccontextmanager
    async def _long_held(self) -> AsyncIterator[httpx.AsyncClient]:
        """A client for one long-held response (a status stream): its own small pool. httpcore
        scans every pooled connection on each request, so hundreds of open streams in the
        shared pool would make every other request slower. A stream that ended as it should
        leaves its client for the next one; one that broke or was cancelled closes it."""
        if not self._owns_http:
            yield self._http
            return
        client = (
            self._spare.pop()
            if self._spare
            else http_client(timeout=self._http.timeout, event_hooks=upstream_hooks(self.upstream))
        )
        try:
            yield client
        except BaseException:
            with anyio.CancelScope(shield=True):
                await client.aclose()
            raise
        if len(self._spare) < SPARE_STREAM_CLIENTS:
            self._spare.append(client)
        else:
            await client.aclose()

    def check_configured(self) -> None:
        self._key()

    def _key(self) -> str:
        """The API key, or a ConfigError naming its variable."""
        if not self._api_key:
            env = self.upstream.key_env
            raise ConfigError(
                f"{env} is not set: this tool calls {self.upstream.key_needed_for}. Set the {env} environment "
                "variable in the MCP client's server config."
            )
        return self._api_key

    async def _send(self, method: str, url: str, *, idempotent: bool = True, **kwargs: Any) -> httpx.Response:
        pacing = self._pacing
        if self._slots is None:
            self._slots = anyio.CapacityLimiter(SHORT_REQUESTS)
        return await send(
            self._http,
            method,
            url,
            upstream=self.upstream,
            idempotent=idempotent,
            attempts=kwargs.pop("attempts", pacing.retry_attempts),
            backoff=(pacing.retry_initial_s, pacing.retry_max_s),
            slots=self._slots,
            **kwargs,
        )


def upstream_hooks(upstream: Upstream) -> dict[str, list[Callable[[Any], Any]]]:
    """httpx event hooks for a provider's clients: each request carries the job's W3C
    `traceparent` when its call had one, and its latency (until the answer's headers) and any
    HTTP error status are counted for /metrics (transport errors are counted where they surface,
    in `send`)."""

    async def on_request(request: httpx.Request) -> None:
        traceparent = current_job.get().traceparent
        if traceparent is not None and "traceparent" not in request.headers:
            request.headers["traceparent"] = traceparent
        request.extensions["mcp_audio_sent"] = time.perf_counter()

    async def on_response(response: httpx.Response) -> None:
        sent = response.request.extensions.get("mcp_audio_sent")
        if sent is not None:
            metrics.upstream_answered(upstream.name, time.perf_counter() - sent, response.status_code)

    return {"request": [on_request], "response": [on_response]}


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), if any."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class _Backoff:
    """Exponential back-off, replaced by the upstream's Retry-After when it sends one."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial, self.maximum = initial, maximum

    def __call__(self, state: RetryCallState) -> float:
        outcome = state.outcome
        if outcome is not None and not outcome.failed:
            hinted = retry_after_seconds(outcome.result())
            if hinted is not None:
                return min(hinted, MAX_RETRY_AFTER_S)
        return float(min(self.maximum, self.initial * 2 ** (state.attempt_number - 1)))


def _status_proves_nothing_ran(response: httpx.Response) -> bool:
    return response.status_code in SAFE_SUBMIT_STATUSES


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    upstream: Upstream,
    idempotent: bool = True,
    retry_statuses: Collection[int] = TRANSIENT_STATUSES,
    proves_nothing_ran: Callable[[httpx.Response], bool] = _status_proves_nothing_ran,
    accept: Callable[[httpx.Response], bool] | None = None,
    attempts: int = 5,
    backoff: tuple[float, float] = (0.5, 8.0),
    slots: anyio.CapacityLimiter | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """Send a request, retrying what is safe to retry; return a 2xx response (or one `accept`
    takes as it is) or raise UpstreamError. With `slots`, each attempt takes one while it is
    on its way (not while it waits to be retried)."""
    if idempotent:
        retry_on = retry_if_exception_type(httpx.TransportError) | retry_if_result(
            lambda r: r.status_code in retry_statuses
        )
    else:
        retry_on = retry_if_exception_type(NOT_SENT_ERRORS) | retry_if_result(proves_nothing_ran)
    retrying = AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=_Backoff(*backoff),
        retry=retry_on,
        retry_error_callback=lambda state: state.outcome.result() if state.outcome is not None else None,
        before_sleep=lambda state: log.info("%s %s: retrying (attempt %d)", method, _path(url), state.attempt_number),
        reraise=True,
    )

    async def attempt() -> httpx.Response:
        if slots is None:
            return await client.request(method, url, **kwargs)
        async with slots:
            return await client.request(method, url, **kwargs)

    try:
        response: httpx.Response = await retrying(attempt)
    except httpx.TransportError as exc:
        made = int(retrying.statistics.get("attempt_number", 1))
        metrics.upstream_failed(upstream.name, type(exc).__name__)
        raise transport_error(exc, upstream, sent_once=not idempotent, attempts=made) from exc
    made = int(retrying.statistics.get("attempt_number", 1))
    if accept is not None and accept(response):
        return response
    raise_for_status(
        response, upstream, attempts=made, may_have_run=not idempotent and not proves_nothing_ran(response)
    )
    return response


def transport_error(
    exc: httpx.TransportError, upstream: Upstream, *, sent_once: bool, attempts: int = 1
) -> UpstreamUnavailable:
    """The error for a request that got no answer. `sent_once`: a non-idempotent request."""
    name = type(exc).__name__
    if isinstance(exc, NOT_SENT_ERRORS) or not sent_once:
        detail = f"could not be reached ({name}). Check the network or the base URL, then try again."
        return UpstreamUnavailable(detail, provider=upstream.label, attempts=attempts)
    if isinstance(exc, httpx.TimeoutException):
        detail = f"did not answer in time ({name})"
    else:
        detail = f"'s response broke off ({name}) before it was complete, so nothing was saved"
    return UpstreamUnavailable(detail, provider=upstream.label, attempts=attempts, may_have_run=True)


def raise_for_status(
    response: httpx.Response, upstream: Upstream, *, attempts: int = 1, may_have_run: bool = False
) -> None:
    """Translate a non-2xx upstream answer into the error an agent can act on."""
    status = response.status_code
    if status < 400:
        return
    label = upstream.label
    if status in (401, 403):
        raise AuthenticationFailed(upstream.key_env or upstream.label, provider=label, status=status, attempts=attempts)
    detail = error_detail(response)
    if status in TRANSIENT_STATUSES:
        raise UpstreamUnavailable(
            detail,
            provider=label,
            status=status,
            attempts=attempts,
            may_have_run=may_have_run and status >= 500,
            error_type=response.headers.get("x-fal-error-type") or "",
        )
    raise UpstreamRejected(detail, provider=label, status=status, attempts=attempts)


def json_object(response: httpx.Response, upstream: Upstream, what: str) -> dict[str, Any]:
    """The answer's body as a JSON object, or UpstreamBadAnswer saying what came instead."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        shown = response.text[:200].strip() or "an empty body"
        raise UpstreamBadAnswer(
            f"answered {what} with something other than a JSON object: {shown}",
            provider=upstream.label,
            status=response.status_code,
        )
    return body


def error_detail(response: httpx.Response) -> str:
    """The upstream's own words: FastAPI-style `detail` lists become one line per field."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500].strip() or response.reason_phrase
    return describe_error_body(body) or response.reason_phrase


def describe_error_body(body: Any) -> str:
    if not isinstance(body, dict):
        return str(body)[:500]
    detail = body.get("detail", body.get("error", body.get("message")))
    if isinstance(detail, list):
        lines = []
        for item in detail:
            if isinstance(item, dict):
                loc = [str(p) for p in item.get("loc", []) if p != "body"]
                lines.append(f"- `{'.'.join(loc) or 'input'}`: {item.get('msg', item)}")
            else:
                lines.append(f"- {item}")
        return "\n".join(lines)
    if detail is None:
        return str(body)[:500]
    return str(detail)[:500]


def media_type(response: httpx.Response) -> str:
    """The response's Content-Type without parameters, lower-cased ('' when absent)."""
    return str(response.headers.get("content-type", "")).split(";")[0].strip().lower()


def form_value(value: Any) -> str:
    """A form field's text: booleans as `true`/`false`, whole numbers without `.0`, structures as JSON.

    Numbers come from the tool's validation as floats (8 -> 8.0); an upstream integer field
    would refuse "8.0", and every number field accepts "8".
    """
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _path(url: str) -> str:
    return httpx.URL(url).path
