"""Synthetic audio for the loopback fakes: speech whose length follows its text, music and
effects of a requested length, and a tag by which the fakes' transcribers know their own speech.

Nothing here is a model's output, and every file says so in its tag. Speech is voiced syllables
(a glottal-pulse-like harmonic series shaped by vowel formants, some with a noise onset) at about
14 characters a second, -20 dBFS RMS while speaking, with pauses at sentence ends over a noise
floor near -68 dBFS. It is deterministic per text and voice; a voice's name sets its pitch.
Levels are dBFS RMS with a full-scale square wave at 0 dB.

Recognising sandbox speech (what a transcription fake answers): each file carries a small JSON
tag (RIFF INFO `ICMT` in WAV, an ID3v2.4 `TXXX` frame in MP3, a Vorbis comment in FLAC/Ogg) with
the text and voices; word timings are recomputed from the text, as the synthesis made them. A
bounded in-process registry keyed by the file's SHA-256 also knows every file made here, for
containers that carry no tag (AAC, raw PCM). Both survive copies (download, upload, multipart);
neither survives a re-encode (a trim or a join), which the fakes then answer as unknown audio.

Cost: speech is assembled from a per-voice bank of precomputed syllables (no per-sample math but
an addition of the noise floor), so an hour of WAV takes well under a second of CPU. MP3 and the
other compressed formats are encoded with PyAV (imported when first needed).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

import numpy as np
import numpy.typing as npt

SANDBOX_NOTE = "sandbox placeholder: synthetic audio from mcp-audio's loopback fake, not a model's output"
TAG_KEY = "mcp_audio_sandbox"  # the tag is a JSON object whose first key is this
CHARS_PER_S = 14.0
SPEECH_RATE = 24_000
MUSIC_RATE = 44_100
SPEECH_DBFS = -20.0
FLOOR_DBFS = -68.0
HEAD_S, TAIL_S = 0.15, 0.35  # silence before the first word and after the last
SENTENCE_PAUSE_S, CLAUSE_PAUSE_S = 0.55, 0.2
MAX_SPEECH_S = 4 * 3600.0  # a text longer than this is cut short: memory stays bounded

Pcm = npt.NDArray[np.int16]
_SENTENCE_END = re.compile(r"[.!?…]['\"”’)\]]*$")
_CLAUSE_END = re.compile(r"[,;:—–-]['\"”’)\]]*$")
_TAG_MARK = b'{"' + TAG_KEY.encode() + b'"'
_CUE = re.compile(r"\[[^\[\]]{1,40}\]")  # [excited], [whisper]: direction for a model, not words


@dataclass(frozen=True)
class Word:
    text: str
    start: float
    end: float
    voice: str = ""


@dataclass(frozen=True)
class Sentence:
    text: str
    start: float
    end: float
    words: tuple[Word, ...]


@dataclass(frozen=True)
class Timeline:
    """Where each word of a text is spoken; `duration` is the whole file's."""

    text: str
    sentences: tuple[Sentence, ...]
    duration: float

    @property
    def words(self) -> list[Word]:
        return [word for sentence in self.sentences for word in sentence.words]


