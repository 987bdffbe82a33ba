"""File inputs as bytes, for upstreams that take files as multipart parts (Voice API, Eigen AI).

By the time a provider sees a file input, `inputs.resolve_file_inputs` has turned a local path
into a `file://` URI of a checked file; the input may also be an http(s) URL or a data: URI.
Each becomes (file name, bytes, content type), size-limited.
"""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes, urlparse
from urllib.request import url2pathname

import anyio
import httpx

from mcp_audio.errors import InvalidArguments
from mcp_audio.inputs import sniff_content_type
from mcp_audio.outputs import extension_for

FilePart = tuple[str, bytes, str]  # (file name, bytes, content type), as httpx takes a file part


async def read_file_part(http: httpx.AsyncClient, field: str, value: Any, *, max_bytes: int, upstream: str) -> FilePart:
    """The bytes of file input `field`, whatever form it was given in."""
    text = str(value)
    limit = _SizeLimit(field, max_bytes, upstream)
    if text.startswith("file:"):
        path = Path(url2pathname(urlparse(text).path))
        try:
            data = await anyio.Path(path).read_bytes()
        except OSError as exc:
            raise InvalidArguments(f"`{field}`: could not read '{path}' ({exc.strerror or exc}).") from exc
        limit.check(f"'{path}'", len(data))
        return path.name, data, _content_type(data, path.name)
    if text.startswith("data:"):
        data, declared = _decode_data_uri(field, text)
        limit.check("the data: URI", len(data))
        content_type = declared or _content_type(data, "")
        return f"{field}{extension_for(content_type)}", data, content_type
    if text.startswith(("https://", "http://")):
        return await _download(http, field, text, limit)
    raise InvalidArguments(f"`{field}`: '{text[:100]}' is not a local file path, an https:// URL or a data: URI.")


def form_value(value: Any) -> str:
    """A form field's text: booleans as `true`/`false`, whole numbers without `.0`, structures as JSON.

    Numbers come from the tool's validation as floats (8 -> 8.0); an upstream integer field
    would refuse "8.0", and every number field accepts "8".
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def media_type(response: httpx.Response) -> str:
    """The response's Content-Type without parameters, lower-cased ('' when absent)."""
    return str(response.headers.get("content-type", "")).split(";")[0].strip().lower()


class _SizeLimit:
    def __init__(self, field: str, max_bytes: int, upstream: str) -> None:
        self.field, self.max_bytes, self.upstream = field, max_bytes, upstream

    def check(self, where: str, size: int) -> None:
        if size == 0:
            raise InvalidArguments(f"`{self.field}`: {where} is empty.")
        if size > self.max_bytes:
            raise InvalidArguments(
                f"`{self.field}`: {where} is over {self.max_bytes / 2**20:.0f} MiB, the most this server sends "
                f"to {self.upstream}."
            )


async def _download(http: httpx.AsyncClient, field: str, url: str, limit: _SizeLimit) -> FilePart:
    """Fetch a URL the upstream can only take as bytes; never with an upstream key (another host)."""
    shown = url[:200]
    chunks: list[bytes] = []
    size = 0
    try:
        async with http.stream("GET", url, follow_redirects=True) as response:
            if response.status_code >= 400:
                raise InvalidArguments(f"`{field}`: downloading {shown} failed (HTTP {response.status_code}).")
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit.max_bytes:
                    limit.check(shown, size)
                chunks.append(chunk)
            declared = media_type(response)
    except httpx.HTTPError as exc:
        raise InvalidArguments(f"`{field}`: downloading {shown} failed ({type(exc).__name__}).") from exc
    limit.check(shown, size)
    data = b"".join(chunks)
    name = Path(unquote_to_bytes(urlparse(url).path).decode(errors="replace")).name or field
    sniffed = sniff_content_type(data[:64])
    return name, data, sniffed or (declared if declared.startswith(("audio/", "video/")) else _content_type(data, name))


def _decode_data_uri(field: str, uri: str) -> tuple[bytes, str | None]:
    header, comma, payload = uri.removeprefix("data:").partition(",")
    if not comma:
        raise InvalidArguments(f"`{field}`: not a valid data: URI (no comma before the data).")
    params = header.split(";")
    try:
        data = base64.b64decode(payload, validate=True) if "base64" in params[1:] else unquote_to_bytes(payload)
    except (binascii.Error, ValueError) as exc:
        raise InvalidArguments(f"`{field}`: the data: URI's base64 is invalid ({exc}).") from exc
    return data, params[0].lower() or None


def _content_type(data: bytes, name: str) -> str:
    return sniff_content_type(data[:64]) or mimetypes.guess_type(name)[0] or "application/octet-stream"
