"""File inputs: each becomes what its upstream takes. An upstream that fetches a URL gets an
https URL as it is, and a local file (or, where it reads none, a data: URI) uploaded first; an
upstream that takes multipart parts gets the bytes of the local file, data: URI or download.
A local file is read once, inside the allowed roots, and its type comes from its bytes.

Path safety: the path is resolved (`~`, `..` and every symlink) before it is compared with
the roots, which are resolved too, so no spelling of a path reaches outside them. Errors
about a path outside the roots say only that: nothing about what is there.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes, urlparse

from mcp_audio.core.errors import InvalidArguments
from mcp_audio.core.media import extension_for, sniff_content_type
from mcp_audio.files.outputs import audio_properties
from mcp_audio.files.references import is_reference, referenced_output, transcript_of, upstream_copy
from mcp_audio.providers.base import FileBytes, LocalFile, Provider, Uploads, UpstreamRequest
from mcp_audio.store import LOCAL_PRINCIPAL

if TYPE_CHECKING:
    import httpx

    from mcp_audio.catalog import Capability, Catalog, PreparedCall
    from mcp_audio.core.manifest import InputSpec
    from mcp_audio.store import JobStore

_MEDIA_KINDS = {"audio": ("audio/",), "video": ("video/",), "media": ("audio/", "video/")}


def is_url(value: str) -> bool:
    return value.startswith(("https://", "http://"))


def local_path(field: str, value: str, roots: list[Path], *, max_bytes: int) -> Path:
    """Resolve a local path inside the allowed roots to a non-empty file, or raise InvalidArguments."""
    if not roots:
        raise InvalidArguments(
            f"`{field}`: local files are disabled (no allowed folders: the server's MCP_AUDIO_ALLOWED_DIRS); "
            "pass an https:// URL or a data: URI."
        )
    real_roots = [root.expanduser().resolve() for root in roots]
    candidate = Path(value).expanduser()
    if not candidate.is_absolute():
        candidate = real_roots[0] / candidate
    real = candidate.resolve()  # follows every symlink and `..`
    if not any(real.is_relative_to(root) for root in real_roots):
        raise InvalidArguments(
            f"`{field}`: '{value}' is outside the folders this server may read "
            f"({', '.join(str(root) for root in real_roots)}). Move the file there, pass an https:// URL, or add its "
            "folder to the server's MCP_AUDIO_ALLOWED_DIRS."
        )
    if not real.is_file():
        raise InvalidArguments(f"`{field}`: no file at '{value}' (inside the allowed folders).")
    size = real.stat().st_size
    if size == 0:
        raise InvalidArguments(f"`{field}`: '{value}' is empty.")
    if size > max_bytes:
        raise InvalidArguments(
            f"`{field}`: '{value}' is {size / 2**20:.1f} MiB; this upstream takes at most {max_bytes / 2**20:.0f} MiB."
        )
    return real


def read_local_file(
    field: str,
    value: str,
    roots: list[Path],
    *,
    kind: str,
    max_bytes: int,
    duration_range: tuple[float | None, float | None] = (None, None),
) -> FileBytes:
    """Resolve a local path inside the allowed roots and read it, or raise InvalidArguments."""
    real = local_path(field, value, roots, max_bytes=max_bytes)
    # O_NOFOLLOW: the resolved path must still be a plain file when opened, not a swapped-in link.
    fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as handle:
        data = handle.read()
    content_type = "application/octet-stream" if kind == "embedding" else check_kind(field, value, data, kind)
    _check_duration(field, value, real, duration_range)
    return FileBytes(name=real.name, data=data, content_type=content_type, source=str(real))


def check_kind(field: str, shown: str, head: bytes, kind: str) -> str:
    """The media type of a file from its first bytes, if it is of `kind`; else InvalidArguments."""
    content_type = sniff_content_type(head)
    if content_type is None or not content_type.startswith(_MEDIA_KINDS[kind]):
        expected = {"audio": "an audio", "video": "a video", "media": "an audio or video"}[kind]
        found = f"a {content_type} file" if content_type else "not a recognised audio or video format"
        raise InvalidArguments(
            f"`{field}`: '{shown}' is {found}; {expected} file is needed (wav, mp3, flac, ogg, m4a, mp4, webm)."
        )
    return content_type


def _check_duration(field: str, value: str, path: Path, limits: tuple[float | None, float | None]) -> None:
    """Refuse a recording outside the upstream's length limits before paying to upload it."""
    low, high = limits
    if low is None and high is None:
        return
    duration = audio_properties(path).get("duration_s")
    if duration is None:
        return  # unknown length: the upstream will judge
    if (low is not None and duration < low) or (high is not None and duration > high):
        wanted = (
            f"{low:g}-{high:g} s"
            if low is not None and high is not None
            else (f"at least {low:g} s" if low is not None else f"at most {high:g} s")
        )
        raise InvalidArguments(f"`{field}`: '{value}' is {duration:.1f} s long; this input needs {wanted}.")


