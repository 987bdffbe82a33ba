"""Production scripts: parse, apply a lexicon, cut into speech parts, time subtitles, chapters.

Pure logic (stdlib only, no I/O), so every check runs before anything is sent upstream.

The script format::

    # Chapter title            a line starting with "# " starts a chapter
    Alice: Hello there.        a paragraph (blank-line separated) starting "Name:" is Alice's
    Any other paragraph        is the narrator's ("narrator")
    [pause 2s]                 silence (also 1.5s, 500ms; at most MAX_PAUSE_S), inline or alone
    [laughs]                   another cue, only if the speech tool knows it (`allowed_cues`)
    \\Note: literal            a backslash before "Name:" or "[" keeps it as plain text

Every error is a `ScriptError` naming the script line (or the lexicon entry) and what is allowed.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mcp_audio.core.errors import InvalidArguments

MAX_SCRIPT_CHARS = 200_000
"""Longest script accepted (characters): about four hours of speech at 14 characters a second."""
MAX_PAUSE_S = 30.0
"""Longest `[pause]`; a longer silence is almost surely a typo (`[pause 500s]` for 500 ms)."""
MAX_TITLE_CHARS = 200
MAX_SPEAKER_CHARS = 40
MAX_CUE_CHARS = 40
MAX_LEXICON_ENTRIES = 500
MAX_LEXICON_CHARS = 100
"""Longest lexicon word and longest replacement (characters)."""
NARRATOR = "narrator"

_PAUSE = re.compile(r"pause\s+(\d+(?:\.\d+)?)\s*(ms|s)", re.IGNORECASE)
_SPEAKER = re.compile(r"([^\W\d_](?:[\w.' -]{0,38}[\w.'])?):(?:\s+|$)")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "st", "prof", "sr", "jr", "vs", "etc", "e.g", "i.e", "no", "mt", "inc", "ltd"}
    | {"co", "fig", "vol", "ch", "p", "pp", "approx", "dept"}
)
# candidate sentence ends: terminal punctuation (+ closing quotes/brackets) before a space, or CJK
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’»)\]]*(?=\s)|[。！？]+[」』”）]*")
_CLAUSE_END = re.compile(r"[,;:—–]+[\"'”’»)]*(?=\s)|\s[—–-](?=\s)")


class ScriptError(InvalidArguments, ValueError):
    """Bad script or lexicon: the message names the line (or entry) and what is allowed."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(f"script line {line}: {message}" if line is not None else message)
        self.line = line


# --- the parsed script ----------------------------------------------------------------------


@dataclass(frozen=True)
class Speech:
    """A run of one speaker's text (a paragraph, or the piece of one between pauses).

    `text` is whitespace-normalised (lines joined by one space) and keeps allowed cues and
    escapes resolved; `lines` maps offsets in `text` to script lines: (offset, line) pairs.
    `speaker` is the `voices` key; `name` the speaker as the script wrote it ("Dr. Ada" for the
    key "ada"; None for narrator text), which subtitles show.
    """

    speaker: str
    text: str
    line: int
    paragraph: int
    lines: tuple[tuple[int, int], ...] = ()
    name: str | None = None

    def line_at(self, offset: int) -> int:
        """The script line of the character at `offset` in `text`."""
        found = self.line
        for start, line in self.lines:
            if start > offset:
                break
            found = line
        return found


@dataclass(frozen=True)
class Pause:
    """Silence of `seconds` at script `line`."""

    seconds: float
    line: int


@dataclass(frozen=True)
class Chapter:
    """A chapter: its title (None for text before the first heading) and what it holds, in order."""

    title: str | None
    line: int
    elements: tuple[Speech | Pause, ...]


