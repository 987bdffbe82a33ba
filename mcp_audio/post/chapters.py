"""Chapters inside a finished file: write them and read them back.

MP3: ID3v2.4 CHAP frames (one per chapter, each with a TIT2 title) under one top-level,
ordered CTOC, plus the file's TIT2 title, written with mutagen in place.

M4A/M4B: mutagen cannot write MP4 chapters, but PyAV (>= 18) can: `OutputContainer.set_chapters`
while remuxing the encoded audio packet for packet (no re-encode). FFmpeg's MP4 muxer then
writes both chapter forms players read: a QuickTime chapter text track (referenced by a `chap`
track reference; Apple Books, QuickTime, VLC) and a Nero `chpl` atom (mutagen's MP4Chapters,
foobar2000, many Android players). WAV and FLAC get no embedded chapters (the JSON file and
the result carry them).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import av.error

from mcp_audio.core.script import ChapterMark, check_chapter_marks
from mcp_audio.post.engine import probe
from mcp_audio.post.errors import PostError

if TYPE_CHECKING:
    from av.container.core import Chapter

_MS = Fraction(1, 1000)


def embed_chapters(path: Path, marks: list[ChapterMark], *, title: str | None = None) -> bool:
    """Write `marks` (and `title`) into the file at `path`, in place; returns False for formats
    that carry no chapters here (wav, flac, ogg). Raises PostError for unreadable files and
    for chapters that overlap or end after the audio."""
    try:
        check_chapter_marks(marks)
    except ValueError as exc:
        raise PostError(f"{path.name}: {exc}") from exc
    info = probe(path, max_duration_s=None)
    if info.duration_s is not None and marks and marks[-1].end_s > info.duration_s + 0.05:
        raise PostError(
            f"{path.name}: the last chapter ends at {marks[-1].end_s:.3f} s, after the audio ({info.duration_s:.3f} s)"
        )
    if info.format == "mp3":
        _embed_id3(path, marks, title)
        return True
    if info.format == "m4a":
        _embed_mp4(path, marks, title)
        return True
    return False


def _embed_id3(path: Path, marks: list[ChapterMark], title: str | None) -> None:
    import mutagen.id3

    id3: Any = mutagen.id3  # untyped library: one Any, not an ignore per call
    CHAP, CTOC, TIT2, CTOCFlags = id3.CHAP, id3.CTOC, id3.TIT2, id3.CTOCFlags
    try:
        tags = id3.ID3(str(path))
    except id3.ID3NoHeaderError:
        tags = id3.ID3()
    tags.delall("CHAP")
    tags.delall("CTOC")
    ids = [f"chp{i}" for i in range(len(marks))]
    for element_id, mark in zip(ids, marks, strict=True):
        tags.add(
            CHAP(
                element_id=element_id,
                start_time=round(mark.start_s * 1000),
                end_time=round(mark.end_s * 1000),
                sub_frames=[TIT2(encoding=3, text=[mark.title])],
            )
        )
    if marks:
        tags.add(
            CTOC(
                element_id="toc",
                flags=CTOCFlags.TOP_LEVEL | CTOCFlags.ORDERED,
                child_element_ids=ids,
                sub_frames=[TIT2(encoding=3, text=["Chapters"])],
            )
        )
    if title:
        tags.setall("TIT2", [TIT2(encoding=3, text=[title])])
    tags.save(str(path), v2_version=4)


def _embed_mp4(path: Path, marks: list[ChapterMark], title: str | None) -> None:
    """Remux packet for packet into a new MP4 with chapters; replaces `path` when complete."""
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}{path.suffix}.part")
    chapters: list[Chapter] = [
        {
            "id": i + 1,
            "start": round(m.start_s * 1000),
            "end": round(m.end_s * 1000),
            "time_base": _MS,
            "metadata": {"title": m.title},
        }
        for i, m in enumerate(marks)
    ]
    try:
        with av.open(str(path), "r") as src, av.open(str(tmp), "w", format="ipod") as dst:
            audio = src.streams.audio[0]
            out: Any = dst.add_stream_from_template(audio)
            metadata = {
                k: v
                for k, v in src.metadata.items()
                if k.lower() not in ("major_brand", "minor_version", "compatible_brands")
            }
            if title:
                metadata["title"] = title
            dst.metadata.update(metadata)
            dst.set_chapters(chapters)
            for packet in src.demux(audio):
                if packet.dts is None:  # the demuxer's empty flush packet
                    continue
                packet.stream = out
                dst.mux(packet)
        os.replace(tmp, path)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise PostError(f"{path.name}: could not write MP4 chapters ({exc})") from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def read_chapters(path: Path) -> list[ChapterMark]:
    """The chapters FFmpeg reads from the file (ID3 CHAP, MP4 chapter track / chpl), in order."""
    try:
        with av.open(str(path), "r") as container:
            raw = container.chapters()
    except (av.error.FFmpegError, OSError) as exc:
        raise PostError(f"{path.name}: not a readable audio file ({exc})") from exc
    marks = []
    for i, ch in enumerate(sorted(raw, key=lambda c: c["start"] * (c["time_base"] or _MS))):
        base = ch["time_base"] or _MS
        title = str(ch.get("metadata", {}).get("title") or f"Chapter {i + 1}")
        marks.append(ChapterMark(title, float(ch["start"] * base), float(ch["end"] * base)))
    return marks
