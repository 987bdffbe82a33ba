"""The building blocks of a production (issue 22), checked from outside: scripts parsed and cut,
subtitles read back with the `srt` and `webvtt-py` libraries, chapters read back with mutagen
and PyAV, delivery rules measured again with pyloudnorm (BS.1770) and numpy on the encoded file."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import srt
import webvtt
from mutagen import id3, mp3, mp4

from mcp_audio.core.script import (
    MAX_LEXICON_ENTRIES,
    NARRATOR,
    ChapterMark,
    Part,
    Pause,
    PlannedPause,
    ScriptError,
    Speech,
    make_lexicon,
    parse_script,
    plan_parts,
    podcast_chapters,
    sentence_spans,
    subtitle_segments,
)
from mcp_audio.post import delivery as dl
from mcp_audio.post import ops
from mcp_audio.post.chapters import embed_chapters, read_chapters
from mcp_audio.post.errors import PostError
from mcp_audio.post.subtitles import cues_from_transcript, to_srt, to_vtt
from tests.unit.test_post_engine import decode, lufs, speechlike, true_peak_db, write_wav

# mutagen is untyped: its readers as Any, once
ID3: Any = id3.ID3
MP3: Any = mp3.MP3
MP4: Any = mp4.MP4
BitrateMode: Any = mp3.BitrateMode

SR = 44100
VOICES = {NARRATOR, "Alice", "Bob"}

SCRIPT = """Before any chapter, the narrator sets the scene.

# The Beginning
Alice: Hello Bob. Do you use SQL at work?
I do, every day [pause 1.5s] and I like it.

Bob: Yes [laughs] all the time.

[pause 500ms]

\\Note: the narrator reads this line, e.g. as an aside.

