"""Subtitles from every transcript shape our upstreams return, parsed back by subtitle libraries."""

from __future__ import annotations

import io
import itertools
from datetime import timedelta
from typing import Any

import pytest
import srt
import webvtt

from mcp_audio.post.subtitles import Cue, cues_from_transcript, to_srt, to_vtt


def ms(seconds: float) -> int:
    return round(seconds * 1000)


def td_ms(value: timedelta) -> int:
    return round(value.total_seconds() * 1000)


def vtt_ms(stamp: str) -> int:
    h, m, s = stamp.split(":")
    return round((int(h) * 3600 + int(m) * 60 + float(s)) * 1000)


def parse_srt(text: str) -> list[srt.Subtitle]:
    return list(srt.parse(text))


def parse_vtt(text: str) -> list[Any]:
    return list(webvtt.from_buffer(io.StringIO(text)).captions)


SENTENCE = "the quick brown fox jumps over the lazy dog and then it runs far away into the woods again"


def words_with_times(text: str, start: float, step: float = 0.3) -> list[tuple[str, float, float]]:
    out = []
    t = start
    for word in text.split():
        out.append((word, round(t, 3), round(t + step * 0.8, 3)))
        t += step
    return out


# --- segment-level shapes -------------------------------------------------------------------


def test_whisper_segments_give_one_cue_per_segment_with_their_times() -> None:
    transcript = {
        "text": "Hello there. General Kenobi.",
        "segments": [
            {"id": 0, "start": 0.0, "end": 1.52, "text": " Hello there."},
            {"id": 1, "start": 2.04, "end": 3.987, "text": " General Kenobi."},
        ],
    }
    cues = cues_from_transcript(transcript)
    assert [(c.text, c.speaker) for c in cues] == [("Hello there.", None), ("General Kenobi.", None)]
    for parsed in (parse_srt(to_srt(cues)),):
        assert [(td_ms(s.start), td_ms(s.end)) for s in parsed] == [(0, 1520), (2040, 3987)]
        assert [s.content for s in parsed] == ["Hello there.", "General Kenobi."]
    vtt = parse_vtt(to_vtt(cues))
    assert [(vtt_ms(c.start), vtt_ms(c.end), c.text) for c in vtt] == [
        (0, 1520, "Hello there."),
        (2040, 3987, "General Kenobi."),
    ]


def test_voice_api_segments_carry_speakers_into_srt_and_vtt() -> None:
    transcript = {
        "segments": [
            {"start": 0.5, "end": 2.0, "text": "Welcome to the show.", "speaker": "SPEAKER_00"},
            {"start": 2.2, "end": 4.1, "text": "Thanks for having me.", "speaker": "SPEAKER_01"},
        ]
    }
    cues = cues_from_transcript(transcript)
    parsed = parse_srt(to_srt(cues))
    assert [s.content for s in parsed] == ["[SPEAKER_00] Welcome to the show.", "[SPEAKER_01] Thanks for having me."]
    assert [(td_ms(s.start), td_ms(s.end)) for s in parsed] == [(500, 2000), (2200, 4100)]
    vtt = parse_vtt(to_vtt(cues))
    assert [c.voice for c in vtt] == ["SPEAKER_00", "SPEAKER_01"]
    assert [c.text for c in vtt] == ["Welcome to the show.", "Thanks for having me."]


def test_long_segment_splits_into_cues_of_at_most_two_lines_covering_its_time() -> None:
    transcript = {"segments": [{"start": 10.0, "end": 22.0, "text": SENTENCE + " " + SENTENCE}]}
    cues = cues_from_transcript(transcript, max_chars=20)
    assert len(cues) > 1
    assert ms(cues[0].start) == 10000 and ms(cues[-1].end) == 22000
    for before, after in itertools.pairwise(cues):
        assert ms(before.end) == ms(after.start)  # contiguous, in order
        assert after.start > before.start
    for cue in cues:
        lines = cue.text.split("\n")
        assert 1 <= len(lines) <= 2
        assert all(len(line) <= 20 for line in lines)
    assert " ".join(c.text.replace("\n", " ") for c in cues) == SENTENCE + " " + SENTENCE


def test_segment_that_fits_wraps_to_two_lines_under_max_chars() -> None:
    cues = cues_from_transcript({"segments": [{"start": 1, "end": 4, "text": "one two three four five six seven"}]}, 20)
    assert len(cues) == 1
    assert cues[0].text.split("\n") == ["one two three four", "five six seven"]


def test_fal_segment_chunks_with_open_last_end() -> None:
    transcript = {
        "text": "first part second part",
        "chunks": [
            {"timestamp": [0.0, 2.5], "text": " first part of it"},
            {"timestamp": [2.5, None], "text": " second part of it"},
        ],
    }
    cues = cues_from_transcript(transcript)
    assert [c.text for c in cues] == ["first part of it", "second part of it"]
    assert ms(cues[1].start) == 2500 and cues[1].end > cues[1].start


# --- word-level shapes ----------------------------------------------------------------------


