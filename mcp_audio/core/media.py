"""Media types: what a file's first bytes say it is, and the names and extensions of formats."""

from __future__ import annotations

import mimetypes

__all__ = ["FORMAT_TYPES", "extension_for", "sniff_content_type"]

# Audio format names (as tools and upstreams spell them) -> content types.
FORMAT_TYPES = {
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "m4a": "audio/mp4",
    "m4b": "audio/x-m4b",
    "aac": "audio/aac",
    "opus": "audio/ogg",
    "pcm": "audio/pcm",
}

# What a media file starts with -> its content type. Names lie; bytes rarely do.
_MAGIC: list[tuple[int, bytes, str]] = [
    (0, b"fLaC", "audio/flac"),
    (0, b"OggS", "audio/ogg"),
    (0, b"ID3", "audio/mpeg"),
    (0, b"\x1a\x45\xdf\xa3", "video/webm"),
    (0, b"#!AMR", "audio/amr"),
]


def sniff_content_type(head: bytes) -> str | None:
    """The media type of a file from its first bytes, or None when it is not audio or video.

    An ID3v2 tag may precede other audio than MP3 (C2PA Content Credentials are embedded in a
    FLAC file that way): when `head` reaches past the tag, what follows it decides."""
    if head[:3] == b"ID3" and len(head) >= 10:
        end = 10 + _syncsafe(head[6:10]) + (10 if head[5] & 0x10 else 0)  # flag 0x10: a footer follows
        return (sniff_content_type(head[end : end + 64]) if len(head) > end + 4 else None) or "audio/mpeg"
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


def _syncsafe(four: bytes) -> int:
    """An ID3v2 size: four bytes of seven bits each."""
    return (four[0] & 0x7F) << 21 | (four[1] & 0x7F) << 14 | (four[2] & 0x7F) << 7 | (four[3] & 0x7F)


_EXTENSIONS = {
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/mpeg": ".mp3",
    "audio/flac": ".flac",
    "audio/ogg": ".ogg",
    "audio/mp4": ".m4a",
    "audio/x-m4b": ".m4b",
    "audio/aac": ".aac",
    "video/mp4": ".mp4",
    "application/x-subrip": ".srt",
    "text/vtt": ".vtt",
    "application/json+chapters": ".json",
    "application/octet-stream": ".bin",
}


def extension_for(content_type: str | None) -> str:
    """A file extension for a media type (`.bin` when unknown); mimetypes lacks several audio types."""
    media_type = (content_type or "").split(";")[0]
    return _EXTENSIONS.get(media_type) or mimetypes.guess_extension(media_type) or ".bin"