class InputResolver:
    """Turns a validated call's file inputs into what its upstream takes (see the module doc)."""

    def __init__(
        self,
        store: JobStore,
        http: Callable[[], httpx.AsyncClient],
        principal: str = LOCAL_PRINCIPAL,
        catalog: Catalog | None = None,
    ) -> None:
        self._store = store
        self._catalog = catalog  # the tools of earlier jobs an input names (a speech job's text)
        self._http = http  # made only when a file input has to be downloaded
        self._principal = principal  # whose earlier outputs `files://` and `jobs://` may name

    async def resolve(
        self, capability: Capability, call: PreparedCall, provider: Provider, roots: list[Path]
    ) -> UpstreamRequest:
        body = dict(call.body)
        parts: dict[str, FileBytes] = {}
        local = await self._resolve_local(capability, body, provider, roots)
        # The body is keyed by upstream field names (`sent_name`); messages name the tool's argument.
        for spec in capability.file_inputs:
            key = spec.sent_name
            value = body.get(key)
            if not isinstance(value, str) or spec.sent_as == "path":
                continue
            _check_reference(spec.name, value, provider.max_upload_bytes)
            if spec.sent_as == "part":
                parts[key] = await self._read(spec, value, provider, roots)
                del body[key]
            elif not is_url(value) and not (value.startswith("data:") and capability.upstream.reads_data_uris):
                reference = await self._upstream_copy(value, spec.name, provider) or await self._upload(
                    call.endpoint, await self._read(spec, value, provider, roots), provider
                )
                target = capability.inputs[spec.uploaded_as].sent_name if spec.uploaded_as else key
                if target != key and target in body:
                    raise InvalidArguments(f"`{spec.name}`: give a file or `{spec.uploaded_as}`, not both.")
                del body[key]
                body[target] = reference
        return UpstreamRequest(
            endpoint=call.endpoint,
            body=body,
            parts=parts,
            options=call.options,
            returns=capability.spec.returns,
            partial_path=capability.spec.partial_text,
            local=local,
        )

    async def _resolve_local(
        self, capability: Capability, body: dict[str, Any], provider: Provider, roots: list[Path]
    ) -> dict[str, Any]:
        """A tool run in this process: its file inputs as local paths, its job inputs as results.

        Nothing is uploaded. Temporary files written before a later input fails are removed."""
        local: dict[str, Any] = {}
        made: list[LocalFile] = []
        try:
            for spec in capability.spec.inputs:
                key = spec.sent_name
                value = body.get(key)
                if spec.job is not None and isinstance(value, str):
                    local[key] = await transcript_of(self._store, spec.name, value, self._principal, self._catalog)
                if spec.sent_as != "path" or value is None:
                    continue
                items = value if isinstance(value, list) else [value]
                files = []
                for i, item in enumerate(items):
                    field = f"{spec.name}[{i}]" if isinstance(value, list) else spec.name
                    files.append(await self._local_file(spec, field, str(item), provider, roots))
                    made.append(files[-1])
                local[key] = files if isinstance(value, list) else files[0]
                # The row keeps where each file came from, not a data: URI's content.
                sources = [file.source for file in files]
                body[key] = sources if isinstance(value, list) else sources[0]
        except BaseException:
            for file in made:
                if file.temporary:
                    file.path.unlink(missing_ok=True)
            raise
        return local

    async def _local_file(
        self, spec: InputSpec, field: str, value: str, provider: Provider, roots: list[Path]
    ) -> LocalFile:
        """A file input as a path: a local file or a saved output as it is, else a temporary copy."""
        assert spec.file is not None
        limit, label = provider.max_upload_bytes, "this server's local tools"
        _check_reference(field, value, limit)
        if is_reference(value):
            item = await referenced_output(self._store, field, value, self._principal)
            if item.path is not None and Path(item.path).is_file():
                return LocalFile(field=field, path=Path(item.path), source=value)
            if not is_url(item.url):
                raise InvalidArguments(f"`{field}`: the file {value[:100]} names is no longer on disk.")
            return await self._download_local(spec.file, field, item.url, limit, label)
        elif value.startswith("data:"):
            file = decode_data_uri(field, value, max_bytes=limit, upstream=label)
        elif is_url(value):
            return await self._download_local(spec.file, field, value, limit, label)
        else:
            try:
                path = local_path(field, value, roots, max_bytes=limit)
                with path.open("rb") as head:
                    check_kind(field, value, head.read(64), spec.file)
            except OSError as exc:
                raise InvalidArguments(
                    f"`{field}`: '{value[:100]}' could not be read ({exc.strerror or exc})."
                ) from exc
            return LocalFile(field=field, path=path, source=str(path))
        content_type = check_kind(field, file.source, file.data, spec.file)
        handle, name = tempfile.mkstemp(prefix="mcp-audio-input-", suffix=extension_for(content_type))
        with os.fdopen(handle, "wb") as out:
            out.write(file.data)
        return LocalFile(field=field, path=Path(name), source=file.source, temporary=True)

    async def _download_local(self, kind: str, field: str, url: str, limit: int, label: str) -> LocalFile:
        """A URL input as a temporary file, written as it arrives (never held whole in memory)."""
        handle, name = tempfile.mkstemp(prefix="mcp-audio-input-")
        path = Path(name)
        try:
            with os.fdopen(handle, "wb") as out:
                _, head, _ = await stream_download(
                    self._http(), field, url, max_bytes=limit, upstream=label, write=out.write
                )
            content_type = check_kind(field, url[:200], head, kind)
            final = path.with_name(path.name + extension_for(content_type))
            os.replace(path, final)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return LocalFile(field=field, path=final, source=url[:200], temporary=True)

    async def _read(self, spec: InputSpec, value: str, provider: Provider, roots: list[Path]) -> FileBytes:
        try:
            return await self._read_checked(spec, value, provider, roots)
        except OSError as exc:  # e.g. a name too long for the file system, or no permission
            raise InvalidArguments(
                f"`{spec.name}`: '{value[:100]}' could not be read ({exc.strerror or exc})."
            ) from exc

    async def _read_checked(self, spec: InputSpec, value: str, provider: Provider, roots: list[Path]) -> FileBytes:
        limit = provider.max_upload_bytes
        upstream = provider.upstream.label
        if is_reference(value):  # an earlier output, sent to this upstream like a local file
            assert spec.file is not None
            local = await self._local_file(spec, spec.name, value, provider, roots)
            try:
                data = local.path.read_bytes()
            finally:
                if local.temporary:
                    local.path.unlink(missing_ok=True)
            _check_size(spec.name, value[:100], len(data), limit, upstream)
            content_type = check_kind(spec.name, value, data, spec.file)
            return FileBytes(name=local.path.name, data=data, content_type=content_type, source=value)
        if value.startswith("data:"):  # named after the upstream field, as before an argument's rename
            return decode_data_uri(spec.name, value, max_bytes=limit, upstream=upstream, stem=spec.sent_name)
        if is_url(value):
            return await download_input(self._http(), spec.name, value, max_bytes=limit, upstream=upstream)
        assert spec.file is not None
        return read_local_file(
            spec.name,
            value,
            roots,
            kind=spec.file,
            max_bytes=limit,
            duration_range=(spec.min_duration_s, spec.max_duration_s),
        )

    async def _upstream_copy(self, value: str, field: str, provider: Provider) -> str | None:
        """An earlier output of this same upstream (jobs://, files://) as the URL it already has there."""
        if not is_reference(value):
            return None
        return await upstream_copy(self._store, field, value, self._principal, provider.upstream.name, time.time())

    async def _upload(self, endpoint: str, file: FileBytes, provider: Provider) -> str:
        assert isinstance(provider, Uploads), provider  # the catalog checks this at load
        lifetime = provider.upload_lifetime_s
        name = provider.upstream.name
        cached = await self._store.find_upload(file.sha256, name, lifetime) if lifetime > 0 else None
        if cached is not None:
            return cached
        reference = await provider.upload(endpoint, file)
        if lifetime > 0:
            await self._store.save_upload(file.sha256, name, reference)
        return reference


