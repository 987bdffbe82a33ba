"""A production's finishing: its speech parts (files) and pauses become the finished piece.

Per chapter the parts follow in order with a short gap (pauses as silence). podcast/broadcast/
none: each chapter joined, chapters joined, the music bed mixed under (ducked, looped or cut,
faded), mastered to the delivery's loudness, one file per chapter cut from it by packet copy.
audiobook: each chapter conformed straight from its parts' files (room tone, RMS, peak,
192 kb/s CBR MP3) as soon as they are in, and the book made of the chapter files' packets.
Chapters are embedded and written as Podcasting 2.0 JSON, subtitles are timed from the parts'
own text (`core.script.subtitle_segments`: no transcription), and the delivery report is
measured on the encoded file. Runs in a worker thread; memory stays flat with length (the
engine streams).
"""

from __future__ import annotations

import json
import wave
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp_audio.core.script import ChapterMark, Part, podcast_chapters, subtitle_segments
from mcp_audio.post import ops
from mcp_audio.post.chapters import embed_chapters
from mcp_audio.post.delivery import DeliveryReport, Source, conform, measure
from mcp_audio.post.engine import probe
from mcp_audio.post.subtitles import cues_from_transcript, to_srt, to_vtt

__all__ = ["PART_GAP_S", "Assembled", "ChapterAudio", "Piece", "assemble", "audiobook_chapter"]

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
    report: DeliveryReport | None  # None until `measure` when assembled with `defer_report`
    duration_s: float
    part_times: dict[int, tuple[float, float]] = field(default_factory=dict)  # part -> (start, duration)
    delivery: str = "none"
    measured_marks: list[ChapterMark] = field(default_factory=list)  # the ranges the rules are checked on

    def measure(self) -> DeliveryReport:
        """The delivery report, measured on the finished file (one decoding pass). The file must
        not be written meanwhile (it is read as it is: save it after)."""
        if self.report is None:
            self.report = measure(self.audio, self.delivery, chapters=self.measured_marks or None)
        return self.report


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


@dataclass(frozen=True)
class ChapterAudio:
    """One audiobook chapter, conformed and encoded on its own: its file, length, and where its
    parts are in it (seconds from the chapter's start)."""

    path: Path
    duration_s: float
    times: dict[int, tuple[float, float]]


def audiobook_chapter(pieces: Sequence[Piece], index: int, title: str, work: Path, format: str) -> ChapterAudio:
    """Conform one chapter (room tone, RMS, peak; 192 kb/s CBR MP3) straight from its parts'
    files, as soon as they are in: a production renders finished chapters while later parts are
    still being spoken. No joined copy is written: the parts are decoded into the render."""
    work.mkdir(parents=True, exist_ok=True)
    fmt = "m4a" if format == "m4b" else format
    # a pause stands in for the gaps around it
    sources: list[Source] = [p.path if p.path is not None else max(0.05, p.seconds - 2 * PART_GAP_S) for p in pieces]
    done = conform(
        [sources], work / f"chapter-{index + 1:02d}.{fmt}", "audiobook", titles=[title], format=fmt, gap_s=PART_GAP_S
    )
    times = {p.part.index: done.placed[0][i] for i, p in enumerate(pieces) if p.part is not None}
    return ChapterAudio(done.rendered.path, done.rendered.duration_s, times)


def _remux(sources: Sequence[tuple[Path, float, float | None]], output: Path, fmt: str) -> list[tuple[float, float]]:
    """Copy the encoded packets of (file, from_s, to_s) ranges into one file, one after another,
    without decoding: chapters joined into a book, or a chapter cut from one (MP3 frames, AAC).

    Each range's encoder delay (priming) is decoded as sound in the middle of the joined file,
    though its own file skips it: per range, (where its first packet is, how far its own decoded
    timeline moved) in the joined file's decoded seconds, so marks and times stay exact."""
    import av

    container = {"mp3": "mp3", "m4a": "ipod"}[fmt]
    offset = 0
    placed: list[tuple[int, int]] = []  # per range: (first packet's pts, shift of its pts) in the output
    tb: Any = None
    with av.open(str(output), "w", format=container) as dst:
        out: Any = None
        for path, lo, hi in sources:
            with av.open(str(path)) as src:
                stream = src.streams.audio[0]
                if out is None:
                    out = dst.add_stream_from_template(stream)
                tb = stream.time_base
                assert tb is not None
                first: int | None = None
                last = offset
                for packet in src.demux(stream):
                    if packet.dts is None or packet.pts is None:
                        continue
                    t = float(packet.pts * tb)
                    if t < lo - 1e-6 or (hi is not None and t >= hi - 1e-6):
                        continue
                    first = packet.pts if first is None else first
                    pts = packet.pts - first + offset
                    last = max(last, pts + (packet.duration or 0))
                    packet.dts, packet.pts = pts + (packet.dts - packet.pts), pts
                    packet.stream = out
                    dst.mux(packet)
                start = stream.start_time or 0  # where its own decoded timeline begins
                placed.append((offset, offset - (first or 0) + start))
                offset = last
    with av.open(str(output)) as joined:
        begin = joined.streams.audio[0].start_time or 0
    return [(max(0.0, float((at - begin) * tb)), float((shift - begin) * tb)) for at, shift in placed]


def _join_encoded(paths: list[Path], output: Path, fmt: str) -> list[tuple[float, float]]:
    """Files joined end to end; per file, where it starts in the output and how far its own
    decoded timeline moved (see `_remux`), in seconds."""
    if fmt in ("mp3", "m4a"):
        return _remux([(p, 0.0, None) for p in paths], output, fmt)
    ops.join(paths, output, gap_s=0.0, format=fmt)  # wav, flac: fast to write again, sample-exact
    out, at = [], 0.0
    for p in paths:
        out.append((at, at))
        at += probe(p, max_duration_s=None).duration_s or 0.0
    return out