def timeline(text: str, voices: Sequence[str] = ()) -> Timeline:
    """The words of `text` on the clock: about CHARS_PER_S characters a second overall, longer
    pauses after sentences and clauses. `voices` (one per word, optional) are carried along."""
    tokens = text.split()
    if not tokens:
        return Timeline("", (), 0.5)
    normal = " ".join(tokens)
    gaps = []
    for token in tokens:
        if _SENTENCE_END.search(token):
            gaps.append(SENTENCE_PAUSE_S)
        elif _CLAUSE_END.search(token):
            gaps.append(CLAUSE_PAUSE_S)
        else:
            gaps.append(0.0)  # a plain word gap: one character's time, scaled below
    gaps[-1] = TAIL_S
    plain = sum(len(t) for t in tokens) + sum(1 for g in gaps[:-1] if g == 0.0)
    fixed = HEAD_S + sum(g for g in gaps)
    target = min(len(normal) / CHARS_PER_S, MAX_SPEECH_S)
    # Scale the characters so the whole (pauses included) lasts about len / 14 s.
    char_s = min(max((target - fixed) / plain, 0.5 / CHARS_PER_S), 1.5 / CHARS_PER_S) if plain else 1 / CHARS_PER_S
    sentences: list[Sentence] = []
    words: list[Word] = []
    clock = HEAD_S
    for n, (token, gap) in enumerate(zip(tokens, gaps, strict=True)):
        length = max(len(token), 2) * char_s
        words.append(Word(token, round(clock, 3), round(clock + length, 3), voices[n] if n < len(voices) else ""))
        clock += length + (gap or char_s)
        if gap == SENTENCE_PAUSE_S or n == len(tokens) - 1:
            sentences.append(Sentence(" ".join(w.text for w in words), words[0].start, words[-1].end, tuple(words)))
            words = []
        if clock > MAX_SPEECH_S:
            if words:
                sentences.append(Sentence(" ".join(w.text for w in words), words[0].start, words[-1].end, tuple(words)))
            break
    return Timeline(normal, tuple(sentences), round(clock, 3))


# ---- speech ------------------------------------------------------------------------------

# Vowel formants (Hz) of an adult voice; a voice's pitch shifts them a little.
_VOWELS = ((800, 1200, 2500), (500, 1800, 2500), (320, 2200, 2950), (500, 900, 2400), (360, 800, 2300))
_SYLLABLE_S = (0.08, 0.11, 0.14, 0.17, 0.2, 0.23, 0.26, 0.3)
_VARIANTS = 15  # 5 vowels x 3 onsets (none, hiss, burst); pitch varies per variant too


def voice_pitch(voice: str) -> float:
    """The fundamental (Hz) of a voice: a stable function of its name, one of 19 semitones from
    85 Hz up (to 240 Hz), so two voices differ by a semitone or more unless their names collide."""
    return 85.0 * 2 ** ((zlib.crc32(voice.encode()) % 19) / 12)


def _level(dbfs: float) -> float:
    return float(32768 * 10 ** (dbfs / 20))