# How much of a download is kept to tell its type: enough to look past an ID3 tag holding Content
# Credentials (a signed FLAC starts with one), bounded whatever the file's size.
SNIFF_BYTES = 256 * 1024
MAX_REFERENCE_CHARS = 4096  # a path or URL; file content itself comes as a data: URI


def _check_reference(field: str, value: str, max_bytes: int) -> None:
    """What no file input may be, whatever form it takes: refused before anything is read."""
    if "\x00" in value:
        raise InvalidArguments(f"`{field}`: contains a NUL character; give a file path, an https URL or a data: URI.")
    if value.startswith("data:"):
        if len(value) > max_bytes * 4 // 3 + 1024:  # base64 of the largest file this upstream takes
            raise InvalidArguments(f"`{field}`: the data: URI is over {max_bytes / 2**20:.0f} MiB of file content.")
    elif len(value) > MAX_REFERENCE_CHARS:
        raise InvalidArguments(
            f"`{field}`: is {len(value)} characters; a path or URL has at most {MAX_REFERENCE_CHARS} "
            "(send file content as a data: URI)."
        )


def _check_size(field: str, where: str, size: int, max_bytes: int, upstream: str) -> None:
    if size == 0:
        raise InvalidArguments(f"`{field}`: {where} is empty.")
    if size > max_bytes:
        raise InvalidArguments(
            f"`{field}`: {where} is over {max_bytes / 2**20:.0f} MiB, the most this server sends to {upstream}."
        )