@dataclass(frozen=True)
class Script:
    """A parsed script: chapters in order, and every speaker that speaks in it."""

    chapters: tuple[Chapter, ...]

    @property
    def speakers(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for chapter in self.chapters:
            for el in chapter.elements:
                if isinstance(el, Speech):
                    seen.setdefault(el.speaker)
        return tuple(seen)

    @property
    def characters(self) -> int:
        """Characters of text to speak (cues included), for cost and time estimates."""
        return sum(len(el.text) for c in self.chapters for el in c.elements if isinstance(el, Speech))


# --- parsing --------------------------------------------------------------------------------


def _allowed_text(allowed: Collection[str]) -> str:
    extra = f", or one of {', '.join(f'[{c}]' for c in sorted(allowed))}" if allowed else ""
    return f"[pause 2s] (seconds or ms, up to {MAX_PAUSE_S:g} s){extra}"


def _parse_pause(body: str, line: int) -> float | None:
    match = _PAUSE.fullmatch(body.strip())
    if match is None:
        return None
    value = float(match.group(1)) / (1000.0 if match.group(2).lower() == "ms" else 1.0)
    if not 0.0 < value <= MAX_PAUSE_S:
        raise ScriptError(
            f"pause of {value:g} s is out of range; a pause is more than 0 and at most {MAX_PAUSE_S:g} s", line=line
        )
    return value


@dataclass
class _Paragraph:
    line: int
    chunks: list[tuple[int, str]] = field(default_factory=list)  # (line, raw text of that line)


def _resolve_speaker(name: str, voices: Collection[str] | None, line: int) -> str:
    if voices is None or name in voices:
        return name
    folded = [v for v in voices if v.casefold() == name.casefold()]
    if len(folded) == 1:
        return folded[0]
    known = ", ".join(sorted(voices)) or "none"
    hint = f" (write '\\{name}:' if the narrator should read it)" if name != NARRATOR else ""
    raise ScriptError(f"speaker {name!r} has no voice; voices given: {known}{hint}", line=line)


def _tokens(text: str, line: int, allowed: Collection[str]) -> list[str | float]:
    """Split one line into text (escapes resolved, allowed cues kept) and pauses (floats)."""
    out: list[str | float] = []
    buf: list[str] = []
    i = 0
    folded = {c.casefold() for c in allowed}
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in "[]\\":
            buf.append(text[i + 1])
            i += 2
            continue
        if ch == "]":
            raise ScriptError("a ']' with no '[' before it; write '\\]' for a literal bracket", line=line)
        if ch == "[":
            end = text.find("]", i + 1)
            inner = text.find("[", i + 1)
            if end < 0 or (0 <= inner < end):
                raise ScriptError("a '[' with no ']' after it; write '\\[' for a literal bracket", line=line)
            body = text[i + 1 : end]
            pause = _parse_pause(body, line)
            if pause is not None:
                out.append("".join(buf))
                buf = []
                out.append(pause)
            elif len(body) <= MAX_CUE_CHARS and body.strip().casefold() in folded:
                buf.append(f"[{body.strip()}]")
            else:
                shown = body if len(body) <= MAX_CUE_CHARS else body[:MAX_CUE_CHARS] + "…"
                raise ScriptError(
                    f"unknown cue [{shown}]; allowed: {_allowed_text(allowed)}; write '\\[' for a literal bracket",
                    line=line,
                )
            i = end + 1
            continue
        buf.append(ch)
        i += 1
    out.append("".join(buf))
    return out


def parse_script(
    script: str,
    *,
    voices: Collection[str] | None = None,
    allowed_cues: Collection[str] = (),
    max_chars: int = MAX_SCRIPT_CHARS,
) -> Script:
    """Parse `script` into chapters of speech and pauses, refusing what cannot be produced.

    `voices`: the speaker names that have a voice (None: any name); a "Name:" paragraph whose
    name is not among them (case-insensitively) is an error, and so is narrator text when
    `narrator` is not among them. `allowed_cues`: bracketed cues (e.g. "laughs") the speech
    tool understands; they stay in the text sent to it and leave the subtitles.
    """
    if not isinstance(script, str):
        raise ScriptError("script must be text")
    if len(script) > max_chars:
        raise ScriptError(f"script is {len(script):,} characters; the limit is {max_chars:,}")
    if not script.strip():
        raise ScriptError("script is empty; write the text to speak (see the script format)")
    chapters: list[Chapter] = []
    title: str | None = None
    title_line = 1
    elements: list[Speech | Pause] = []
    para: _Paragraph | None = None
    paragraph_no = 0

    def close_paragraph() -> None:
        nonlocal para, paragraph_no
        if para is None:
            return
        p, para = para, None
        first_line, first = p.chunks[0]
        speaker, name = NARRATOR, None
        match = _SPEAKER.match(first)
        if first.startswith("\\") and _SPEAKER.match(first[1:]):
            p.chunks[0] = (first_line, first[1:])
        elif match is not None and len(match.group(1).split()) <= 3:
            name = " ".join(match.group(1).split())
            speaker = _resolve_speaker(name, voices, first_line)
            p.chunks[0] = (first_line, first[match.end() :])
        else:
            speaker = _resolve_speaker(NARRATOR, voices, first_line) if voices is not None else NARRATOR
        paragraph_no += 1
        text: list[str] = []
        lines: list[tuple[int, int]] = []
        start_line = first_line
        spoke = False

        def flush() -> None:
            nonlocal text, lines, spoke
            joined = " ".join(text).strip()
            if joined:
                elements.append(Speech(speaker, joined, start_line, paragraph_no, tuple(lines), name))
                spoke = True
            text, lines = [], []

        for line_no, raw in p.chunks:
            for token in _tokens(raw, line_no, allowed_cues):
                if isinstance(token, float):
                    flush()
                    elements.append(Pause(token, line_no))
                    continue
                words = token.split()
                if not words:
                    continue
                if not text:
                    start_line = line_no
                offset = len(" ".join(text)) + (1 if text else 0)
                lines.append((offset, line_no))
                text.append(" ".join(words))
        flush()
        if not spoke and speaker != NARRATOR:
            raise ScriptError(f"speaker {speaker!r} has no text after the name", line=first_line)

    def close_chapter(next_line: int) -> None:
        nonlocal elements
        if elements:
            if not any(isinstance(e, Speech) for e in elements):
                raise ScriptError("chapter has only pauses; add text to speak", line=title_line)
            chapters.append(Chapter(title, title_line, tuple(elements)))
        elif title is not None:
            raise ScriptError(f"chapter {title!r} is empty; add its text or remove the heading", line=title_line)
        elements = []

    for number, raw_line in enumerate(script.replace("\r\n", "\n").replace("\r", "\n").split("\n"), 1):
        bad = _CONTROL.search(raw_line)
        if bad:
            raise ScriptError(
                f"control character U+{ord(bad.group()):04X}; only text, tabs and newlines are allowed", line=number
            )
        stripped = raw_line.strip()
        if stripped.startswith("# ") or stripped == "#":
            close_paragraph()
            close_chapter(number)
            heading = " ".join(stripped[1:].split())
            if not heading:
                raise ScriptError("a chapter heading needs a title after '# '", line=number)
            if len(heading) > MAX_TITLE_CHARS:
                raise ScriptError(
                    f"chapter title is {len(heading)} characters; the limit is {MAX_TITLE_CHARS}", line=number
                )
            title, title_line = heading, number
        elif not stripped:
            close_paragraph()
        else:
            if para is None:
                para = _Paragraph(number)
            para.chunks.append((number, stripped))
    close_paragraph()
    close_chapter(0)
    if not chapters:
        raise ScriptError("script has no text to speak, only headings or pauses")
    return Script(tuple(chapters))


# --- lexicon --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lexicon:
    """Word -> replacement for the text sent to speech only (subtitles keep the script's words).

    Whole words, case-sensitive as written, the longest word first, in one pass (a replacement
    is never replaced again).
    """

    entries: tuple[tuple[str, str], ...] = ()
    _pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def apply(self, text: str) -> str:
        if self._pattern is None:
            return text
        table = dict(self.entries)
        return self._pattern.sub(lambda m: table[m.group(0)], text)


def make_lexicon(lexicon: Mapping[str, str] | None) -> Lexicon:
    """Check and compile a lexicon (at most MAX_LEXICON_ENTRIES entries of MAX_LEXICON_CHARS)."""
    if not lexicon:
        return Lexicon()
    if not isinstance(lexicon, Mapping):
        raise ScriptError("lexicon must be an object: word -> what to say instead")
    if len(lexicon) > MAX_LEXICON_ENTRIES:
        raise ScriptError(f"lexicon has {len(lexicon)} entries; the limit is {MAX_LEXICON_ENTRIES}")
    entries: list[tuple[str, str]] = []
    for word, say in lexicon.items():
        if not isinstance(word, str) or not isinstance(say, str):
            raise ScriptError(f"lexicon entry {word!r}: word and replacement must both be text")
        word_s, say_s = " ".join(word.split()), " ".join(say.split())
        if not word_s or not say_s:
            raise ScriptError(f"lexicon entry {word!r}: word and replacement must not be empty")
        if len(word_s) > MAX_LEXICON_CHARS or len(say_s) > MAX_LEXICON_CHARS:
            raise ScriptError(
                f"lexicon entry {word_s[:MAX_LEXICON_CHARS]!r}: word and replacement are at most "
                f"{MAX_LEXICON_CHARS} characters each"
            )
        if _CONTROL.search(word_s + say_s) or "[" in say_s or "]" in say_s:
            raise ScriptError(f"lexicon entry {word_s!r}: no control characters or brackets allowed")
        entries.append((word_s, say_s))
    entries.sort(key=lambda e: -len(e[0]))
    alternatives = "|".join(re.escape(w) for w, _ in entries)
    pattern = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")
    return Lexicon(tuple(entries), pattern)


# --- sentences and parts --------------------------------------------------------------------


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence in `text`, whitespace between sentences excluded.

    A sentence ends at . ! ? … (with closing quotes) before a space, or at 。！？; not after a
    known abbreviation or a single-letter initial, nor when the next word starts lowercase.
    """
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        end = match.end()
        if match.group().startswith(".") and len(match.group().rstrip("\"'”’»)]")) == 1:
            before = re.search(r"([\w.]+)$", text[start : match.start()])
            word = before.group(1).casefold() if before else ""
            if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
                continue
        following = text[end:].lstrip()
        if following[:1].islower():
            continue
        if text[start:end].strip():
            spans.append(_strip_span(text, start, end))
        start = end
    if text[start:].strip():
        spans.append(_strip_span(text, start, len(text)))
    return spans


def _strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


@dataclass(frozen=True)
class Part:
    """One speech request: a piece of one speaker's paragraph, within the model's length.

    `text` is the script's words (allowed cues kept), `spoken` what is sent (lexicon applied),
    `subtitle` what subtitles show (cues removed). `previous_text`/`next_text` are the spoken
    text of the same speaker's neighbouring parts in the same chapter (None at the edges), for
    models with continuity inputs. `name`: the speaker as the script wrote it (see `Speech`).
    """

    index: int
    chapter: int
    speaker: str
    text: str
    spoken: str
    line: int
    paragraph: int
    previous_text: str | None = None
    next_text: str | None = None
    name: str | None = None

    @property
    def label(self) -> str:
        """The speaker as subtitles show it: the script's spelling, else the `voices` key."""
        return self.name or self.speaker

    @property
    def subtitle(self) -> str:
        return " ".join(re.sub(r"\[[^\[\]]*\]", " ", self.text).split())


@dataclass(frozen=True)
class PlannedPause:
    """A pause in the plan, in its chapter."""

    chapter: int
    seconds: float
    line: int


def _cut_long(text: str, lexicon: Lexicon, limit: int, line: int) -> list[tuple[int, int]]:
    """Cut one over-long sentence at clause ends, else at spaces, so each piece's spoken form
    fits `limit`; raises if a single word does not fit."""
    pieces: list[tuple[int, int]] = []
    start = 0
    clause = [m.end() for m in _CLAUSE_END.finditer(text)]
    spaces = [m.start() for m in re.finditer(r"\s+", text)]
    while start < len(text):
        if len(lexicon.apply(text[start:].strip())) <= limit:
            pieces.append(_strip_span(text, start, len(text)))
            break
        cut = None
        for candidates in (clause, spaces):
            fitting = [c for c in candidates if c > start and len(lexicon.apply(text[start:c].strip())) <= limit]
            if fitting:
                cut = max(fitting)
                break
        if cut is None:
            word = text[start:].split()[0]
            raise ScriptError(
                f"the word {word[:40]!r} is longer than the speech model's limit of {limit} characters a request",
                line=line,
            )
        pieces.append(_strip_span(text, start, cut))
        start = cut
        while start < len(text) and text[start].isspace():
            start += 1
    return [p for p in pieces if p[1] > p[0]]


def _limit_for(speaker: str, max_chars: int | Mapping[str, int]) -> int:
    limit = max_chars if isinstance(max_chars, int) else max_chars.get(speaker, max_chars.get(NARRATOR, 0))
    if limit < 20:
        raise ScriptError(f"the part length for speaker {speaker!r} must be at least 20 characters, got {limit}")
    return limit


def split_speech(speech: Speech, limit: int, lexicon: Lexicon) -> list[tuple[str, str, int]]:
    """Cut one speech run into (text, spoken, line) pieces whose spoken text fits `limit`,
    packing whole sentences; an over-long sentence is cut at clause ends, then at spaces."""
    units: list[tuple[int, int]] = []
    for a, b in sentence_spans(speech.text):
        if len(lexicon.apply(speech.text[a:b])) <= limit:
            units.append((a, b))
        else:
            units.extend((a + x, a + y) for x, y in _cut_long(speech.text[a:b], lexicon, limit, speech.line_at(a)))
    out: list[tuple[str, str, int]] = []
    group: list[tuple[int, int]] = []
    spoken_len = 0
    for a, b in units:
        n = len(lexicon.apply(speech.text[a:b]))
        if group and spoken_len + 1 + n > limit:
            out.append(_piece(speech, group, lexicon))
            group, spoken_len = [], 0
        spoken_len += n + (1 if group else 0)
        group.append((a, b))
    if group:
        out.append(_piece(speech, group, lexicon))
    return out


def _piece(speech: Speech, group: list[tuple[int, int]], lexicon: Lexicon) -> tuple[str, str, int]:
    text = speech.text[group[0][0] : group[-1][1]]
    spoken = " ".join(lexicon.apply(speech.text[a:b]) for a, b in group)
    return text, spoken, speech.line_at(group[0][0])


def plan_parts(
    script: Script, max_chars: int | Mapping[str, int], lexicon: Lexicon | None = None
) -> list[Part | PlannedPause]:
    """The production in order: speech parts (each spoken text at most the speaker's
    `max_chars`: one number, or speaker -> number with `narrator` as the fallback) and pauses."""
    lex = lexicon or Lexicon()
    items: list[Part | PlannedPause] = []
    for ci, chapter in enumerate(script.chapters):
        for el in chapter.elements:
            if isinstance(el, Pause):
                items.append(PlannedPause(ci, el.seconds, el.line))
                continue
            limit = _limit_for(el.speaker, max_chars)
            for text, spoken, line in split_speech(el, limit, lex):
                items.append(Part(0, ci, el.speaker, text, spoken, line, el.paragraph, name=el.name))
    parts = [p for p in items if isinstance(p, Part)]
    linked: dict[int, Part] = {}
    for i, part in enumerate(parts):
        prev = next((q for q in reversed(parts[:i]) if q.speaker == part.speaker and q.chapter == part.chapter), None)
        nxt = next((q for q in parts[i + 1 :] if q.speaker == part.speaker and q.chapter == part.chapter), None)
        linked[id(part)] = Part(
            i,
            part.chapter,
            part.speaker,
            part.text,
            part.spoken,
            part.line,
            part.paragraph,
            prev.spoken if prev else None,
            nxt.spoken if nxt else None,
            part.name,
        )
    return [linked[id(x)] if isinstance(x, Part) else x for x in items]


def speaker_seed(speaker: str) -> int:
    """A fixed seed per speaker name (stable across runs and machines), for models that take one."""
    return zlib.crc32(speaker.encode("utf-8")) % 2_147_483_647


# --- subtitles and chapters -----------------------------------------------------------------


@dataclass(frozen=True)
class TimedSentence:
    """One sentence of a finished part, placed in the timeline (seconds)."""

    start: float
    end: float
    text: str
    speaker: str

    def as_segment(self) -> dict[str, Any]:
        """The transcript-segment shape mcp_audio.post.subtitles.cues_from_transcript reads."""
        return {"start": self.start, "end": self.end, "text": self.text, "speaker": self.speaker}


def timed_sentences(part: Part, start_s: float, duration_s: float) -> list[TimedSentence]:
    """The sentences of `part` (subtitle text) timed inside [start_s, start_s + duration_s),
    each given time in proportion to its characters (the spaces between shared out too)."""
    if duration_s < 0 or start_s < 0:
        raise ValueError(f"part {part.index}: start and duration must not be negative")
    text = part.subtitle
    spans = sentence_spans(text)
    if not spans:
        return []
    total = len(text)
    out = []
    for i, (a, b) in enumerate(spans):
        lo = 0 if i == 0 else a
        hi = total if i == len(spans) - 1 else spans[i + 1][0]
        out.append(
            TimedSentence(
                round(start_s + duration_s * lo / total, 3),
                round(start_s + duration_s * hi / total, 3),
                text[a:b],
                part.label,
            )
        )
    return out


def subtitle_segments(finished: Iterable[tuple[Part, float, float]]) -> list[TimedSentence]:
    """Timed sentences of every finished part, given (part, start_s, duration_s) in any order."""
    out = [s for part, start, duration in finished for s in timed_sentences(part, start, duration)]
    return sorted(out, key=lambda s: s.start)


@dataclass(frozen=True)
class ChapterMark:
    """A chapter in the finished file: title, start and end in seconds."""

    title: str
    start_s: float
    end_s: float


def check_chapter_marks(marks: Sequence[ChapterMark]) -> None:
    """Chapters must have titles, start at or after 0, not overlap, and end after they start."""
    last_end = 0.0
    for i, m in enumerate(marks):
        if not m.title.strip():
            raise ValueError(f"chapter {i + 1} has no title")
        if m.start_s < last_end - 1e-6 or m.end_s <= m.start_s:
            raise ValueError(f"chapter {i + 1} ({m.title!r}): {m.start_s}-{m.end_s} s overlaps or is empty")
        last_end = m.end_s


def podcast_chapters(marks: Sequence[ChapterMark]) -> dict[str, Any]:
    """The Podcasting 2.0 JSON chapters document (version 1.2.0) for `marks`."""
    check_chapter_marks(marks)
    return {
        "version": "1.2.0",
        "chapters": [{"startTime": round(m.start_s, 3), "endTime": round(m.end_s, 3), "title": m.title} for m in marks],
    }
