"""`mcp-audio doctor`: is each upstream configured and reachable (every URL it is configured
with), are the data and output folders writable and the allowed folders readable, and does the
job database of MCP_AUDIO_DATABASE_URL answer (its URL shown without the password).

Keys are reported as set or missing, never shown, and sent only where the upstream's own
checks send them (its first URL); its other URLs get a plain request, which any answer passes.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import anyio

from mcp_audio.config import ServerSettings
from mcp_audio.core.errors import AuthenticationFailed, McpAudioError
from mcp_audio.core.redaction import redact
from mcp_audio.core.upstreams import UPSTREAMS, Upstream, UrlSetting
from mcp_audio.providers.base import VerifiesKey
from mcp_audio.providers.pool import build_provider


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "pass", "fail" or "skip"
    detail: str


async def run_checks(settings: ServerSettings) -> list[Check]:
    checks: list[Check] = []
    for name, upstream in UPSTREAMS.items():
        if upstream.local:
            checks.append(await _local_check(upstream, settings))
            continue
        key_env, url = upstream.key_env, settings.url_of(upstream, upstream.urls[0].param)
        if settings.key_of(upstream) is None:
            checks.append(Check(f"{name} key", "skip", f"{key_env} is not set: its tools answer with an error"))
            continue
        checks.append(Check(f"{name} key", "pass", f"{key_env} is set"))
        provider = build_provider(upstream, settings)
        try:
            with anyio.fail_after(15):
                detail = await provider.health()
            checks.append(Check(f"{name} upstream", "pass", f"{url}: {detail}"))
            checks.append(await _verify_key(provider, upstream))
        except (McpAudioError, TimeoutError) as exc:
            message = redact(str(exc) or "no answer within 15 s", settings.secrets())
            checks.append(Check(f"{name} upstream", "fail", f"{url}: {message}"))
        finally:
            await provider.aclose()
        checks.extend([await _reachable(upstream, setting, settings) for setting in upstream.urls[1:]])
    for label, folder in (("data folder", settings.data_dir), ("output folder", settings.output_dir)):
        checks.append(_writable(label, folder))
    if settings.database_url is not None:
        checks.append(await _database(settings.database_url.get_secret_value()))
    checks.extend(_allowed_folders(settings))
    secrets = settings.secrets()
    return [Check(check.name, check.status, redact(check.detail, secrets)) for check in checks]


async def _local_check(upstream: Upstream, settings: ServerSettings) -> Check:
    """An upstream in this process: can its engine load (no key, nothing reachable to check)."""
    provider = build_provider(upstream, settings)
    try:
        return Check(f"{upstream.name} tools", "pass", await provider.health())
    except McpAudioError as exc:
        return Check(f"{upstream.name} tools", "fail", str(exc))
    finally:
        await provider.aclose()


async def _verify_key(provider: object, upstream: Upstream) -> Check:
    """An authenticated request that costs nothing, where the upstream has one."""
    label = f"{upstream.name} key accepted"
    if not isinstance(provider, VerifiesKey):
        return Check(label, "skip", f"{upstream.label} has no free authenticated request to check {upstream.key_env}")
    try:
        with anyio.fail_after(15):
            detail = await provider.verify_key()
    except AuthenticationFailed as exc:
        return Check(label, "fail", f"{upstream.key_env} was rejected by {upstream.label} (HTTP {exc.status})")
    except (McpAudioError, TimeoutError) as exc:
        return Check(label, "fail", f"{upstream.key_env} could not be checked: {exc or 'no answer within 15 s'}")
    return Check(label, "pass", f"{upstream.key_env} {detail}")


async def _reachable(upstream: Upstream, setting: UrlSetting, settings: ServerSettings) -> Check:
    """A further base URL of an upstream (fal's run, REST and CDN hosts): does anything answer."""
    import httpx

    from mcp_audio.net import http_client

    value = settings.url_of(upstream, setting.param)
    if not setting.param.endswith("url"):  # a host name sent as a header, not a URL
        return Check(f"{upstream.name} {setting.param}", "pass", f"{setting.env} is {value}")
    label = f"{upstream.name} {setting.param.removesuffix('_url')} URL"
    if not value.startswith(("https://", "http://")):
        return Check(label, "fail", f"{setting.env}={value}: not an http(s) URL")
    try:
        async with http_client(timeout=httpx.Timeout(URL_TIMEOUT_S)) as http:
            response = await http.get(value)
    except httpx.HTTPError as exc:
        return Check(label, "fail", f"{setting.env}={value}: could not be reached ({type(exc).__name__})")
    return Check(label, "pass", f"{setting.env}={value}: reachable (HTTP {response.status_code})")


URL_TIMEOUT_S = 10.0


def _allowed_folders(settings: ServerSettings) -> list[Check]:
    """The folders local file inputs are read from: each must be a readable folder."""
    roots = settings.input_roots("stdio")
    source = "MCP_AUDIO_ALLOWED_DIRS" if settings.allowed_dirs is not None else "default; over HTTP none"
    if not roots:
        return [Check("allowed folders", "skip", f"none ({source}): local file inputs are refused")]
    checks = []
    for root in roots:
        if not root.is_dir():
            checks.append(Check("allowed folder", "fail", f"{root} ({source}): no such folder"))
        elif not os.access(root, os.R_OK | os.X_OK):
            checks.append(Check("allowed folder", "fail", f"{root} ({source}): not readable"))
        else:
            checks.append(Check("allowed folder", "pass", f"{root} ({source}) is readable"))
    return checks


def _writable(label: str, folder: Path) -> Check:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Check(label, "fail", f"{folder}: not writable ({exc.strerror or exc})")
    return Check(label, "pass", f"{folder} is writable")


DATABASE_TIMEOUT_S = 15.0


async def _database(url: str) -> Check:
    """Connect, migrate if needed and write once, as a starting server would."""
    shown = without_password(url)

    async def check() -> None:
        from mcp_audio.store.postgres import PostgresJobStore

        store = PostgresJobStore(url)
        try:
            await store.open()
            await store.check_writable("doctor")
        finally:
            await store.close()

    try:
        with anyio.fail_after(DATABASE_TIMEOUT_S):
            await check()
    except TimeoutError:
        return Check("job database", "fail", f"{shown}: no answer within {DATABASE_TIMEOUT_S:g} s")
    except Exception as exc:  # psycopg's errors, a missing driver: each says what is wrong
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        return Check("job database", "fail", f"{shown}: unreachable ({type(exc).__name__}: {first})")
    return Check("job database", "pass", f"{shown}: reachable, migrated and writable (MCP_AUDIO_DATABASE_URL)")


def without_password(url: str) -> str:
    """The URL with its password (if any) replaced by ***."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def render(checks: list[Check]) -> str:
    width = max(len(check.name) for check in checks)
    return "\n".join(f"{check.status.upper():4s}  {check.name.ljust(width)}  {check.detail}" for check in checks)
