"""Subtitles from transcripts: cues, SRT and WebVTT (plain Python, no audio libraries).

`cues_from_transcript` accepts the shapes our upstreams return:

    fal whisper / wizper   {"chunks": [{"timestamp": [start, end], "text": ..., "speaker"?: ...}]}
                           (segment-level, or word-level when each chunk is one word)
    ElevenLabs Scribe      {"words": [{"text", "start", "end", "type": "word"|"spacing"|"audio_event",
                                       "speaker_id"?}]}
    Voice API              {"segments": [{"start", "end", "text", "speaker"?}]}
    Eigen / Whisper        {"segments": [{"start", "end", "text"}]}

Segments give one cue each (split in time, proportionally to the text, when the text needs more
than two lines). Words are grouped into cues of consecutive words, from the first word's start
to the last word's end; a cue never spans two speakers, a pause over `max_gap_s` or more than
`max_cue_s`. Every line is at most `max_chars` long, counting the speaker label
(`[SPEAKER_00] `) that `to_srt` puts before the first line; `to_vtt` uses a `<v SPEAKER_00>` tag.

`cues_from_text` times speech we made ourselves from the text we sent, across the audio's length.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MAX_LINES = 2


@dataclass(frozen=True)
class Cue:
    """One subtitle: seconds from the start, text (lines joined by newlines), speaker if known."""

    start: float
    end: float
    text: str
    speaker: str | None = None


@dataclass(frozen=True)
class _Timed:
    start: float
    end: float
    text: str
    speaker: str | None


def _label(speaker: str | None) -> str:
    return f"[{speaker}] " if speaker else ""


def _time(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a non-negative number of seconds, got {value!r}")
    return float(value)


def _speaker(item: Mapping[str, Any]) -> str | None:
    for key in ("speaker", "speaker_id"):
        value = item.get(key)
        if value is not None and str(value).strip():
            return str(value).strip()
    return None


def _wrap(words: list[str], max_chars: int, first_budget: int) -> list[str]:
    """Greedy line wrap; the first line has `first_budget` chars, others `max_chars`.
    A word longer than a line is cut into pieces."""
    lines: list[str] = []
    line = ""
    for word in words:
        budget = first_budget if not lines else max_chars
        while len(word) > budget and not line:
            lines.append(word[:budget])
            word = word[budget:]
            budget = max_chars
        candidate = f"{line} {word}" if line else word
        if len(candidate) <= budget:
            line = candidate
        else:
            lines.append(line)
            budget = max_chars
            while len(word) > budget:
                lines.append(word[:budget])
                word = word[budget:]
            line = word
    if line:
        lines.append(line)
    return lines


def _fits(words: list[str], max_chars: int, first_budget: int) -> bool:
    return len(_wrap(words, max_chars, first_budget)) <= MAX_LINES


def _segment_cues(seg: _Timed, max_chars: int) -> list[Cue]:
    """One cue per segment, or several (time shared by characters) if it needs over 2 lines."""
    words = seg.text.split()
    if not words:
        return []
    budget = max(1, max_chars - len(_label(seg.speaker)))
    groups: list[list[str]] = [[]]
    for word in words:
        if groups[-1] and not _fits([*groups[-1], word], max_chars, budget):
            groups.append([])
        groups[-1].append(word)
    total = sum(len(" ".join(g)) for g in groups)
    cues: list[Cue] = []
    t = seg.start
    for i, group in enumerate(groups):
        text = " ".join(group)
        end = seg.end if i == len(groups) - 1 else t + (seg.end - seg.start) * len(text) / total
        cues.append(Cue(round(t, 3), round(end, 3), "\n".join(_wrap(group, max_chars, budget)), seg.speaker))
        t = end
    return cues


def _word_cues(words: list[_Timed], max_chars: int, max_gap_s: float, max_cue_s: float) -> list[Cue]:
    cues: list[Cue] = []
    group: list[_Timed] = []

    def close() -> None:
        if group:
            speaker = group[0].speaker
            budget = max(1, max_chars - len(_label(speaker)))
            lines = _wrap([w.text for w in group], max_chars, budget)
            cues.append(Cue(group[0].start, group[-1].end, "\n".join(lines), speaker))
            group.clear()

    for word in words:
        if group:
            last = group[-1]
            budget = max(1, max_chars - len(_label(last.speaker)))
            if (
                word.speaker != last.speaker
                or word.start - last.end > max_gap_s
                or word.end - group[0].start > max_cue_s
                or not _fits([*(w.text for w in group), word.text], max_chars, budget)
                or (last.text[-1:] in ".?!" and len(" ".join(w.text for w in group)) >= max_chars // 2)
            ):
                close()
        group.append(word)
    close()
    return cues


def _from_chunks(chunks: Sequence[Any]) -> tuple[list[_Timed], bool]:
    items: list[_Timed] = []
    for i, chunk in enumerate(chunks):
        if not isinstance(chunk, Mapping):
            raise ValueError(f"chunks[{i}] must be an object with 'timestamp' and 'text'")
        stamp = chunk.get("timestamp")
        if not isinstance(stamp, Sequence) or isinstance(stamp, str) or len(stamp) != 2 or stamp[0] is None:
            raise ValueError(f"chunks[{i}] has no timestamp [start, end]")
        start = _time(stamp[0], f"chunks[{i}].timestamp[0]")
        if stamp[1] is None:  # whisper leaves the last end open: up to the next start, or a guess
            nxt = chunks[i + 1].get("timestamp") if i + 1 < len(chunks) and isinstance(chunks[i + 1], Mapping) else None
            text = str(chunk.get("text", ""))
            end = float(nxt[0]) if nxt and nxt[0] is not None else start + max(0.5, 0.07 * len(text))
        else:
            end = _time(stamp[1], f"chunks[{i}].timestamp[1]")
        items.append(_Timed(start, end, str(chunk.get("text", "")).strip(), _speaker(chunk)))
    texts = [t.text for t in items if t.text]
    word_level = bool(texts) and sum(len(t.split()) <= 1 for t in texts) >= 0.9 * len(texts)
    return items, word_level


def _from_words(words: Sequence[Any]) -> list[_Timed]:
    items: list[_Timed] = []
    for i, word in enumerate(words):
        if not isinstance(word, Mapping):
            raise ValueError(f"words[{i}] must be an object with 'text', 'start' and 'end'")
        if word.get("type", "word") == "spacing":
            continue
        if word.get("start") is None or word.get("end") is None:
            raise ValueError(f"words[{i}] has no 'start'/'end' time")
        text = str(word.get("text", "")).strip()
        if text:
            start, end = _time(word["start"], f"words[{i}].start"), _time(word["end"], f"words[{i}].end")
            items.append(_Timed(start, end, text, _speaker(word)))
    return items


def _from_segments(segments: Sequence[Any]) -> list[_Timed]:
    items: list[_Timed] = []
    for i, seg in enumerate(segments):
        if not isinstance(seg, Mapping):
            raise ValueError(f"segments[{i}] must be an object with 'start', 'end' and 'text'")
        if seg.get("start") is None or seg.get("end") is None:
            raise ValueError(f"segments[{i}] has no 'start'/'end' time")
        start, end = _time(seg["start"], f"segments[{i}].start"), _time(seg["end"], f"segments[{i}].end")
        items.append(_Timed(start, end, str(seg.get("text", "")).strip(), _speaker(seg)))
    return items


def cues_from_transcript(
    output: Mapping[str, Any], max_chars: int = 42, *, max_gap_s: float = 1.0, max_cue_s: float = 7.0
) -> list[Cue]:
    """Subtitle cues from an upstream transcript (see the module docstring for the shapes).

    Raises ValueError naming what is missing when the transcript has no timings, and for
    timings that are not non-negative numbers or that end before they start.
    """
    if max_chars < 8:
        raise ValueError(f"max_chars must be at least 8, got {max_chars}")
    if not isinstance(output, Mapping):
        raise ValueError("transcript must be an object (dict)")
    word_level: bool
    if isinstance(output.get("words"), Sequence) and output["words"]:
        items, word_level = _from_words(output["words"]), True
    elif isinstance(output.get("chunks"), Sequence) and output["chunks"]:
        items, word_level = _from_chunks(output["chunks"])
    elif isinstance(output.get("segments"), Sequence) and output["segments"]:
        items, word_level = _from_segments(output["segments"]), False
    else:
        raise ValueError(
            "transcript has no timings: expected a non-empty 'chunks' list (with 'timestamp'), "
            "'words' list (with 'start'/'end') or 'segments' list (with 'start'/'end'); "
            f"got keys {sorted(output)}"
        )
    for item in items:
        if item.end < item.start:
            raise ValueError(f"a cue ends ({item.end}) before it starts ({item.start}): {item.text!r}")
    items = [i for i in items if i.text]
    if word_level:
        return _word_cues(items, max_chars, max_gap_s, max_cue_s)
    return [cue for seg in items for cue in _segment_cues(seg, max_chars)]


_MARKUP = re.compile(r"<\|[^|>]*\|>")  # speaker and control tags in a TTS text (`<|speaker:0|>`): not spoken
_SENTENCE_END = re.compile(r"(?<=[.!?\u2026\u3002\uff01\uff1f])\s+")


def cues_from_text(text: str, duration_s: float, max_chars: int = 42) -> list[Cue]:
    """Cues for speech made from `text`: its sentences share `duration_s` in proportion to their
    length (speech runs at a roughly even rate), each then wrapped and split like a segment."""
    clean = " ".join(_MARKUP.sub(" ", text).split())
    if not clean:
        return []
    duration = _time(duration_s, "the audio's duration")
    sentences = [sentence for sentence in _SENTENCE_END.split(clean) if sentence]
    total = sum(len(sentence) for sentence in sentences)
    segments, start = [], 0.0
    for sentence in sentences:
        end = start + duration * len(sentence) / total
        segments.append({"start": start, "end": end, "text": sentence})
        start = end
    segments[-1]["end"] = duration  # no rounding drift at the end
    return cues_from_transcript({"segments": segments}, max_chars)


def _stamp(seconds: float, sep: str) -> str:
    ms = round(seconds * 1000)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_srt(cues: Sequence[Cue]) -> str:
    """SubRip text: numbered cues, `HH:MM:SS,mmm` times, the speaker as a `[label] ` prefix."""
    blocks = []
    for i, cue in enumerate(cues, 1):
        times = f"{_stamp(cue.start, ',')} --> {_stamp(cue.end, ',')}"
        blocks.append(f"{i}\n{times}\n{_label(cue.speaker)}{cue.text}\n")
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(cues: Sequence[Cue]) -> str:
    """WebVTT text: `HH:MM:SS.mmm` times, the speaker as a `<v label>` voice span."""
    blocks = ["WEBVTT\n"]
    for cue in cues:
        times = f"{_stamp(cue.start, '.')} --> {_stamp(cue.end, '.')}"
        voice = f"<v {_vtt_escape(cue.speaker)}>" if cue.speaker else ""
        blocks.append(f"{times}\n{voice}{_vtt_escape(cue.text)}\n")
    return "\n".join(blocks)
