"""Delivery rules (podcast, audiobook, broadcast), measured on the encoded file, and conforming.

    podcast     integrated loudness -16 LUFS ±1, true peak <= -1 dBTP, 44.1 kHz
    broadcast   EBU R128: -23 LUFS ±0.5, true peak <= -1 dBTP
    audiobook   per chapter: RMS -23..-18 dBFS, sample peak <= -3 dBFS, noise floor <= -60 dBFS,
                0.5-1 s of room tone at the head and 1-5 s at the tail; 44.1 kHz; MP3 at 192 kb/s CBR
    none        nothing to check

Definitions (all on the decoded samples of the file as written, every channel pooled):

- loudness and true peak: BS.1770-4 through the engine's meter (`loudness.LoudnessMeter`);
- RMS: sqrt(mean of squared samples) over the whole chapter, head and tail included (as ACX
  measures); 20*log10, so a full-scale sine is -3 dBFS;
- peak: the largest |sample|;
- the room tone at the head (tail): time from the chapter's start to the first (after the last)
  10 ms hop whose RMS is above `SOUND_DB`;
- noise floor: the 10th percentile of the RMS of 50 ms windows between the chapter's first and
  last sound: the pauses between words and sentences. Measured there, and not over the whole
  chapter, so that silent padding at the edges cannot hide a noisy recording. It assumes the
  pauses are at least a tenth of the speech (true of read speech): unbroken sound reports its level.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mcp_audio.core.script import ChapterMark
from mcp_audio.post import ops
from mcp_audio.post.dsp import Limiter
from mcp_audio.post.engine import (
    BLOCK_SIZE,
    DEFAULT_MAX_DURATION_S,
    AudioWriter,
    Block,
    db_to_gain,
    iter_blocks,
    output_rate,
    probe,
    resolve_output,
)
from mcp_audio.post.errors import PostError
from mcp_audio.post.loudness import LoudnessMeter

LIMIT = DEFAULT_MAX_DURATION_S
"""Every decode here stops once the decoded audio passes this (headers are not trusted)."""
HOP_S = 0.01
"""Hop for head/tail room tone (10 ms)."""
NOISE_WINDOW_S = 0.05
"""Window for the noise floor (50 ms)."""
NOISE_PERCENTILE = 10.0
SOUND_DB = -50.0
"""A hop louder than this (RMS, dBFS) is sound, not room tone: 10 dB over the allowed noise floor."""
FLOOR_DB = -120.0
"""Levels of digital silence are reported as this, not -inf (JSON has no infinity)."""
AUDIOBOOK_HEAD_S = 0.75
AUDIOBOOK_TAIL_S = 2.0
AUDIOBOOK_RMS_DB = -20.0
"""What `conform` aims at, inside the allowed ranges."""

_CHAPTER_RULES = ("rms", "peak", "head", "tail", "noise_floor")
"""The audiobook rules checked per chapter, in the order `_chapter_rules` reports them."""

MP3_BITRATES = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
"""MPEG-1 Layer III bit rates (kb/s) by header index."""


@dataclass(frozen=True)
class Delivery:
    """The limits of one delivery target (None: not checked)."""

    name: str
    loudness_lufs: float | None = None
    loudness_tolerance: float = 0.0
    true_peak_db: float | None = None
    sample_rate: int | None = None
    rms_db: tuple[float, float] | None = None
    peak_db: float | None = None
    noise_floor_db: float | None = None
    head_s: tuple[float, float] | None = None
    tail_s: tuple[float, float] | None = None
    mp3_kbps: int | None = None


DELIVERIES: dict[str, Delivery] = {
    "podcast": Delivery("podcast", -16.0, 1.0, -1.0, 44100),
    "broadcast": Delivery("broadcast", -23.0, 0.5, -1.0),
    "audiobook": Delivery(
        "audiobook",
        sample_rate=44100,
        rms_db=(-23.0, -18.0),
        peak_db=-3.0,
        noise_floor_db=-60.0,
        head_s=(0.5, 1.0),
        tail_s=(1.0, 5.0),
        mp3_kbps=192,
    ),
    "none": Delivery("none"),
}


def get_delivery(name: str) -> Delivery:
    """The delivery called `name`; PostError naming the choices otherwise."""
    if name not in DELIVERIES:
        raise PostError(f"unknown delivery {name!r}; choose one of {', '.join(DELIVERIES)}")
    return DELIVERIES[name]


@dataclass(frozen=True)
class RuleResult:
    """One rule checked: what it asks, what the file measures, pass or fail, and why it failed."""

    rule: str
    target: str
    measured: float | str | None
    passed: bool
    reason: str | None = None
    chapter: str | None = None


@dataclass(frozen=True)
class DeliveryReport:
    """Every rule of a delivery measured on one file."""

    delivery: str
    path: str
    rules: tuple[RuleResult, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rules)

    @property
    def failures(self) -> list[RuleResult]:
        return [r for r in self.rules if not r.passed]

    def as_dict(self) -> dict[str, Any]:
        return {"delivery": self.delivery, "passed": self.passed, "rules": [asdict(r) for r in self.rules]}


# --- measuring ------------------------------------------------------------------------------


def _db(power: float) -> float:
    return max(FLOOR_DB, 10.0 * math.log10(power)) if power > 0 else FLOOR_DB


@dataclass
class _Scan:
    """What one decoding pass keeps: per 10 ms hop the mean power and the peak."""

    rate: int
    hop: int
    power: list[NDArray[np.float64]] = field(default_factory=list)
    peak: list[NDArray[np.float32]] = field(default_factory=list)
    samples: int = 0

    def arrays(self) -> tuple[NDArray[np.float64], NDArray[np.float32]]:
        power = np.concatenate(self.power) if self.power else np.zeros(0)
        peak = np.concatenate(self.peak) if self.peak else np.zeros(0, dtype=np.float32)
        return power, peak


def _hops(blocks: Iterator[Block], rate: int) -> Iterator[Block]:
    """Re-cut blocks into whole 10 ms hops (the last may be short)."""
    hop = max(1, round(rate * HOP_S))
    carry = None
    for block in blocks:
        data = block if carry is None else np.concatenate([carry, block], axis=1)
        whole = data.shape[1] // hop * hop
        if whole:
            yield data[:, :whole]
        carry = data[:, whole:]
    if carry is not None and carry.shape[1]:
        yield carry


def _scan(blocks: Iterator[Block], rate: int, channels: int, meter: LoudnessMeter | None) -> _Scan:
    """Per-hop power and peak of a block stream (`meter`, if any, fed on the way)."""
    scan = _Scan(rate, max(1, round(rate * HOP_S)))
    for block in _hops(blocks, rate):
        if meter is not None:
            meter.add(block)
        n = block.shape[1]
        k = -(-n // scan.hop)
        padded = block if k * scan.hop == n else np.pad(block, ((0, 0), (0, k * scan.hop - n)))
        grid = padded.reshape(channels, k, scan.hop).astype(np.float64)
        counts = np.full(k, scan.hop, dtype=np.float64)
        counts[-1] = n - (k - 1) * scan.hop
        scan.power.append(np.square(grid).sum(axis=(0, 2)) / (counts * channels))
        scan.peak.append(np.abs(padded.reshape(channels, k, scan.hop)).max(axis=(0, 2)))
        scan.samples += n
    return scan


def _decoded(path: Path, rate: int, channels: int, on_packet: Callable[[Any], None] | None = None) -> Iterator[Block]:
    return iter_blocks(path, sample_rate=rate, channels=channels, max_duration_s=LIMIT, on_packet=on_packet)


class _Mp3Rates:
    """Collects the bit rate (kb/s) in the header of every MPEG-1 Layer III frame, packet by
    packet while the file is decoded for measuring (one pass, not two)."""

    def __init__(self) -> None:
        self.rates: set[int] = set()

    def __call__(self, packet: Any) -> None:
        head = bytes(memoryview(packet)[:3])
        if len(head) == 3 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
            self.rates.add(MP3_BITRATES[head[2] >> 4] if head[2] >> 4 < len(MP3_BITRATES) else -1)


def _range_rule(name: str, value: float, lo: float, hi: float, unit: str, chapter: str | None, why: str) -> RuleResult:
    ok = lo <= value <= hi
    reason = None if ok else f"{value:.2f} {unit} is {'under' if value < lo else 'over'} the range; {why}"
    return RuleResult(name, f"{lo:g} to {hi:g} {unit}", round(value, 2), ok, reason, chapter)


def _max_rule(name: str, value: float, limit: float, unit: str, chapter: str | None, why: str) -> RuleResult:
    ok = value <= limit
    reason = None if ok else f"{value:.2f} {unit} is over {limit:g} {unit}; {why}"
    return RuleResult(name, f"<= {limit:g} {unit}", round(value, 2), ok, reason, chapter)


def _chapter_rules(
    d: Delivery, power: NDArray[np.float64], peak: NDArray[np.float32], hop_s: float, title: str | None
) -> list[RuleResult]:
    rules: list[RuleResult] = []
    assert d.rms_db and d.peak_db is not None and d.noise_floor_db is not None and d.head_s and d.tail_s
    rms = _db(float(power.mean())) if power.size else FLOOR_DB
    rules.append(_range_rule("rms", rms, *d.rms_db, "dBFS", title, "change the gain (conform does)"))
    pk = 20.0 * math.log10(float(peak.max())) if peak.size and peak.max() > 0 else FLOOR_DB
    rules.append(_max_rule("peak", pk, d.peak_db, "dBFS", title, "limit the peaks (conform does)"))
    sound = np.flatnonzero(power > 10.0 ** (SOUND_DB / 10.0))
    if sound.size == 0:
        rules.append(RuleResult("head", f"{d.head_s[0]:g} to {d.head_s[1]:g} s", None, False, "no sound", title))
        rules.append(RuleResult("tail", f"{d.tail_s[0]:g} to {d.tail_s[1]:g} s", None, False, "no sound", title))
        rules.append(RuleResult("noise_floor", f"<= {d.noise_floor_db:g} dBFS", None, False, "no sound", title))
        return rules
    head = float(sound[0]) * hop_s
    tail = float(power.size - 1 - sound[-1]) * hop_s
    rules.append(_range_rule("head", head, *d.head_s, "s", title, "room tone before the first word"))
    rules.append(_range_rule("tail", tail, *d.tail_s, "s", title, "room tone after the last word"))
    per = max(1, round(NOISE_WINDOW_S / hop_s))
    inner = power[sound[0] : sound[-1] + 1]
    k = inner.size // per
    windows = inner[: k * per].reshape(k, per).mean(axis=1) if k else inner
    floor = _db(float(np.percentile(windows, NOISE_PERCENTILE))) if windows.size else FLOOR_DB
    rules.append(
        _max_rule(
            "noise_floor",
            floor,
            d.noise_floor_db,
            "dBFS",
            title,
            "the pauses between words are too noisy (hum, hiss or room noise): record or denoise before producing",
        )
    )
    return rules


def measure(path: Path, delivery: str | Delivery, *, chapters: Sequence[ChapterMark] | None = None) -> DeliveryReport:
    """Check `path` (as encoded) against a delivery: every rule with its measured value.

    For the audiobook rules, `chapters` (start/end seconds) splits the file; without them the
    whole file is one chapter.
    """
    d = get_delivery(delivery) if isinstance(delivery, str) else delivery
    rules: list[RuleResult] = []
    if d.name == "none":
        return DeliveryReport(d.name, path.name, ())
    src = probe(path, max_duration_s=DEFAULT_MAX_DURATION_S)
    channels = min(src.channels, 2)
    meter = LoudnessMeter(src.sample_rate, channels) if d.loudness_lufs is not None else None
    mp3 = _Mp3Rates() if d.mp3_kbps is not None and src.format == "mp3" else None
    scan = _scan(_decoded(path, src.sample_rate, channels, mp3), src.sample_rate, channels, meter)
    if meter is not None and d.loudness_lufs is not None:
        result = meter.result()
        lufs = result.integrated_lufs if result.integrated_lufs is not None else -70.0
        tol = d.loudness_tolerance
        rules.append(
            _range_rule(
                "loudness", lufs, d.loudness_lufs - tol, d.loudness_lufs + tol, "LUFS", None, "normalise (conform does)"
            )
        )
        if d.true_peak_db is not None:
            tp = result.true_peak_db if result.true_peak_db is not None else FLOOR_DB
            rules.append(_max_rule("true_peak", tp, d.true_peak_db, "dBTP", None, "limit the peaks (conform does)"))
    if d.rms_db is not None:
        power, peak = scan.arrays()
        hop_s = scan.hop / scan.rate
        marks = list(chapters) if chapters else [ChapterMark("", 0.0, scan.samples / scan.rate)]
        for mark in marks:
            a, b = round(mark.start_s / hop_s), min(power.size, round(mark.end_s / hop_s))
            title = mark.title or None
            rules.extend(_chapter_rules(d, power[a:b], peak[a:b], hop_s, title))
    if d.sample_rate is not None:
        ok = src.sample_rate == d.sample_rate
        reason = None if ok else f"the file is {src.sample_rate} Hz; resample (conform does)"
        rules.append(RuleResult("sample_rate", f"{d.sample_rate} Hz", src.sample_rate, ok, reason))
    if d.mp3_kbps is not None and mp3 is not None:
        rates = mp3.rates
        ok = rates == {d.mp3_kbps}
        shown = ",".join(str(r) for r in sorted(rates))
        reason = None if ok else f"frames at {shown} kb/s; encode at {d.mp3_kbps} kb/s constant bit rate"
        rules.append(RuleResult("mp3_bitrate", f"{d.mp3_kbps} kb/s CBR", f"{shown} kb/s", ok, reason))
    return DeliveryReport(d.name, path.name, tuple(rules))


# --- conforming -----------------------------------------------------------------------------

Source = Path | float
"""A piece of an audiobook chapter: an audio file, or seconds of silence."""


@dataclass(frozen=True)
class Conformed:
    """A conformed file, its chapters (audiobook: where each input landed) and its report.
    `placed` (audiobook): per chapter, where each of its sources is in the output, as
    (start_s, duration_s) (a source cut with the chapter's edges: the part that is kept)."""

    rendered: ops.Rendered
    chapters: tuple[ChapterMark, ...]
    report: DeliveryReport
    placed: tuple[tuple[tuple[float, float], ...], ...] = ()


def conform(
    inputs: Path | Sequence[Path | Sequence[Source]],
    output: Path,
    delivery: str,
    *,
    titles: Sequence[str] | None = None,
    format: str | None = None,
    codec: str | None = None,
    max_renders: int = 4,
    gap_s: float = 0.0,
) -> Conformed:
    """Write `output` meeting `delivery`, measured on the encoded file, with its report.

    podcast/broadcast: one input, through `ops.master` (BS.1770 gain, true-peak limiter, checked
    on the encoded file and rendered again with more margin if the codec broke the ceiling).
    audiobook: one input per chapter, joined in order; a chapter is a file, or its pieces in
    order (files and silences, `gap_s` of silence between two), decoded straight into the render
    (no joined copy is written). Each chapter's silence at the edges is replaced by
    `AUDIOBOOK_HEAD_S`/`AUDIOBOOK_TAIL_S` of digital silence, its gain set for `AUDIOBOOK_RMS_DB`
    and its peaks limited under the ceiling; MP3 at 192 kb/s CBR.
    none: one input, encoded as is (`ops.trim` with no cut). A rule that cannot be met (e.g. a
    noise floor the recording does not have) is reported as failed, with its reason.
    """
    d = get_delivery(delivery)
    given = [inputs] if isinstance(inputs, Path) else list(inputs)
    chapters: list[list[Source]] = [[item] if isinstance(item, Path) else list(item) for item in given]
    if not chapters:
        raise PostError("conform needs at least one input")
    if titles is not None and len(titles) != len(chapters):
        raise PostError(f"titles: {len(titles)} given for {len(chapters)} inputs")
    if d.rms_db is not None:
        return _audiobook(chapters, output, d, titles, format, codec, max_renders, gap_s)
    single = chapters[0][0]
    if len(chapters) != 1 or len(chapters[0]) != 1 or not isinstance(single, Path):
        raise PostError(f"the {d.name} delivery takes one input file; join the parts first")
    if d.loudness_lufs is not None and d.true_peak_db is not None:
        tolerance = min(0.35, d.loudness_tolerance * 0.7)
        rendered = ops.master(
            single,
            output,
            loudness_lufs=d.loudness_lufs,
            true_peak_db=d.true_peak_db,
            format=format,
            codec=codec,
            sample_rate=d.sample_rate,
            tolerance_lu=tolerance,
            max_renders=max_renders,
        )
    else:
        rendered = ops.trim(single, output, fade_s=0.0, format=format, codec=codec)
    marks: tuple[ChapterMark, ...] = ()
    return Conformed(rendered, marks, measure(rendered.path, d, chapters=marks or None))


@dataclass
class _Chapter:
    sources: list[Path | int]  # files, and silences in samples
    gap: int  # samples of silence between two sources
    title: str
    spans: list[tuple[int, int]]  # (start, length) of each source in the chapter, in samples
    keep: tuple[int, int]  # samples of the input kept: first sound to last sound
    power: float  # mean power of the kept samples
    gain_db: float = 0.0


def _silence(n: int, channels: int) -> Iterator[Block]:
    for start in range(0, n, BLOCK_SIZE):
        yield np.zeros((channels, min(BLOCK_SIZE, n - start)), dtype=np.float32)


def _chapter_blocks(
    sources: Sequence[Path | int], gap: int, rate: int, channels: int, spans: list[tuple[int, int]] | None = None
) -> Iterator[Block]:
    """A chapter's sources decoded one after another, `gap` silent samples between two; each
    source's (start, length) appended to `spans` as it ends."""
    at = 0
    for i, source in enumerate(sources):
        if i and gap:
            yield from _silence(gap, channels)
            at += gap
        start = at
        blocks = _silence(source, channels) if isinstance(source, int) else _decoded(source, rate, channels)
        for block in blocks:
            at += block.shape[1]
            yield block
        if spans is not None:
            spans.append((start, at - start))


def _analyse_chapter(sources: list[Path | int], gap: int, title: str, rate: int, channels: int) -> _Chapter:
    spans: list[tuple[int, int]] = []
    scan = _scan(_chapter_blocks(sources, gap, rate, channels, spans), rate, channels, None)
    power, _ = scan.arrays()
    sound = np.flatnonzero(power > 10.0 ** (SOUND_DB / 10.0))
    if sound.size == 0:
        named = ", ".join(s.name for s in sources if isinstance(s, Path)) or "silence"
        raise PostError(f"{named[:200]}: no sound above {SOUND_DB:g} dBFS; nothing to conform")
    a, b = int(sound[0]) * scan.hop, min(scan.samples, (int(sound[-1]) + 1) * scan.hop)
    kept = power[sound[0] : sound[-1] + 1]
    return _Chapter(sources, gap, title, spans, (a, b), float(kept.mean()))


def _placed(ch: _Chapter, start: int, head: int, rate: int) -> tuple[tuple[float, float], ...]:
    """Where each source of `ch` is in the output (seconds), the chapter starting at `start`."""
    out = []
    for a, n in ch.spans:
        lo, hi = max(a, ch.keep[0]), min(a + n, ch.keep[1])
        at = start + head + lo - ch.keep[0]
        out.append((round(at / rate, 4), round(max(0, hi - lo) / rate, 4)))
    return tuple(out)


def _audiobook(
    inputs: list[list[Source]],
    output: Path,
    d: Delivery,
    titles: Sequence[str] | None,
    format: str | None,
    codec: str | None,
    max_renders: int,
    gap_s: float,
) -> Conformed:
    assert d.peak_db is not None and d.sample_rate is not None
    output, spec = resolve_output(output, format, codec)
    files = [p for chapter in inputs for p in chapter if isinstance(p, Path)]
    if not files:
        raise PostError("conform needs at least one input file")
    for p in files:
        if p.resolve() == output.resolve():
            raise PostError(f"{output.name}: the output would overwrite an input; choose another output path")
    rate = output_rate(spec, d.sample_rate)
    channels = min(2, max(probe(p).channels for p in files))
    bitrate = d.mp3_kbps * 1000 if spec.name == "mp3" and d.mp3_kbps else None
    head, tail = round(AUDIOBOOK_HEAD_S * rate), round(AUDIOBOOK_TAIL_S * rate)
    gap = round(max(0.0, gap_s) * rate)
    chapters = [
        _analyse_chapter(
            [s if isinstance(s, Path) else round(max(0.0, s) * rate) for s in sources],
            gap,
            titles[i] if titles else f"Chapter {i + 1}",
            rate,
            channels,
        )
        for i, sources in enumerate(inputs)
    ]
    marks: list[ChapterMark] = []
    placed: list[tuple[tuple[float, float], ...]] = []
    pos = 0
    for ch in chapters:
        n = ch.keep[1] - ch.keep[0]
        total = head + n + tail
        # padding is silent: the chapter's mean power is the kept part's, diluted by the padding
        ch.gain_db = AUDIOBOOK_RMS_DB - 10.0 * math.log10(ch.power * n / total)
        marks.append(ChapterMark(ch.title, pos / rate, (pos + total) / rate))
        placed.append(_placed(ch, pos, head, rate))
        pos += total
    if pos > DEFAULT_MAX_DURATION_S * rate:  # on the decoded lengths, not the headers'
        raise PostError(f"the chapters come to {pos / rate:.0f} s; the limit is {DEFAULT_MAX_DURATION_S:.0f} s")
    margin = 1.0 if spec.lossy else 0.3

    def blocks(ceiling: float) -> Iterator[Block]:
        for ch in chapters:
            limiter = Limiter(ceiling, rate, channels)  # one per chapter: each is flushed at its end
            yield np.zeros((channels, head), dtype=np.float32)
            gain = np.float32(db_to_gain(ch.gain_db))
            at = 0
            for block in _chapter_blocks(ch.sources, ch.gap, rate, channels):
                a, b = max(ch.keep[0], at), min(ch.keep[1], at + block.shape[1])
                if b > a:
                    yield limiter.process(block[:, a - at : b - at] * gain)
                at += block.shape[1]
                if at >= ch.keep[1]:
                    break  # the rest is the silence the tail replaces
            yield limiter.flush()
            yield from _silence(tail, channels)

    rendered: ops.Rendered | None = None
    report: DeliveryReport | None = None
    for _ in range(max_renders):
        with AudioWriter(output, spec, sample_rate=rate, channels=channels, bitrate=bitrate) as writer:
            for block in blocks(db_to_gain(d.peak_db - margin)):
                writer.write(block)
            samples = writer.samples_written
        rendered = ops.Rendered(output, samples / rate, rate, channels, spec.name, spec.codec)
        report = measure(output, d, chapters=marks)
        fixes = False
        per_chapter = [r for r in report.rules if r.rule in _CHAPTER_RULES]
        for i, ch in enumerate(chapters):
            got = {r.rule: r for r in per_chapter[i * len(_CHAPTER_RULES) : (i + 1) * len(_CHAPTER_RULES)]}
            rms, peak = got.get("rms"), got.get("peak")
            if peak is not None and not peak.passed and isinstance(peak.measured, float):
                margin += peak.measured - d.peak_db + 0.3
                fixes = True
            if rms is not None and not rms.passed and isinstance(rms.measured, float):
                ch.gain_db += AUDIOBOOK_RMS_DB - rms.measured
                fixes = True
        if not fixes:
            break
    assert rendered is not None and report is not None
    # measured on the file as written, in its last render
    return Conformed(rendered, tuple(marks), report, tuple(placed))