def test_elevenlabs_words_group_into_cues_that_never_span_speakers() -> None:
    words: list[dict[str, Any]] = []
    for text, start, end in words_with_times("so how was the trip last week", 0.2):
        words.append({"text": text, "start": start, "end": end, "type": "word", "speaker_id": "speaker_0"})
        words.append({"text": " ", "start": end, "end": end + 0.06, "type": "spacing", "speaker_id": "speaker_0"})
    words.append({"text": "(laughs)", "start": 2.4, "end": 2.9, "type": "audio_event", "speaker_id": "speaker_1"})
    for text, start, end in words_with_times("it was great", 3.0):
        words.append({"text": text, "start": start, "end": end, "type": "word", "speaker_id": "speaker_1"})
    cues = cues_from_transcript({"language_code": "en", "text": "...", "words": words})
    assert [(c.speaker, c.text) for c in cues] == [
        ("speaker_0", "so how was the trip last week"),
        ("speaker_1", "(laughs) it was great"),
    ]
    spoken = [w for w in words if w["type"] != "spacing"]
    parsed = parse_srt(to_srt(cues))
    assert td_ms(parsed[0].start) == ms(spoken[0]["start"]) and td_ms(parsed[0].end) == ms(spoken[6]["end"])
    assert td_ms(parsed[1].start) == ms(2.4) and td_ms(parsed[1].end) == ms(spoken[-1]["end"])
    assert parsed[1].content == "[speaker_1] (laughs) it was great"
    vtt = parse_vtt(to_vtt(cues))
    assert [c.voice for c in vtt] == ["speaker_0", "speaker_1"]


def test_word_chunks_group_with_every_line_at_most_max_chars_and_exact_word_times() -> None:
    timed = words_with_times(SENTENCE, 1.0, step=0.25)
    chunks = [{"timestamp": [s, e], "text": f" {w}", "speaker": "SPEAKER_00"} for w, s, e in timed]
    cues = cues_from_transcript({"chunks": chunks}, max_chars=24)
    assert len(cues) >= 3
    starts = {ms(s) for _, s, _ in timed}
    ends = {ms(e) for _, _, e in timed}
    flat: list[str] = []
    for cue in cues:
        assert ms(cue.start) in starts and ms(cue.end) in ends
        lines = cue.text.split("\n")
        assert len(lines) <= 2
        srt_lines = to_srt([cue]).strip().split("\n")[2:]
        assert all(len(line) <= 24 for line in srt_lines), srt_lines  # the label counts
        flat.extend(cue.text.split())
    assert flat == SENTENCE.split()
    parsed = parse_srt(to_srt(cues))
    assert td_ms(parsed[0].start) == ms(timed[0][1])
    assert td_ms(parsed[-1].end) == ms(timed[-1][2])
    assert all(s.content.startswith("[SPEAKER_00] ") for s in parsed)


def test_word_cues_break_at_a_long_pause() -> None:
    timed = words_with_times("hello there", 0.0) + words_with_times("after pause", 5.0)
    chunks = [{"timestamp": [s, e], "text": w} for w, s, e in timed]
    cues = cues_from_transcript({"chunks": chunks})
    assert [c.text for c in cues] == ["hello there", "after pause"]
    assert ms(cues[1].start) == 5000


def test_vtt_escapes_markup_characters() -> None:
    vtt = to_vtt([Cue(0.0, 1.0, "a < b & c")])
    assert "a &lt; b &amp; c" in vtt
    assert [c.text for c in parse_vtt(vtt)] == ["a &lt; b &amp; c"]  # webvtt-py keeps the entities


def test_srt_times_past_an_hour() -> None:
    text = to_srt([Cue(3725.5, 3727.25, "late")])
    assert "01:02:05,500 --> 01:02:07,250" in text
    assert td_ms(parse_srt(text)[0].end) == 3727250


# --- invalid input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("transcript", "needle"),
    [
        ({"text": "no timings here"}, "no timings"),
        ({"chunks": []}, "no timings"),
        ({"chunks": [{"text": "x"}]}, "chunks[0] has no timestamp"),
        ({"chunks": [{"timestamp": [None, 1.0], "text": "x"}]}, "chunks[0] has no timestamp"),
        ({"words": [{"text": "x", "type": "word"}]}, "words[0] has no 'start'/'end'"),
        ({"segments": [{"text": "x", "start": 1.0}]}, "segments[0] has no 'start'/'end'"),
        ({"segments": [{"text": "x", "start": "one", "end": 2}]}, "segments[0].start"),
        ({"segments": [{"text": "x", "start": 3.0, "end": 2.0}]}, "ends (2.0) before it starts (3.0)"),
    ],
)
def test_invalid_transcripts_raise_value_error_naming_the_problem(transcript: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValueError) as info:
        cues_from_transcript(transcript)
    assert needle in str(info.value)


def test_cues_from_spoken_text_share_the_duration_by_sentence_length() -> None:
    from mcp_audio.post.subtitles import cues_from_text

    text = "Hello there. This second sentence is quite a lot longer than the first! Bye?"
    cues = cues_from_text(text, 10.0, max_chars=42)
    sentences = ["Hello there.", "This second sentence is quite a lot longer than the first!", "Bye?"]
    assert " ".join(" ".join(cue.text.split()) for cue in cues) == " ".join(sentences)
    assert cues[0].start == 0 and cues[-1].end == pytest.approx(10.0)
    assert all(a.end == pytest.approx(b.start) for a, b in itertools.pairwise(cues))  # no gaps
    lengths = [len(s) for s in sentences]
    first_end = next(cue.end for cue in cues if cue.text.endswith("there."))
    assert first_end == pytest.approx(10.0 * lengths[0] / sum(lengths), rel=0.01)
    assert all(len(line) <= 42 for cue in cues for line in cue.text.splitlines())
    assert cues_from_text("<|speaker:0|>Hi.  <|speaker:1|>Hello.", 2.0, 42)[0].text == "Hi."  # markup is not spoken
    assert cues_from_text("   ", 2.0, 42) == []