# The End
Bob: Goodbye.
"""


# --- parsing --------------------------------------------------------------------------------


def test_parse_chapters_speakers_pauses_and_lines() -> None:
    script = parse_script(SCRIPT, voices=VOICES, allowed_cues={"laughs"})
    assert [c.title for c in script.chapters] == [None, "The Beginning", "The End"]
    assert [c.line for c in script.chapters] == [1, 3, 13]
    els = script.chapters[1].elements
    kinds = [(type(e).__name__, getattr(e, "speaker", None), e.line) for e in els]
    assert kinds == [
        ("Speech", "Alice", 4),
        ("Pause", None, 5),
        ("Speech", "Alice", 5),
        ("Speech", "Bob", 7),
        ("Pause", None, 9),
        ("Speech", NARRATOR, 11),
    ]
    first = els[0]
    assert isinstance(first, Speech)
    assert first.text == "Hello Bob. Do you use SQL at work? I do, every day"
    assert first.line_at(first.text.index("I do")) == 5  # the paragraph's second line
    assert isinstance(els[1], Pause) and els[1].seconds == 1.5
    assert isinstance(els[4], Pause) and els[4].seconds == 0.5
    assert isinstance(els[3], Speech) and els[3].text == "Yes [laughs] all the time."
    assert isinstance(els[5], Speech) and els[5].text.startswith("Note: the narrator")  # the escape made it text
    assert script.speakers == (NARRATOR, "Alice", "Bob")


def test_a_speaker_keeps_the_script_s_spelling_and_speaks_with_its_voices_key() -> None:
    script = parse_script("ADA: Hi.\n\nDr.  Ada: Bye.\n\nThe end.", voices=["ada", "dr. ada", NARRATOR])
    speech = [e for e in script.chapters[0].elements if isinstance(e, Speech)]
    assert [(s.speaker, s.name) for s in speech] == [("ada", "ADA"), ("dr. ada", "Dr. Ada"), (NARRATOR, None)]
    parts = [p for p in plan_parts(script, 100) if isinstance(p, Part)]
    assert [(p.speaker, p.label) for p in parts] == [("ada", "ADA"), ("dr. ada", "Dr. Ada"), (NARRATOR, NARRATOR)]
    assert [s.speaker for p in parts for s in subtitle_segments([(p, 0.0, 1.0)])] == ["ADA", "Dr. Ada", NARRATOR]


@pytest.mark.parametrize(
    ("script", "line", "words"),
    [
        ("Intro.\n\nCarol: Hi there.", 3, ["'Carol'", "voices given: Alice, Bob, narrator"]),
        ("Alice: fine\nand then [laugh] again", 2, ["unknown cue [laugh]", "[pause 2s]"]),
        ("x\n\n\n[pause 45s]", 4, ["45 s", "at most 30 s"]),
        ("x [pause 0ms]", 1, ["more than 0"]),
        ("# One\n\n# Two\nText.", 1, ["'One' is empty"]),
        ("#\ntext", 1, ["needs a title"]),
        ("Bob:", 1, ["no text"]),
        ("text ] here", 1, ["']'"]),
        ("text [ here", 1, ["'['"]),
        ("ok\nbad\x07bell", 2, ["U+0007"]),
    ],
)
def test_bad_scripts_name_the_line_and_what_is_allowed(script: str, line: int, words: list[str]) -> None:
    with pytest.raises(ScriptError) as caught:
        parse_script(script, voices=VOICES)
    assert caught.value.line == line
    message = str(caught.value)
    assert message.startswith(f"script line {line}: ")
    for word in words:
        assert word in message


def test_script_size_and_emptiness_and_allowed_cues() -> None:
    with pytest.raises(ScriptError, match="empty"):
        parse_script(" \n\n ")
    with pytest.raises(ScriptError, match="200,000"):
        parse_script("a" * 200_001)
    with pytest.raises(ScriptError, match="only pauses"):
        parse_script("[pause 1s]")
    with pytest.raises(ScriptError, match="narrator"):  # narrator text needs a narrator voice too
        parse_script("Plain text.", voices={"Alice"})
    # a cue the speech tool knows is kept for it, any case; names match voices case-insensitively
    script = parse_script("alice: Ha [Laughs] ha.", voices={"Alice"}, allowed_cues={"laughs"})
    speech = script.chapters[0].elements[0]
    assert isinstance(speech, Speech) and speech.speaker == "Alice" and speech.text == "Ha [Laughs] ha."


# --- lexicon --------------------------------------------------------------------------------


def test_lexicon_whole_words_case_longest_first_once() -> None:
    lex = make_lexicon({"SQL": "sequel", "SQL Server": "sequel server", "sequel": "NO", "e.g.": "for example"})
    assert lex.apply("SQL Server and SQL, not sql or SQLite or MySQL; e.g. this") == (
        "sequel server and sequel, not sql or SQLite or MySQL; for example this"
    )
    with pytest.raises(ScriptError, match=f"limit is {MAX_LEXICON_ENTRIES}"):
        make_lexicon({f"w{i}": "x" for i in range(MAX_LEXICON_ENTRIES + 1)})
    with pytest.raises(ScriptError, match="at most 100"):
        make_lexicon({"word": "x" * 101})
    with pytest.raises(ScriptError, match="empty"):
        make_lexicon({"word": " "})


# --- splitting ------------------------------------------------------------------------------

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "omicron",
    "pi",
    "rho",
    "sigma",
]


def _random_text(rng: np.random.Generator, sentences: int) -> str:
    out = []
    for _ in range(sentences):
        n = int(rng.integers(2, 30))
        words = [str(w) for w in rng.choice(WORDS, n)]
        if n > 8:
            words[n // 2] += ","
        out.append(" ".join(words).capitalize() + str(rng.choice([".", "!", "?"])))
    return " ".join(out)


def test_parts_fit_end_at_sentences_and_round_trip() -> None:
    rng = np.random.default_rng(22)
    paragraphs = [_random_text(rng, 12) for _ in range(6)]
    long_sentence = " ".join(str(w) for w in rng.choice(WORDS, 120)).capitalize() + "."  # ~800 chars, no clause
    paragraphs.append("Bob: " + long_sentence)
    script = parse_script("# One\n" + "\n\n".join(paragraphs), voices=VOICES)
    limit = 200
    items = plan_parts(script, limit, make_lexicon({"pi": "pie pie pie"}))
    parts = [p for p in items if isinstance(p, Part)]
    assert [p.index for p in parts] == list(range(len(parts)))
    for speech in (e for e in script.chapters[0].elements if isinstance(e, Speech)):
        mine = [p for p in parts if p.paragraph == speech.paragraph]
        assert " ".join(p.text for p in mine) == speech.text  # nothing lost, nothing added
        for p in mine:
            assert len(p.spoken) <= limit
            assert p.text.split() == p.text.split(" ")  # never cut inside a word: words are whole
            if speech.speaker == NARRATOR:
                assert p.text[-1] in ".!?"  # narrator paragraphs have short sentences: cut at their ends
                assert sentence_spans(p.text)[-1][1] == len(p.text)
    bob = [p for p in parts if p.speaker == "Bob"]
    assert len(bob) >= 4 and all(len(p.spoken) <= limit for p in bob)  # one sentence cut at words
    assert set(" ".join(p.text for p in bob).split()) <= set(WORDS) | {w.capitalize() for w in WORDS} | {
        w + "." for w in WORDS
    }
    # the lexicon made the spoken text longer than the script's, and the cut respects the spoken length
    assert any(len(p.spoken) > len(p.text) for p in parts)
    # continuity: the same speaker's neighbours in the chapter
    narrator = [p for p in parts if p.speaker == NARRATOR]
    assert narrator[0].previous_text is None and narrator[0].next_text == narrator[1].spoken
    assert narrator[1].previous_text == narrator[0].spoken
    assert bob[0].previous_text is None and bob[-1].next_text is None


def test_clause_cut_and_per_speaker_limits() -> None:
    sentence = "This clause is first, this clause is second; and this third clause ends it all."
    script = parse_script(f"Alice: {sentence}\n\n{sentence}", voices=VOICES)
    items = plan_parts(script, {"Alice": 40, NARRATOR: 500})
    parts = [p for p in items if isinstance(p, Part)]
    alice = [p.text for p in parts if p.speaker == "Alice"]
    assert alice == ["This clause is first,", "this clause is second;", "and this third clause ends it all."]
    assert [p.text for p in parts if p.speaker == NARRATOR] == [sentence]
    with pytest.raises(ScriptError, match="longer than the speech model's limit of 20"):
        plan_parts(parse_script("Supercalifragilisticexpialidocious words."), 20)


# --- subtitles and chapter JSON -------------------------------------------------------------


def test_subtitle_cues_follow_parts_keep_speakers_and_script_words() -> None:
    script = parse_script(SCRIPT, voices=VOICES, allowed_cues={"laughs"})
    lex = make_lexicon({"SQL": "sequel"})
    items = plan_parts(script, 60, lex)
    parts = [p for p in items if isinstance(p, Part)]
    assert any("sequel" in p.spoken and "SQL" in p.text for p in parts)
    # a timeline as a production would lay it out: each part ~14 characters a second, pauses between
    finished: list[tuple[Part, float, float]] = []
    t = 0.0
    for item in items:
        if isinstance(item, PlannedPause):
            t += item.seconds
            continue
        duration = len(item.spoken) / 14.0
        finished.append((item, t, duration))
        t += duration + 0.3
    segments = subtitle_segments(reversed(finished))  # any order in, timeline order out
    cues = cues_from_transcript({"segments": [s.as_segment() for s in segments]}, max_chars=42)
    parsed_srt = list(srt.parse(to_srt(cues)))
    parsed_vtt = list(webvtt.from_buffer(io.StringIO(to_vtt(cues))).captions)
    assert len(parsed_srt) == len(parsed_vtt) == len(cues) >= len(parts)
    all_text = " ".join(c.content for c in parsed_srt)
    assert "SQL" in all_text and "sequel" not in all_text  # subtitles keep the script's words
    assert "[laughs]" not in all_text and "pause" not in all_text  # cues are not subtitles
    for sub, cap in zip(parsed_srt, parsed_vtt, strict=True):
        owner = [(p, s, d) for p, s, d in finished if s - 1e-3 <= sub.start.total_seconds() < s + d]
        assert len(owner) == 1, sub  # each cue inside exactly one part's time
        part, start, duration = owner[0]
        assert sub.end.total_seconds() <= start + duration + 1e-3
        label, body = re.match(r"\[(\w+)\] (.*)", sub.content, re.S).groups()  # type: ignore[union-attr]
        assert label == part.speaker and cap.voice == part.speaker
        text = " ".join(body.split())
        assert text in part.subtitle
        assert len(re.findall(r"(?<!e\.g)[.!?](?=\s|$)", text)) <= 1  # at most one sentence a cue
    # the three sentences of Alice's first part get three cues, in proportion to their characters
    first_alice = next(p for p in parts if p.speaker == "Alice")
    assert len(sentence_spans(first_alice.subtitle)) >= 2


def test_podcast_chapters_json() -> None:
    marks = [ChapterMark("Intro", 0.0, 12.5), ChapterMark("Part two", 12.5, 30.0004)]
    doc = json.loads(json.dumps(podcast_chapters(marks)))
    assert doc == {
        "version": "1.2.0",
        "chapters": [
            {"startTime": 0.0, "endTime": 12.5, "title": "Intro"},
            {"startTime": 12.5, "endTime": 30.0, "title": "Part two"},
        ],
    }
    with pytest.raises(ValueError, match="overlaps"):
        podcast_chapters([ChapterMark("a", 0, 10), ChapterMark("b", 5, 12)])


# --- chapters in files ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tone_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    t = np.arange(4 * SR) / SR
    return write_wav(tmp_path_factory.mktemp("tone") / "tone.wav", np.vstack([0.2 * np.sin(2 * np.pi * 440 * t)]), SR)


MARKS = [ChapterMark("One", 0.0, 1.5), ChapterMark("Two — é", 1.5, 4.0)]


def test_mp3_chapters_read_back_with_mutagen_and_pyav(tmp_path: Path, tone_wav: Path) -> None:
    out = ops.trim(tone_wav, tmp_path / "book.mp3", fade_s=0.0).path
    assert embed_chapters(out, MARKS, title="My Book") is True
    tags = ID3(str(out))
    chaps = sorted(tags.getall("CHAP"), key=lambda c: c.start_time)
    assert [(c.start_time, c.end_time, str(c.sub_frames["TIT2"])) for c in chaps] == [
        (0, 1500, "One"),
        (1500, 4000, "Two — é"),
    ]
    (toc,) = tags.getall("CTOC")
    assert toc.child_element_ids == [c.element_id for c in chaps]
    assert str(tags["TIT2"]) == "My Book"
    assert read_chapters(out) == MARKS
    assert abs(decode(out)[0].shape[1] / SR - 4.0) < 0.001  # audio untouched


@pytest.mark.parametrize("suffix", [".m4a", ".m4b"])
def test_mp4_chapters_read_back_with_mutagen_and_pyav(tmp_path: Path, tone_wav: Path, suffix: str) -> None:
    out = ops.trim(tone_wav, tmp_path / "book.m4a", fade_s=0.0).path
    if suffix == ".m4b":
        out = out.rename(out.with_suffix(".m4b"))
    before, _ = decode(out)
    assert embed_chapters(out, MARKS, title="My Book") is True
    mp4 = MP4(str(out))
    assert mp4.chapters is not None
    assert [(round(c.start, 3), c.title) for c in mp4.chapters] == [(0.0, "One"), (1.5, "Two — é")]
    assert mp4.tags is not None and mp4.tags["\xa9nam"] == ["My Book"]
    with av.open(str(out)) as container:
        raw = container.chapters()
    assert [(float(c["start"] * (c["time_base"] or 0)), c["metadata"]["title"]) for c in raw] == [
        (0.0, "One"),
        (1.5, "Two — é"),
    ]
    assert read_chapters(out) == MARKS
    after, _ = decode(out)
    assert after.shape == before.shape and np.array_equal(after, before)  # remuxed, not re-encoded
    assert not list(tmp_path.glob(".*.part"))


def test_chapters_refused_or_skipped(tmp_path: Path, tone_wav: Path) -> None:
    wav = ops.trim(tone_wav, tmp_path / "x.wav", fade_s=0.0).path
    assert embed_chapters(wav, MARKS) is False
    mp3 = ops.trim(tone_wav, tmp_path / "x.mp3", fade_s=0.0).path
    with pytest.raises(PostError, match="after the audio"):
        embed_chapters(mp3, [ChapterMark("Long", 0.0, 9.0)])


# --- delivery -------------------------------------------------------------------------------


def _rms_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(x)) + 1e-20))


@pytest.mark.parametrize(
    ("delivery", "fmt", "target", "tol"), [("podcast", "m4a", -16.0, 1.0), ("broadcast", "mp3", -23.0, 0.5)]
)
def test_loudness_deliveries_measured_with_pyloudnorm(
    tmp_path: Path, delivery: str, fmt: str, target: float, tol: float
) -> None:
    x = speechlike(6.0, 48000, amp=0.03)
    x[:, 30000:30040] = 0.6  # a transient the limiter has to hold under the ceiling
    src = write_wav(tmp_path / "mix.wav", x, 48000)
    result = dl.conform(src, tmp_path / "out", delivery, format=fmt)
    out, sr = decode(result.rendered.path)
    measured = lufs(out, sr)
    assert abs(measured - target) <= tol
    assert true_peak_db(out) <= -1.0
    assert (sr == SR) if delivery == "podcast" else True
    assert result.report.passed, result.report.failures
    by_rule = {r.rule: r for r in result.report.rules}
    loud = by_rule["loudness"].measured
    assert isinstance(loud, float) and abs(loud - measured) < 0.3  # our meter agrees with pyloudnorm
    assert set(by_rule) == (
        {"loudness", "true_peak", "sample_rate"} if delivery == "podcast" else {"loudness", "true_peak"}
    )


def _chapter_audio(seconds: float, sr: int, amp: float, lead: float, trail: float) -> np.ndarray:
    return np.concatenate(
        [np.zeros((2, round(lead * sr))), speechlike(seconds, sr, amp=amp), np.zeros((2, round(trail * sr)))], axis=1
    )


def test_audiobook_per_chapter_rules_measured_with_numpy(tmp_path: Path) -> None:
    one = write_wav(tmp_path / "one.wav", _chapter_audio(4.0, 48000, 0.02, 2.0, 0.2), 48000)  # quiet, long lead
    two = write_wav(tmp_path / "two.wav", _chapter_audio(6.0, 44100, 0.5, 0.0, 0.0), 44100)  # hot, no room tone
    result = dl.conform([one, two], tmp_path / "book.mp3", "audiobook", titles=["One", "Two"])
    assert result.report.passed, result.report.failures
    path = result.rendered.path
    info = MP3(str(path)).info
    assert info.bitrate == 192000 and info.bitrate_mode in (BitrateMode.CBR, BitrateMode.UNKNOWN)
    assert info.sample_rate == SR
    out, sr = decode(path)
    assert [m.title for m in result.chapters] == ["One", "Two"]
    assert abs(result.chapters[-1].end_s - out.shape[1] / sr) < 0.01
    hop = sr // 100
    for mark in result.chapters:
        seg = out[:, round(mark.start_s * sr) : round(mark.end_s * sr)]
        assert -23.0 <= _rms_db(seg) <= -18.0
        assert 20 * np.log10(np.abs(seg).max()) <= -3.0
        hops = 10 * np.log10(
            np.mean(np.square(seg[:, : seg.shape[1] // hop * hop].reshape(2, -1, hop)), axis=(0, 2)) + 1e-20
        )
        loud = np.flatnonzero(hops > -50)
        assert 0.5 <= loud[0] * 0.01 <= 1.0  # room tone at the head
        assert 1.0 <= (hops.shape[0] - 1 - loud[-1]) * 0.01 <= 5.0  # and at the tail
    rules = {(r.chapter, r.rule) for r in result.report.rules}
    assert {("One", "rms"), ("Two", "noise_floor"), (None, "mp3_bitrate"), (None, "sample_rate")} <= rules


def test_failing_rules_are_reported_with_reasons(tmp_path: Path) -> None:
    rng = np.random.default_rng(60)
    x = _chapter_audio(4.0, SR, 0.1, 0.0, 0.0)
    x += 0.006 * rng.standard_normal(x.shape)  # hiss at about -44 dBFS under everything
    noisy = write_wav(tmp_path / "noisy.wav", x, SR)
    result = dl.conform(noisy, tmp_path / "noisy.m4a", "audiobook")
    failed = {r.rule: r for r in result.report.failures}
    assert set(failed) == {"noise_floor"}
    floor = failed["noise_floor"]
    assert isinstance(floor.measured, float) and floor.measured > -60
    assert floor.reason is not None and "noisy" in floor.reason and "-60" in floor.reason
    # an untouched quiet file at 48 kHz, measured against the podcast rules
    quiet = write_wav(tmp_path / "quiet.wav", speechlike(3.0, 48000, amp=0.01), 48000)
    report = dl.measure(quiet, "podcast")
    bad = {r.rule: r for r in report.failures}
    assert set(bad) == {"loudness", "sample_rate"}
    assert bad["loudness"].reason is not None and "under the range" in bad["loudness"].reason
    assert bad["sample_rate"].measured == 48000
    assert report.as_dict()["passed"] is False
    assert dl.measure(quiet, "none").passed
    with pytest.raises(PostError, match="choose one of podcast"):
        dl.measure(quiet, "radio")