def decode_data_uri(field: str, uri: str, *, max_bytes: int, upstream: str, stem: str | None = None) -> FileBytes:
    """The file a data: URI holds, named `stem` (default: the field) with its type's extension."""
    header, comma, payload = uri.removeprefix("data:").partition(",")
    if not comma:
        raise InvalidArguments(f"`{field}`: not a valid data: URI (no comma before the data).")
    params = header.split(";")
    try:
        data = base64.b64decode(payload, validate=True) if "base64" in params[1:] else unquote_to_bytes(payload)
    except (binascii.Error, ValueError) as exc:
        raise InvalidArguments(f"`{field}`: the data: URI's base64 is invalid ({exc}).") from exc
    _check_size(field, "the data: URI", len(data), max_bytes, upstream)
    content_type = params[0].lower() or _content_type(data, "")
    name = f"{stem or field}{extension_for(content_type)}"
    return FileBytes(name=name, data=data, content_type=content_type, source="data:")


async def download_input(http: httpx.AsyncClient, field: str, url: str, *, max_bytes: int, upstream: str) -> FileBytes:
    """Fetch a URL an upstream can only take as bytes; never with an upstream key (another host)."""
    chunks: list[bytes] = []
    _size, head, declared = await stream_download(
        http, field, url, max_bytes=max_bytes, upstream=upstream, write=chunks.append
    )
    data = b"".join(chunks)
    name = Path(unquote_to_bytes(urlparse(url).path).decode(errors="replace")).name or field
    sniffed = sniff_content_type(head)
    content_type = sniffed or (declared if declared.startswith(("audio/", "video/")) else _content_type(data, name))
    return FileBytes(name=name, data=data, content_type=content_type, source=url[:200])


async def stream_download(
    http: httpx.AsyncClient, field: str, url: str, *, max_bytes: int, upstream: str, write: Callable[[bytes], Any]
) -> tuple[int, bytes, str]:
    """GET `url`, handing each piece to `write`; (size, first 64 bytes, declared media type).

    `http` is a guarded client (files/fetch.py): every refusal and every failure to connect gives
    the one message of `refused_text`. The size limit holds while reading: a declared length over
    it is refused before the body, and an undeclared one is cut as soon as it passes the limit."""
    import httpx

    from mcp_audio.files.fetch import FetchRefused, refused_text

    shown = url[:200]
    size, head = 0, b""
    try:
        async with http.stream("GET", url) as response:
            if response.status_code >= 400:
                raise InvalidArguments(f"`{field}`: downloading {shown} failed (HTTP {response.status_code}).")
            declared_size = str(response.headers.get("content-length", ""))
            if declared_size.isdigit() and int(declared_size) > max_bytes:
                _check_size(field, shown, int(declared_size), max_bytes, upstream)
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    _check_size(field, shown, size, max_bytes, upstream)
                if len(head) < SNIFF_BYTES:
                    head += chunk[: SNIFF_BYTES - len(head)]
                write(chunk)
            declared = str(response.headers.get("content-type", "")).split(";")[0].strip().lower()
    except (
        FetchRefused,
        httpx.ConnectError,
        httpx.ConnectTimeout,
        httpx.TooManyRedirects,
        httpx.InvalidURL,
        httpx.UnsupportedProtocol,
    ) as exc:
        raise InvalidArguments(f"`{field}`: {refused_text(url)}.") from exc
    except httpx.HTTPError as exc:
        raise InvalidArguments(f"`{field}`: downloading {shown} failed ({type(exc).__name__}).") from exc
    _check_size(field, shown, size, max_bytes, upstream)
    return size, head, declared


def _content_type(data: bytes, name: str) -> str:
    return sniff_content_type(data) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def file_records(request: UpstreamRequest) -> dict[str, Any]:
    """The request body as the job row keeps it: multipart files as a record, never their bytes."""
    return request.body | {name: part.record() for name, part in request.parts.items()}
