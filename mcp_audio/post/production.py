"""A production's finishing: its speech parts (files) and pauses become the finished piece.

Per chapter the parts are joined in order with a short gap (pauses as silence); then
podcast/broadcast/none: chapters joined, the music bed mixed under (ducked, looped or cut,
faded), mastered to the delivery's loudness; audiobook: each chapter conformed (room tone,
RMS, peak, 192 kb/s CBR MP3). Chapters are embedded and written as Podcasting 2.0 JSON, one
file per chapter is cut from the finished file, subtitles are timed from the parts' own text
(`core.script.subtitle_segments`: no transcription), and the delivery report is measured on
the encoded file. Runs in a worker thread; memory stays flat with length (the engine streams).
"""

from __future__ import annotations

import json
import wave
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mcp_audio.core.script import ChapterMark, Part, podcast_chapters, subtitle_segments
from mcp_audio.post import ops
from mcp_audio.post.chapters import embed_chapters
from mcp_audio.post.delivery import AUDIOBOOK_HEAD_S, DeliveryReport, conform
from mcp_audio.post.engine import probe
from mcp_audio.post.errors import PostError
from mcp_audio.post.subtitles import cues_from_transcript, to_srt, to_vtt

__all__ = ["PART_GAP_S", "Assembled", "Piece", "assemble"]

PART_GAP_S = 0.35
"""Silence between two parts of a chapter (a breath between paragraphs)."""
CHAPTER_GAP_S = 1.5
"""Silence between chapters in a single-file podcast or broadcast."""
MUSIC_LEAD_S = 2.0
"""Music alone before the first word, and after the last (faded)."""


@dataclass(frozen=True)
class Piece:
    """One element of a chapter, in order: a part's audio file, or a pause of `seconds`."""

    chapter: int
    part: Part | None = None
    path: Path | None = None
    seconds: float = 0.0


@dataclass
class Assembled:
    """What `assemble` wrote in its work folder, and what it measured."""

    audio: Path
    chapter_files: list[Path]
    marks: list[ChapterMark]
    subtitles: dict[str, Path]
    chapters_json: Path | None
    report: DeliveryReport
    duration_s: float
    part_times: dict[int, tuple[float, float]] = field(default_factory=dict)  # part -> (start, duration)


def _silence(path: Path, seconds: float, rate: int = 44100) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(max(1, round(seconds * rate)) * 2))
    return path


def _chapter(pieces: Sequence[Piece], out: Path, work: Path) -> tuple[Path, dict[int, tuple[float, float]]]:
    """Join one chapter's pieces; each part's (start, duration) in the chapter file."""
    inputs: list[Path] = []
    times: dict[int, tuple[float, float]] = {}
    at = 0.0
    for i, piece in enumerate(pieces):
        if piece.path is None:  # a pause stands in for the gaps around it
            inputs.append(_silence(work / f"{out.stem}-pause{i}.wav", max(0.05, piece.seconds - 2 * PART_GAP_S)))
        else:
            inputs.append(piece.path)
        duration = probe(inputs[-1], max_duration_s=None).duration_s or 0.0
        if piece.part is not None:
            times[piece.part.index] = (at, duration)
        at += duration + PART_GAP_S
    return ops.join(inputs, out, gap_s=PART_GAP_S, format="wav").path, times


def assemble(
    pieces: Sequence[Piece],
    titles: Sequence[str | None],
    work: Path,
    *,
    delivery: str,
    format: str,
    music: Path | None = None,
    title: str | None = None,
) -> Assembled:
    """Finish a production in `work` (see the module docstring). `titles`: one per chapter (None:
    untitled; a piece with a single untitled chapter gets no chapter marks)."""
    work.mkdir(parents=True, exist_ok=True)
    fmt = "m4a" if format == "m4b" else format
    chapter_files: list[Path] = []
    local_times: list[dict[int, tuple[float, float]]] = []
    for ci in range(len(titles)):
        mine = [p for p in pieces if p.chapter == ci]
        if not mine:
            raise PostError(f"chapter {ci + 1} has nothing to join")
        path, times = _chapter(mine, work / f"chapter-{ci + 1}.wav", work)
        chapter_files.append(path)
        local_times.append(times)
    named = [t or ("Opening" if i == 0 else f"Chapter {i + 1}") for i, t in enumerate(titles)]
    output = work / f"production.{fmt}"
    offsets: list[float] = []
    if delivery == "audiobook":
        done = conform(chapter_files, output, "audiobook", titles=named, format=fmt)
        marks = list(done.chapters)
        offsets = [m.start_s + AUDIOBOOK_HEAD_S for m in marks]  # conform puts room tone before the words
    else:
        durations = [probe(p, max_duration_s=None).duration_s or 0.0 for p in chapter_files]
        speech = ops.join(chapter_files, work / "speech.wav", gap_s=CHAPTER_GAP_S, format="wav").path
        lead = 0.0
        if music is not None:
            speech = ops.mix(
                speech, music, work / "mixed.wav", fade_in_s=MUSIC_LEAD_S, fade_out_s=MUSIC_LEAD_S, format="wav"
            ).path
            lead = MUSIC_LEAD_S
        done = conform(speech, output, delivery, format=fmt)
        at = lead
        for d in durations:
            offsets.append(at)
            at += d + CHAPTER_GAP_S
        total = done.rendered.duration_s
        marks = [
            ChapterMark(named[i], 0.0 if i == 0 else offsets[i], offsets[i + 1] if i + 1 < len(offsets) else total)
            for i in range(len(offsets))
        ]
    audio = done.rendered.path
    has_chapters = len(titles) > 1 or titles[0] is not None
    if format == "m4b":
        audio = audio.rename(audio.with_suffix(".m4b"))
    cut: list[Path] = []
    chapters_json = None
    if has_chapters:
        embed_chapters(audio, marks, title=title)
        chapters_json = work / "chapters.json"
        chapters_json.write_text(json.dumps(podcast_chapters(marks), indent=1), encoding="utf-8")
        for i, mark in enumerate(marks):
            cut.append(
                ops.trim(
                    audio,
                    work / f"chapter-{i + 1:02d}.{fmt}",
                    start_s=mark.start_s,
                    end_s=mark.end_s,
                    fade_s=0.0,
                    format=fmt,
                    bitrate=192_000 if delivery == "audiobook" and fmt == "mp3" else None,
                ).path
            )
    part_times = {
        index: (round(offsets[ci] + start, 3), round(duration, 3))
        for ci, times in enumerate(local_times)
        for index, (start, duration) in times.items()
    }
    parts = {p.part.index: p.part for p in pieces if p.part is not None}
    segments = subtitle_segments((parts[i], s, d) for i, (s, d) in part_times.items())
    cues = cues_from_transcript({"segments": [s.as_segment() for s in segments]}) if segments else []
    subtitles = {"srt": work / "subtitles.srt", "vtt": work / "subtitles.vtt"}
    subtitles["srt"].write_text(to_srt(cues), encoding="utf-8")
    subtitles["vtt"].write_text(to_vtt(cues), encoding="utf-8")
    return Assembled(
        audio=audio,
        chapter_files=cut,
        marks=marks if has_chapters else [],
        subtitles=subtitles,
        chapters_json=chapters_json,
        report=done.report,
        duration_s=round(done.rendered.duration_s, 3),
        part_times=part_times,
    )