@lru_cache(maxsize=16)
def _bank(voice: str, rate: int) -> tuple[tuple[Pcm, ...], ...]:
    """bank[length][variant]: the voice's syllables, each ending in silence, at SPEECH_DBFS + 1.5 dB
    (the short gaps between words bring a sentence down to SPEECH_DBFS)."""
    f0 = voice_pitch(voice)
    shift = 1.0 + (f0 - 120.0) / 800.0  # higher voices have slightly higher formants
    rng = np.random.default_rng(zlib.crc32(voice.encode()))
    bank = []
    for seconds in _SYLLABLE_S:
        n = int(seconds * rate)
        t = np.arange(n) / rate
        row = []
        for variant in range(_VARIANTS):
            vowel, onset = _VOWELS[variant % 5], variant // 5
            pitch = f0 * (0.92 + 0.16 * ((variant * 7) % _VARIANTS) / _VARIANTS)
            contour = pitch * (1.0 + 0.08 * (0.5 - t / seconds))  # a slight fall across the syllable
            phase = 2 * np.pi * np.cumsum(contour) / rate
            harmonics = np.arange(1, int(3800 // pitch) + 1)
            formants = np.array(vowel, dtype=float)
            resonance = 1.0 / (1.0 + ((harmonics[:, None] * pitch - formants * shift) / (60 + 0.08 * formants)) ** 2)
            signal = np.zeros(n)
            # sin(h x) by sin((h+1)x) = 2 cos(x) sin(hx) - sin((h-1)x): one sine per syllable, not one
            # per harmonic (a bank costs a quarter of the time; the samples come out the same).
            twice_cos, previous, current = 2 * np.cos(phase), np.zeros(n), np.sin(phase)
            for weight in resonance.sum(axis=1) / harmonics**0.6:
                signal += weight * current
                previous, current = current, twice_cos * current - previous
            attack, release = int(0.02 * rate), int(min(0.05, seconds / 3) * rate)
            envelope = np.ones(n)
            envelope[:attack] = np.sin(np.linspace(0, np.pi / 2, attack)) ** 2
            envelope[-release:] = np.cos(np.linspace(0, np.pi / 2, release)) ** 2
            signal *= envelope * np.linspace(1.0, 0.8, n)
            signal *= _level(SPEECH_DBFS + 1.5) / max(float(np.sqrt(np.mean(signal**2))), 1e-9)
            if onset:  # a consonant before the vowel: a hiss (s, f) or a short burst (t, k)
                span = int((0.06 if onset == 1 else 0.015) * rate)
                hiss = np.diff(rng.standard_normal(span + 1)) * np.hanning(span)
                signal[:span] = signal[:span] * np.linspace(0, 1, span) + hiss * _level(SPEECH_DBFS - 6)
            row.append(np.clip(signal, -32000, 32000).astype(np.int16))
        bank.append(tuple(row))
    return tuple(bank)


@lru_cache(maxsize=2)
def _floor(rate: int) -> Pcm:
    """A little over a second of the noise floor, tiled under everything (not a whole period of
    anything audible)."""
    noise = np.random.default_rng(7).standard_normal(rate + 997) * _level(FLOOR_DBFS)
    return np.round(noise).astype(np.int16)


def speech_pcm(plan: Timeline, rate: int = SPEECH_RATE, default_voice: str = "default") -> Pcm:
    """The samples of `plan`: each word as syllables of its voice, pauses as the noise floor."""
    total = round(plan.duration * rate)
    out = np.zeros(total, np.int16)
    lengths = [int(s * rate) for s in _SYLLABLE_S]
    for word in plan.words:
        bank = _bank(word.voice or default_voice, rate)
        start, end = int(word.start * rate), min(int(word.end * rate), total)
        count = max(1, round((end - start) / (0.2 * rate)))
        slot = (end - start) // count
        index = max([i for i, n in enumerate(lengths) if n <= slot] or [0])
        seed = zlib.crc32(word.text.lower().encode())
        for k in range(count):
            syllable = bank[index][(seed >> (3 * k % 27)) % _VARIANTS]
            at = start + k * slot
            piece = syllable[: max(0, min(len(syllable), total - at))]
            out[at : at + len(piece)] = piece
    out += np.resize(_floor(rate), total)
    return out


def speak(parts: Iterable[tuple[str, str]], fmt: str = "wav", rate: int = SPEECH_RATE) -> tuple[bytes, Timeline]:
    """Speech of (text, voice) parts in a row, encoded as `fmt` and tagged; and its timeline.
    Bracketed cues (`[excited]`) are not spoken."""
    texts: list[str] = []
    voices: list[str] = []
    for text, voice in parts:
        words = _CUE.sub(" ", text).split()
        texts.extend(words)
        voices.extend([voice] * len(words))
    plan = timeline(" ".join(texts), voices)
    tag = {TAG_KEY: SANDBOX_NOTE, "kind": "speech", "text": plan.text, "voices": sorted(set(voices))}
    data = encode(speech_pcm(plan, rate), rate, fmt, tag)
    remember(data, tag)
    return data, plan


# ---- music and effects --------------------------------------------------------------------


def music_pcm(seconds: float, prompt: str, rate: int = MUSIC_RATE) -> Pcm:
    """A plucked four-chord loop in a key set by the prompt, faded in and out, about -18 dBFS."""
    seed = zlib.crc32(prompt.encode())
    root = 110.0 * 2 ** ((seed % 12) / 12)
    beat = 0.5
    chords = ((0, 4, 7), (9, 12, 16), (5, 9, 12), (7, 11, 14))
    t = np.arange(int(beat * rate)) / rate
    pluck = np.exp(-t * 5.0)
    bars = []
    for chord in chords:
        tones = sum(np.sin(2 * np.pi * root * 2 ** (s / 12) * t) for s in (*chord, chord[0] + 12))
        note = np.asarray(tones) * pluck
        bars.append(np.tile(note, 4))
    loop = np.concatenate(bars)
    loop *= _level(-18.0) / float(np.sqrt(np.mean(loop**2)))
    return _shaped(loop, seconds, rate)


def effect_pcm(seconds: float, prompt: str, rate: int = MUSIC_RATE) -> Pcm:
    """Swells of coloured noise (a whoosh) over the whole length, about -22 dBFS."""
    n = max(int(seconds * rate), 1)
    rng = np.random.default_rng(zlib.crc32(prompt.encode()))
    spectrum = np.fft.rfft(rng.standard_normal(2**18))  # ~6 s of noise, tiled: cheap at any length
    spectrum /= np.maximum(np.arange(len(spectrum)), 1) ** 0.5  # pink-ish
    noise = np.resize(np.fft.irfft(spectrum), n)
    hop = max(rate // 100, 1)  # the swells' envelope at 100 Hz, held per step
    steps = np.arange(n // hop + 1) / 100
    swells = 0.55 + 0.45 * np.sin(np.pi * steps / max(seconds / 3, 0.5)) ** 2
    noise *= np.repeat(swells, hop)[:n]
    noise *= _level(-22.0) / max(float(np.sqrt(np.mean(noise**2))), 1e-9)
    return _shaped(noise, seconds, rate)


def _shaped(loop: npt.NDArray[np.float64], seconds: float, rate: int) -> Pcm:
    n = max(round(seconds * rate), 1)
    signal = np.resize(loop, n)
    fade = min(int(0.5 * rate), n // 4)
    if fade:
        signal[:fade] *= np.linspace(0, 1, fade)
        signal[-fade:] *= np.linspace(1, 0, fade)
    out = np.clip(signal, -32000, 32000).astype(np.int16)
    out += np.resize(_floor(rate), n)
    return out


def sound(kind: str, seconds: float, prompt: str, fmt: str = "wav", rate: int = MUSIC_RATE) -> bytes:
    """Music or an effect (`kind`) of `seconds`, encoded as `fmt` and tagged."""
    pcm = music_pcm(seconds, prompt, rate) if kind == "music" else effect_pcm(seconds, prompt, rate)
    tag = {TAG_KEY: SANDBOX_NOTE, "kind": kind, "seconds": seconds}
    data = encode(pcm, rate, fmt, tag)
    remember(data, tag)
    return data


# ---- containers ---------------------------------------------------------------------------


def encode(pcm: Pcm, rate: int, fmt: str, tag: dict[str, Any]) -> bytes:
    """Mono 16-bit `pcm` as wav, pcm (raw s16le), mp3, flac, aac (ADTS) or opus (Ogg), with `tag`
    where the container has room for it."""
    text = json.dumps(tag, ensure_ascii=False, separators=(",", ":"))
    if fmt == "wav":
        return _wav(pcm, rate, text)
    if fmt == "pcm":
        return pcm.tobytes()
    if fmt == "mp3":
        return _id3(text) + _av_encode(pcm, rate, "mp3", "libmp3lame", None)
    if fmt in ("flac", "aac", "opus"):
        container, codec = {"flac": ("flac", "flac"), "aac": ("adts", "aac"), "opus": ("ogg", "libopus")}[fmt]
        return _av_encode(pcm, 48_000 if fmt == "opus" else rate, container, codec, text, source_rate=rate)
    raise ValueError(f"format must be one of wav, pcm, mp3, flac, aac, opus, not {fmt!r}")


def _wav(pcm: Pcm, rate: int, comment: str) -> bytes:
    """RIFF WAVE: fmt, data, then LIST/INFO with the tag (ISBJ: the server writes its own AI
    disclosure into ICMT and keeps the other fields) and who made it (ISFT)."""
    info = b"INFO"
    for key, value in ((b"ISFT", "mcp-audio sandbox"), (b"ISBJ", comment)):
        raw = value.encode() + b"\0"
        info += key + struct.pack("<I", len(raw)) + raw + (b"\0" if len(raw) % 2 else b"")
    data = pcm.astype("<i2").tobytes()
    fmt_chunk = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, rate, rate * 2, 2, 16)
    body = b"WAVE" + fmt_chunk + b"data" + struct.pack("<I", len(data)) + data
    body += (b"\0" if len(data) % 2 else b"") + b"LIST" + struct.pack("<I", len(info)) + info
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _syncsafe(n: int) -> bytes:
    return bytes(((n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F))


def _id3(comment: str) -> bytes:
    """An ID3v2.4 tag with one TXXX frame (UTF-8): description `mcp-audio sandbox`, the tag as value."""
    frame = b"\x03" + b"mcp-audio sandbox\0" + comment.encode()
    frames = b"TXXX" + _syncsafe(len(frame)) + b"\0\0" + frame
    return b"ID3\x04\x00\x00" + _syncsafe(len(frames)) + frames


def _av_encode(pcm: Pcm, rate: int, container: str, codec: str, comment: str | None, source_rate: int = 0) -> bytes:
    import av
    from av.audio.stream import AudioStream

    buffer = io.BytesIO()
    options = {"id3v2_version": "0"} if container == "mp3" else {}
    with av.open(buffer, "w", format=container, options=options) as out:
        if comment is not None:
            out.metadata["comment"] = comment
        stream = cast(AudioStream, out.add_stream(codec, rate=rate, layout="mono"))
        if codec == "libmp3lame":
            stream.bit_rate = 64_000
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = source_rate or rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


def wav_seconds(data: bytes) -> float | None:
    """A WAV's duration from its header (fmt and data chunks), or None for anything else."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    at, rate, width = 12, 0, 0
    while at + 8 <= len(data):
        chunk, size = data[at : at + 4], struct.unpack("<I", data[at + 4 : at + 8])[0]
        if chunk == b"fmt ":
            channels, rate = struct.unpack("<HI", data[at + 10 : at + 16])
            width = channels * struct.unpack("<H", data[at + 22 : at + 24])[0] // 8
        elif chunk == b"data" and rate and width:
            return float(size / width / rate)
        at += 8 + size + size % 2
    return None


# ---- recognising our own audio ------------------------------------------------------------

_REGISTRY: OrderedDict[str, dict[str, Any]] = OrderedDict()
_REGISTRY_MAX = 4096
_registry_lock = threading.Lock()


def remember(data: bytes, tag: dict[str, Any]) -> None:
    """Know `data` by its hash (bounded: the oldest are forgotten first)."""
    key = hashlib.sha256(data).hexdigest()
    with _registry_lock:
        _REGISTRY[key] = tag
        _REGISTRY.move_to_end(key)
        while len(_REGISTRY) > _REGISTRY_MAX:
            _REGISTRY.popitem(last=False)


def read_tag(data: bytes) -> dict[str, Any] | None:
    """The sandbox tag of a file made here: from the file itself, else from the registry."""
    at = data.find(_TAG_MARK)
    if at >= 0:
        try:
            tag, _ = json.JSONDecoder().raw_decode(data[at : at + 4 * 2**20].decode("utf-8", "replace"))
        except ValueError:
            tag = None
        if isinstance(tag, dict):
            return tag
    if data[:3] == b"ID3" and (tag := _id3_tag(data)) is not None:
        return tag
    with _registry_lock:
        return _REGISTRY.get(hashlib.sha256(data).hexdigest())


def _id3_tag(data: bytes) -> dict[str, Any] | None:
    """The tag in an ID3 TXXX frame that a tagger re-saved (as UTF-16, in ID3v2.3, say)."""
    from mutagen.id3 import ID3, ID3NoHeaderError

    try:
        frames = ID3(io.BytesIO(data)).getall("TXXX:mcp-audio sandbox")  # type: ignore[no-untyped-call]
        tag = json.loads(str(frames[0].text[0])) if frames else None
    except (ID3NoHeaderError, ValueError, IndexError):
        return None
    return tag if isinstance(tag, dict) else None


def recognise(data: bytes) -> Timeline | None:
    """The words (and their timings) of sandbox speech, or None for audio made elsewhere."""
    tag = read_tag(data)
    if tag is None or tag.get("kind") != "speech" or not isinstance(tag.get("text"), str):
        return None
    return timeline(tag["text"])