def _cut(source: Path, output: Path, start_s: float, end_s: float, fmt: str) -> Path:
    if fmt in ("mp3", "m4a"):
        _remux([(source, start_s, end_s)], output, fmt)
        return output
    return ops.trim(source, output, start_s=start_s, end_s=end_s, fade_s=0.0, format=fmt).path


def assemble(
    pieces: Sequence[Piece],
    titles: Sequence[str | None],
    work: Path,
    *,
    delivery: str,
    format: str,
    music: Path | None = None,
    title: str | None = None,
    rendered: Mapping[int, ChapterAudio] | None = None,
    defer_report: bool = False,
) -> Assembled:
    """Finish a production in `work` (see the module docstring). `titles`: one per chapter (None:
    untitled; a piece with a single untitled chapter gets no chapter marks). `rendered`: audiobook
    chapters already made by `audiobook_chapter`. `defer_report`: an audiobook's book file is
    measured by `Assembled.measure` later (e.g. while its chapter files are saved)."""
    work.mkdir(parents=True, exist_ok=True)
    fmt = "m4a" if format == "m4b" else format
    named = [t or ("Opening" if i == 0 else f"Chapter {i + 1}") for i, t in enumerate(titles)]
    has_chapters = len(titles) > 1 or titles[0] is not None
    output = work / f"production.{fmt}"
    offsets: list[float] = []
    local_times: list[dict[int, tuple[float, float]]] = []
    chapter_files: list[Path] = []
    measured: list[ChapterMark] = []
    report: DeliveryReport | None
    if delivery == "audiobook":
        done = dict(rendered or {})
        for ci in range(len(titles)):
            if ci not in done:
                done[ci] = audiobook_chapter([p for p in pieces if p.chapter == ci], ci, named[ci], work, format)
        chapters = [done[ci] for ci in range(len(titles))]
        joined = _join_encoded([c.path for c in chapters], output, fmt)
        starts = [start for start, _ in joined] + [joined[-1][1] + chapters[-1].duration_s]
        total = probe(output, max_duration_s=None).duration_s or starts[-1]
        starts[-1] = min(total, starts[-1])
        marks = [ChapterMark(named[ci], round(starts[ci], 3), round(starts[ci + 1], 3)) for ci in range(len(chapters))]
        offsets = [shift for _, shift in joined]
        local_times = [c.times for c in chapters]
        report = None  # measured below, once the chapters are embedded (or by the caller)
        chapter_files = [c.path for c in chapters] if has_chapters else []
        duration = starts[-1]
        measured = marks
    else:
        speech_files = []
        for ci in range(len(titles)):
            path, times = _chapter([p for p in pieces if p.chapter == ci], work / f"chapter-{ci + 1}.wav", work)
            speech_files.append(path)
            local_times.append(times)
        durations = [probe(p, max_duration_s=None).duration_s or 0.0 for p in speech_files]
        speech = ops.join(speech_files, work / "speech.wav", gap_s=CHAPTER_GAP_S, format="wav").path
        lead = 0.0
        if music is not None:
            speech = ops.mix(
                speech, music, work / "mixed.wav", fade_in_s=MUSIC_LEAD_S, fade_out_s=MUSIC_LEAD_S, format="wav"
            ).path
            lead = MUSIC_LEAD_S
        conformed = conform(speech, output, delivery, format=fmt)
        report, duration = conformed.report, conformed.rendered.duration_s
        at = lead
        for d in durations:
            offsets.append(at)
            at += d + CHAPTER_GAP_S
        marks = [
            ChapterMark(named[i], 0.0 if i == 0 else offsets[i], offsets[i + 1] if i + 1 < len(offsets) else duration)
            for i in range(len(offsets))
        ]
        if has_chapters:
            chapter_files = [
                _cut(output, work / f"chapter-{i + 1:02d}.{fmt}", m.start_s, m.end_s, fmt) for i, m in enumerate(marks)
            ]
    audio = output
    if format == "m4b":
        audio = output.rename(output.with_suffix(".m4b"))
    chapters_json = None
    if has_chapters:
        embed_chapters(audio, marks, title=title)
        chapters_json = work / "chapters.json"
        chapters_json.write_text(json.dumps(podcast_chapters(marks), indent=1), encoding="utf-8")
    part_times = {
        index: (round(offsets[ci] + start, 3), round(d, 3))
        for ci, times in enumerate(local_times)
        for index, (start, d) in times.items()
    }
    parts = {p.part.index: p.part for p in pieces if p.part is not None}
    segments = subtitle_segments((parts[i], s, d) for i, (s, d) in part_times.items())
    cues = cues_from_transcript({"segments": [s.as_segment() for s in segments]}) if segments else []
    subtitles = {"srt": work / "subtitles.srt", "vtt": work / "subtitles.vtt"}
    subtitles["srt"].write_text(to_srt(cues), encoding="utf-8")
    subtitles["vtt"].write_text(to_vtt(cues), encoding="utf-8")
    finished = Assembled(
        audio=audio,
        chapter_files=chapter_files,
        marks=marks if has_chapters else [],
        subtitles=subtitles,
        chapters_json=chapters_json,
        report=report,
        duration_s=round(duration, 3),
        part_times=part_times,
        delivery=delivery,
        measured_marks=measured,
    )
    if not defer_report:
        finished.measure()
    return finished
