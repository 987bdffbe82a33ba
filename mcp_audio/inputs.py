"""File inputs: an https URL or a data URI passes as is; a local path is checked against the
allowed roots, sniffed, and uploaded the way its upstream wants it.

Path safety: the path is resolved (`~`, `..` and every symlink) before it is compared with
the roots, which are resolved too, so no spelling of a path reaches outside them. Errors
about a path outside the roots say only that: nothing about what is there.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

from mcp_audio.catalog import Capability, PreparedCall
from mcp_audio.errors import InvalidArguments
from mcp_audio.outputs import audio_properties
from mcp_audio.providers.base import Provider
from mcp_audio.store import JobStore

# What a media file starts with -> its content type. Names lie; bytes rarely do.
_MAGIC: list[tuple[int, bytes, str]] = [
    (0, b"fLaC", "audio/flac"),
    (0, b"OggS", "audio/ogg"),
    (0, b"ID3", "audio/mpeg"),
    (0, b"\x1a\x45\xdf\xa3", "video/webm"),
    (0, b"#!AMR", "audio/amr"),
]
_MEDIA_KINDS = {"audio": ("audio/",), "video": ("video/",), "media": ("audio/", "video/")}
UploadFn = Callable[[bytes, str, str], Awaitable[str]]  # (data, content_type, file_name) -> URL


def sniff_content_type(head: bytes) -> str | None:
    """The media type of a file from its first bytes, or None when it is not audio or video."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "audio/aiff"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return "audio/mp4" if brand.startswith((b"M4A", b"M4B")) else "video/mp4"
    for offset, magic, content_type in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return content_type
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:  # an MPEG audio frame sync
        return "audio/mp4" if head[1] & 0x06 == 0 else "audio/mpeg"  # layer bits 00: ADTS AAC
    return None


@dataclass(frozen=True)
class LocalFile:
    path: Path
    data: bytes
    content_type: str
    sha256: str


def is_remote(value: str) -> bool:
    return value.startswith(("https://", "http://", "data:"))


def read_local_file(
    field: str,
    value: str,
    roots: list[Path],
    *,
    kind: str,
    max_bytes: int,
    duration_range: tuple[float | None, float | None] = (None, None),
) -> LocalFile:
    """Resolve a local path inside the allowed roots and read it, or raise InvalidArguments."""
    if not roots:
        raise InvalidArguments(f"`{field}`: local files are disabled (no allowed folders); pass an https:// URL.")
    real_roots = [root.expanduser().resolve() for root in roots]
    candidate = Path(value).expanduser()
    if not candidate.is_absolute():
        candidate = real_roots[0] / candidate
    real = candidate.resolve()  # follows every symlink and `..`
    if not any(real.is_relative_to(root) for root in real_roots):
        raise InvalidArguments(
            f"`{field}`: '{value}' is outside the folders this server may read "
            f"({', '.join(str(root) for root in real_roots)}). Move the file there, or pass an https:// URL."
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
    # O_NOFOLLOW: the resolved path must still be a plain file when opened, not a swapped-in link.
    fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as handle:
        data = handle.read()
    content_type = sniff_content_type(data[:64])
    if kind == "embedding":
        content_type = "application/octet-stream"
    elif content_type is None or not content_type.startswith(_MEDIA_KINDS[kind]):
        expected = {"audio": "an audio", "video": "a video", "media": "an audio or video"}[kind]
        found = f"a {content_type} file" if content_type else "not a recognised audio or video format"
        raise InvalidArguments(
            f"`{field}`: '{value}' is {found}; {expected} file is needed (wav, mp3, flac, ogg, m4a, mp4, webm)."
        )
    _check_duration(field, value, real, duration_range)
    return LocalFile(path=real, data=data, content_type=content_type, sha256=hashlib.sha256(data).hexdigest())


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


async def resolve_file_inputs(
    capability: Capability, call: PreparedCall, provider: Provider, store: JobStore, roots: list[Path]
) -> PreparedCall:
    """Replace every local path among the call's file inputs with an upstream-readable URL."""
    payload = dict(call.payload)
    for name, spec in capability.inputs.items():
        value = payload.get(name)
        if spec.file is None or not isinstance(value, str) or is_remote(value):
            continue
        local = read_local_file(
            name,
            value,
            roots,
            kind=spec.file,
            max_bytes=provider.max_upload_bytes,
            duration_range=(spec.min_duration_s, spec.max_duration_s),
        )
        if provider.takes_file_bytes:
            payload[name] = local.path.as_uri()  # checked here; the provider sends the bytes itself
            continue
        url = store.find_upload(local.sha256, provider.name, provider.upload_lifetime_s)
        if url is None:
            url = await provider.upload(local.data, local.content_type, local.path.name)
            store.save_upload(local.sha256, provider.name, url)
        payload[name] = url
    return replace(call, payload=payload)
