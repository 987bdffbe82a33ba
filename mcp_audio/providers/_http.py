"""Shared HTTP plumbing for providers: retries with back-off that honour Retry-After, and the
translation of upstream error responses into the mcp_audio exception tree."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, retry_if_result, stop_after_attempt

from mcp_audio.errors import AuthenticationFailed, ConfigError, UpstreamRejected, UpstreamUnavailable

log = logging.getLogger("mcp_audio.http")


class HttpProvider:
    """What every HTTP provider shares: an API key and an httpx client (its own unless given one)."""

    def __init__(self, api_key: str | None, http: httpx.AsyncClient | None, timeout: httpx.Timeout) -> None:
        self._api_key = api_key
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    def check_configured(self) -> None:
        self._headers()

    def _headers(self) -> dict[str, str]:
        """The auth headers; raises ConfigError (via require_key) when the key is missing."""
        raise NotImplementedError


def require_key(api_key: str | None, key_env: str, needs: str) -> str:
    """The API key, or a ConfigError naming its variable (`needs` says what the tool calls)."""
    if not api_key:
        raise ConfigError(
            f"{key_env} is not set: this tool calls {needs}. Set the {key_env} environment variable in the MCP "
            "client's server config."
        )
    return api_key


# Statuses that mean "the upstream did not do it, try again later".
TRANSIENT_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
# A submit answered with one of these created no job, so resending cannot double-bill.
SAFE_SUBMIT_STATUSES = frozenset({429, 502, 503, 504})
# Transport errors raised before the request reached the upstream: safe to resend anything.
NOT_SENT_ERRORS: tuple[type[Exception], ...] = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
MAX_RETRY_AFTER_S = 60.0


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


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    provider: str,
    key_env: str,
    retry_statuses: Collection[int] = TRANSIENT_STATUSES,
    retry_errors: tuple[type[Exception], ...] = (httpx.TransportError,),
    attempts: int = 5,
    backoff: tuple[float, float] = (0.5, 8.0),
    **kwargs: Any,
) -> httpx.Response:
    """Send a request, retrying transient failures; return a 2xx response or raise ProviderError."""
    retrying = AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=_Backoff(*backoff),
        retry=retry_if_exception_type(retry_errors) | retry_if_result(lambda r: r.status_code in retry_statuses),
        retry_error_callback=lambda state: state.outcome.result() if state.outcome is not None else None,
        before_sleep=lambda state: log.info("%s %s: retrying (attempt %d)", method, _path(url), state.attempt_number),
        reraise=True,
    )
    try:
        response: httpx.Response = await retrying(client.request, method, url, **kwargs)
    except httpx.TransportError as exc:
        raise UpstreamUnavailable(
            f"{provider} could not be reached ({type(exc).__name__}). "
            "Check the network or the base URL, then try again.",
            provider=provider,
        ) from exc
    raise_for_status(response, provider=provider, key_env=key_env)
    return response


def raise_for_status(response: httpx.Response, *, provider: str, key_env: str) -> None:
    """Translate a non-2xx upstream answer into the error an agent can act on."""
    status = response.status_code
    if status < 400:
        return
    detail = error_detail(response)
    if status in (401, 403):
        raise AuthenticationFailed(
            f"{provider} rejected the API key (HTTP {status}). Check that {key_env} holds a valid, active key.",
            provider=provider,
            status_code=status,
        )
    if status in TRANSIENT_STATUSES:
        kind = response.headers.get("x-fal-error-type") or ""
        raise UpstreamUnavailable(
            f"{provider} is unavailable (HTTP {status}{', ' + kind if kind else ''}): {detail}. "
            "Retries were exhausted; try again later.",
            provider=provider,
            status_code=status,
        )
    if status == 422:
        raise UpstreamRejected(f"{provider} rejected the input:\n{detail}", provider=provider, status_code=status)
    raise UpstreamRejected(f"{provider} answered HTTP {status}: {detail}", provider=provider, status_code=status)


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


def _path(url: str) -> str:
    return httpx.URL(url).path
