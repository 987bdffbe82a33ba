"""The finishing operations: join, mix, master, trim, info.

Each takes input paths and writes one output file (or returns a dict for `info`), streaming in
blocks. Output paths get the extension of their format (returned in `Rendered.path`).
Inputs of different rates or channel counts are resampled to one format.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mcp_audio.post.dsp import Ducker, Limiter, PeakSummary, ramp
from mcp_audio.post.engine import (
    BLOCK_SIZE,
    DEFAULT_MAX_DURATION_S,
    AudioWriter,
    Block,
    BlockReader,
    OutputFormat,
    SourceInfo,
    db_to_gain,
    iter_blocks,
    output_rate,
    probe,
    resolve_output,
    seconds_to_samples,
)
from mcp_audio.post.errors import PostError
from mcp_audio.post.loudness import SILENCE_LUFS, LoudnessMeter, measure_file

SAFETY_CEILING_DB = -0.3
"""join, mix and trim pass their sum through a limiter at this sample level instead of clipping."""


@dataclass(frozen=True)
class Rendered:
    """A written file: where, how long, in what format, and (for master) what it measures."""

    path: Path
    duration_s: float
    sample_rate: int
    channels: int
    format: str
    codec: str
    loudness_lufs: float | None = None
    true_peak_db: float | None = None
    gain_db: float | None = None
    passes: int = 1
    on_target: bool | None = None  # master: loudness within tolerance and true peak under the ceiling

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (path as a string)."""
        out = asdict(self)
        out["path"] = str(self.path)
        return out


def _common_format(sources: list[SourceInfo], spec: OutputFormat, sample_rate: int | None) -> tuple[int, int]:
    rate = output_rate(spec, sample_rate or max(s.sample_rate for s in sources))
    channels = min(2, max(s.channels for s in sources))
    return rate, channels


def _limited(blocks: Iterator[Block], limiter: Limiter) -> Iterator[Block]:
    for block in blocks:
        yield limiter.process(block)
    yield limiter.flush()


def _write(
    blocks: Iterator[Block], output: Path, spec: OutputFormat, rate: int, channels: int, bitrate: int | None
) -> int:
    """Encode all blocks to `output`; returns the number of samples written."""
    with AudioWriter(output, spec, sample_rate=rate, channels=channels, bitrate=bitrate) as writer:
        for block in blocks:
            writer.write(block)
        samples = writer.samples_written
    if samples == 0:
        with contextlib.suppress(OSError):
            output.unlink()
        raise PostError(f"{output.name}: the result would be empty")
    return samples


def _rendered(path: Path, samples: int, rate: int, channels: int, spec: OutputFormat, **extra: Any) -> Rendered:
    return Rendered(path, samples / rate, rate, channels, spec.name, spec.codec, **extra)


def _check_seconds(name: str, value: float, *, minimum: float = 0.0) -> None:
    if not math.isfinite(value) or value < minimum:
        raise PostError(f"{name} must be a number ≥ {minimum}, got {value!r}")


def _distinct(output: Path, inputs: list[Path]) -> None:
    """The output must not overwrite an input (inputs are read again after writing starts)."""
    target = output.resolve()
    for path in inputs:
        if path.resolve() == target:
            raise PostError(f"{output.name}: the output would overwrite an input; choose another output path")


def join(
    inputs: list[Path],
    output: Path,
    *,
    gap_s: float = 0.3,
    crossfade_s: float = 0.0,
    format: str | None = None,
    codec: str | None = None,
    sample_rate: int | None = None,
    bitrate: int | None = None,
    max_duration_s: float | None = DEFAULT_MAX_DURATION_S,
) -> Rendered:
    """Concatenate `inputs` in order into `output`.

    Between inputs: `gap_s` of silence, or, if `crossfade_s` > 0, an equal-power crossfade of
    that length (shortened where an input is shorter; the gap is then not used). The common
    format is the highest input rate (or `sample_rate`) and stereo if any input is.
    """
    if not inputs:
        raise PostError("join needs at least one input")
    _check_seconds("gap_s", gap_s)
    _check_seconds("crossfade_s", crossfade_s)
    output, spec = resolve_output(output, format, codec)
    _distinct(output, inputs)
    sources = [probe(p, max_duration_s=max_duration_s) for p in inputs]
    total_estimate = sum(s.duration_s or 0.0 for s in sources)
    if max_duration_s is not None and total_estimate > max_duration_s:  # early, from the headers
        raise PostError(f"the joined result would be {total_estimate:.0f} s; the limit is {max_duration_s:.0f} s")
    rate, channels = _common_format(sources, spec, sample_rate)
    gap = seconds_to_samples(gap_s, rate)
    fade = seconds_to_samples(crossfade_s, rate)
    # Headers can lie: the total is counted again on the decoded samples, as they come.
    total_limit = None if max_duration_s is None else seconds_to_samples(max_duration_s, rate)
    decoded = 0

    def counted(path: Path) -> Iterator[Block]:
        nonlocal decoded
        for block in iter_blocks(path, sample_rate=rate, channels=channels, max_duration_s=max_duration_s):
            decoded += block.shape[1]
            if total_limit is not None and decoded > total_limit:
                raise PostError(
                    f"{path.name}: the joined inputs pass the limit of {max_duration_s:.0f} s of decoded audio "
                    f"here (their headers claimed {total_estimate:.0f} s in all)"
                )
            yield block

    def blocks() -> Iterator[Block]:
        tail: Block | None = None  # held back from the previous input, to crossfade
        for i, path in enumerate(inputs):
            reader = BlockReader(counted(path), channels)
            if i > 0 and fade and tail is not None:
                head = reader.read(tail.shape[1])
                k = min(tail.shape[1], head.shape[1])
                yield tail[:, : tail.shape[1] - k]
                t = (np.arange(k, dtype=np.float64) + 0.5) / max(k, 1)
                fade_in = np.sin(0.5 * np.pi * t).astype(np.float32)
                fade_out = np.cos(0.5 * np.pi * t).astype(np.float32)
                yield tail[:, tail.shape[1] - k :] * fade_out + head[:, :k] * fade_in
                yield head[:, k:]
            elif i > 0 and gap and not fade:
                for start in range(0, gap, BLOCK_SIZE):
                    yield np.zeros((channels, min(BLOCK_SIZE, gap - start)), dtype=np.float32)
            last = i == len(inputs) - 1
            if fade and not last:
                held: list[Block] = []
                held_n = 0
                for block in reader:
                    held.append(block)
                    held_n += block.shape[1]
                    while held_n - held[0].shape[1] >= fade:
                        first = held.pop(0)
                        held_n -= first.shape[1]
                        yield first
                joined = np.concatenate(held, axis=1) if held else np.zeros((channels, 0), dtype=np.float32)
                cut = max(0, joined.shape[1] - fade)
                yield joined[:, :cut]
                tail = joined[:, cut:]
            else:
                yield from reader

    limiter = Limiter(db_to_gain(SAFETY_CEILING_DB), rate, channels)
    samples = _write(_limited(blocks(), limiter), output, spec, rate, channels, bitrate)
    return _rendered(output, samples, rate, channels, spec)


class _Looped:
    """Reads a file again from the start whenever it ends (a music bed). A bed whose header says
    at most `CACHE_S` seconds is decoded once and kept (≤ 23 MB at 48 kHz stereo) if its decoded
    length says so too: past `CACHE_S` the decoding stops and the bed is streamed instead (a
    header can lie; the decoded samples cannot). A streamed bed is read only as far as the
    output needs, so its own length never costs memory."""

    CACHE_S = 60.0

    def __init__(self, path: Path, rate: int, channels: int, duration_s: float | None) -> None:
        self._args = (path, rate, channels)
        self._cache: Block | None = None
        self._pos = 0
        if duration_s is not None and duration_s <= self.CACHE_S:
            self._cache = self._decode_whole(seconds_to_samples(self.CACHE_S, rate))
        self._reader = self._open() if self._cache is None else None

    def _decode_whole(self, limit: int) -> Block | None:
        """The whole bed, or None (having decoded no more than `limit` samples) if it is longer."""
        reader = self._open()
        head = reader.read(limit + 1)
        reader.close()
        return None if head.shape[1] > limit else head

    def _open(self) -> BlockReader:
        path, rate, channels = self._args
        blocks = iter_blocks(path, sample_rate=rate, channels=channels, max_duration_s=None)
        return BlockReader(blocks, channels)

    def _read_once(self, n: int) -> Block:
        if self._cache is None:
            assert self._reader is not None
            out = self._reader.read(n)
            if out.shape[1] < n:
                self._reader = self._open()
            return out
        out = self._cache[:, self._pos : self._pos + n]
        self._pos = (self._pos + out.shape[1]) % self._cache.shape[1]
        return out

    def read(self, n: int) -> Block:
        parts = [self._read_once(n)]
        got = parts[0].shape[1]
        while got < n:
            more = self._read_once(n - got)
            parts.append(more)
            got += more.shape[1]
        return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]


def mix(
    voice: Path,
    music: Path,
    output: Path,
    *,
    music_gain_db: float = -18.0,
    duck_db: float = 10.0,
    fade_in_s: float = 1.0,
    fade_out_s: float = 2.0,
    format: str | None = None,
    codec: str | None = None,
    sample_rate: int | None = None,
    bitrate: int | None = None,
    max_duration_s: float | None = DEFAULT_MAX_DURATION_S,
) -> Rendered:
    """Narration over a music bed.

    The output is `fade_in_s` of music fading in, then the voice (unchanged) over the bed, then
    `fade_out_s` of the bed fading out: fade_in_s + voice length + fade_out_s long. The bed is
    the music at `music_gain_db`, looped or cut to fit, and `duck_db` lower while the voice
    speaks (envelope follower on the voice: 15 ms attack, 200 ms hold, 300 ms release).
    """
    for name, value in (("fade_in_s", fade_in_s), ("fade_out_s", fade_out_s), ("duck_db", duck_db)):
        _check_seconds(name, value)
    if not math.isfinite(music_gain_db):
        raise PostError(f"music_gain_db must be a number, got {music_gain_db!r}")
    output, spec = resolve_output(output, format, codec)
    _distinct(output, [voice, music])
    v_src = probe(voice, max_duration_s=max_duration_s)
    m_src = probe(music, max_duration_s=None)
    rate, channels = _common_format([v_src, m_src], spec, sample_rate)
    lead = seconds_to_samples(fade_in_s, rate)
    tail = seconds_to_samples(fade_out_s, rate)
    ducker = Ducker(rate, duck_db)
    block_n = ducker.hop * 100
    voice_reader = BlockReader(
        iter_blocks(voice, sample_rate=rate, channels=channels, max_duration_s=max_duration_s), channels
    )
    bed = _Looped(music, rate, channels, m_src.duration_s)
    bed_gain = db_to_gain(music_gain_db)
    out_limit = None if max_duration_s is None else seconds_to_samples(max_duration_s, rate)

    def blocks() -> Iterator[Block]:
        pos = 0
        voice_end: int | None = None
        while True:
            parts: list[Block] = []
            want = block_n
            if pos < lead:  # lead-in: no voice yet
                k = min(want, lead - pos)
                parts.append(np.zeros((channels, k), dtype=np.float32))
                want -= k
            if want and voice_end is None:
                v = voice_reader.read(want)
                parts.append(v)
                want -= v.shape[1]
                if want:
                    voice_end = pos + sum(p.shape[1] for p in parts)
            if want and voice_end is not None:
                k = min(want, voice_end + tail - pos - sum(p.shape[1] for p in parts))
                if k > 0:
                    parts.append(np.zeros((channels, k), dtype=np.float32))
            if not parts:
                return
            v_block = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
            n = v_block.shape[1]
            if n == 0:
                return
            if out_limit is not None and pos + n > out_limit:  # the fades count too
                raise PostError(
                    f"the mixed result (fade_in_s + the voice + fade_out_s) would pass the limit of "
                    f"{max_duration_s:.0f} s"
                )
            gain = ducker.gains(v_block) * ramp(pos, n, 0, lead, rising=True) * bed_gain
            if voice_end is not None:
                gain = gain * ramp(pos, n, voice_end, tail, rising=False)
            yield v_block + bed.read(n) * gain
            pos += n

    limiter = Limiter(db_to_gain(SAFETY_CEILING_DB), rate, channels)
    samples = _write(_limited(blocks(), limiter), output, spec, rate, channels, bitrate)
    return _rendered(output, samples, rate, channels, spec)


def trim(
    input: Path,
    output: Path,
    *,
    start_s: float = 0.0,
    end_s: float | None = None,
    fade_s: float = 0.01,
    format: str | None = None,
    codec: str | None = None,
    bitrate: int | None = None,
    max_duration_s: float | None = DEFAULT_MAX_DURATION_S,
) -> Rendered:
    """Keep [start_s, end_s) of `input` (to its end if `end_s` is None), with linear fades of
    `fade_s` at both cuts so they do not click. Rate and channels are kept (where the output
    codec allows). Raises PostError if the range is empty or starts past the end.
    """
    _check_seconds("start_s", start_s)
    _check_seconds("fade_s", fade_s)
    if end_s is not None and (not math.isfinite(end_s) or end_s <= start_s):
        raise PostError(f"end_s ({end_s!r}) must be greater than start_s ({start_s!r})")
    output, spec = resolve_output(output, format, codec)
    _distinct(output, [input])
    src = probe(input, max_duration_s=max_duration_s)
    rate = output_rate(spec, src.sample_rate)
    channels = min(2, src.channels)
    first = seconds_to_samples(start_s, rate)
    last = None if end_s is None else seconds_to_samples(end_s, rate)
    fade = seconds_to_samples(fade_s, rate)

    def kept() -> Iterator[Block]:
        pos = 0
        for block in iter_blocks(input, sample_rate=rate, channels=channels, max_duration_s=max_duration_s):
            n = block.shape[1]
            lo, hi = max(first, pos), min(pos + n, last if last is not None else pos + n)
            if hi > lo:
                yield block[:, lo - pos : hi - pos]
            pos += n
            if last is not None and pos >= last:
                return
        if pos <= first:
            raise PostError(f"{input.name}: start_s {start_s} is at or past the end ({pos / rate:.3f} s)")

    def faded() -> Iterator[Block]:
        held: list[Block] = []
        held_n = 0
        pos = 0
        for block in kept():
            block = block * ramp(pos, block.shape[1], 0, fade, rising=True)
            pos += block.shape[1]
            held.append(block)
            held_n += block.shape[1]
            while held and held_n - held[0].shape[1] >= fade:
                first_block = held.pop(0)
                held_n -= first_block.shape[1]
                yield first_block
        rest = np.concatenate(held, axis=1) if held else np.zeros((channels, 0), dtype=np.float32)
        k = min(fade, rest.shape[1])
        rest[:, rest.shape[1] - k :] *= ramp(0, k, 0, k, rising=False)
        yield rest

    samples = _write(faded(), output, spec, rate, channels, bitrate)
    return _rendered(output, samples, rate, channels, spec)


def info(path: Path, *, peaks: int = 100, max_duration_s: float | None = DEFAULT_MAX_DURATION_S) -> dict[str, Any]:
    """Describe an audio file, decoding it once.

    Returns duration_s (exact, from the decoded samples), sample_rate, channels, format
    (mp3, wav, flac, ogg, m4a, ...), codec, bit_rate, loudness_lufs (BS.1770 integrated; None if
    silent), true_peak_db (None if silent) and `peaks`: `peaks` values (clamped to 50..200)
    in 0..1, each the max |sample| of its slice of the file.
    """
    count = min(200, max(50, peaks))
    src = probe(path, max_duration_s=max_duration_s)
    channels = min(2, src.channels)
    meter = LoudnessMeter(src.sample_rate, channels)
    summary = PeakSummary()
    for block in iter_blocks(path, sample_rate=src.sample_rate, channels=channels, max_duration_s=max_duration_s):
        meter.add(block)
        summary.add(block)
    result = meter.result()
    return {
        "duration_s": result.samples / src.sample_rate,
        "sample_rate": src.sample_rate,
        "channels": src.channels,
        "format": src.format,
        "codec": src.codec,
        "bit_rate": src.bit_rate,
        "loudness_lufs": result.integrated_lufs,
        "true_peak_db": result.true_peak_db,
        "peaks": [round(p, 4) for p in summary.peaks(count)],
    }


def master(
    input: Path,
    output: Path,
    *,
    loudness_lufs: float = -16.0,
    true_peak_db: float = -1.0,
    format: str | None = None,
    codec: str | None = None,
    sample_rate: int | None = None,
    trim_silence: bool = False,
    bitrate: int | None = None,
    max_duration_s: float | None = DEFAULT_MAX_DURATION_S,
    tolerance_lu: float = 0.35,
    max_renders: int = 4,
) -> Rendered:
    """Normalise to `loudness_lufs` (BS.1770 integrated) with true peaks under `true_peak_db`,
    both as measured on the encoded output file.

    1. Analysis: the input's integrated loudness (and, for `trim_silence`, where it is silent).
    2. Render: gain, then a look-ahead limiter with its ceiling below `true_peak_db` by a
       margin (1 dB for lossy codecs, whose encoding adds peaks; 0.1 dB otherwise), measured
       before encoding. For lossy formats, a render without encoding first corrects the gain
       for what the limiter takes off and for what the codec changes (measured by encoding
       one block in 12 and decoding it), so the slow encoder usually runs once.
    3. Encode, then decode the written file and measure it. If loudness is off by more than
       `tolerance_lu` or the true peak is not under the ceiling, correct gain and margin and
       render again (at most `max_renders` renders). If the last still breaks the ceiling (a
       loud target on dense material, where encoders add the most peaks), it is rendered
       lower until the encoded file holds the ceiling: the ceiling is never traded for loudness.

    `trim_silence` cuts leading and trailing silence (50 ms windows whose RMS is near the noise
    floor, see `_analyse`), keeping 0.5 s. Otherwise the duration is kept exactly (gapless MP3
    header, AAC edit list, Opus pre-skip). The result's loudness_lufs and true_peak_db are the
    output file's, and `on_target` says whether both met the targets (False only if the
    renders ran out, e.g. a loudness the ceiling makes unreachable). Raises PostError for
    silent or too short input.
    """
    if not (-70.0 < loudness_lufs < 0.0):
        raise PostError(f"loudness_lufs must be between -70 and 0, got {loudness_lufs!r}")
    if not (-20.0 <= true_peak_db <= 0.0):
        raise PostError(f"true_peak_db must be between -20 and 0, got {true_peak_db!r}")
    if max_renders < 1:
        raise PostError(f"max_renders must be at least 1, got {max_renders}")
    output, spec = resolve_output(output, format, codec)
    _distinct(output, [input])
    src = probe(input, max_duration_s=max_duration_s)
    rate = output_rate(spec, sample_rate or src.sample_rate)
    channels = min(2, src.channels)

    def source() -> Iterator[Block]:
        return iter_blocks(input, sample_rate=rate, channels=channels, max_duration_s=max_duration_s)

    measured, (lo, hi) = _analyse(input, source(), rate, channels, trim_silence)
    gain_db = loudness_lufs - measured

    def render(gain_db: float, margin: float, encode: bool, probe_codec: bool = False) -> tuple[float, int, float]:
        """One pass: returns the loudness before encoding (dry renders only), the samples
        written, and (with `probe_codec`) how much the codec changes the loudness of excerpts
        (1 block in 12)."""
        limiter = Limiter(db_to_gain(true_peak_db - margin), rate, channels)
        meter = None if encode else LoudnessMeter(rate, channels, true_peak=False)  # encoded: the file is measured
        excerpt_meter = LoudnessMeter(rate, channels, true_peak=False)
        probe_path = output.with_name(f".{output.stem}.codec-probe{spec.extension}")
        excerpts = (
            AudioWriter(probe_path, spec, sample_rate=rate, channels=channels, bitrate=bitrate) if probe_codec else None
        )
        gain = np.float32(db_to_gain(gain_db))

        def blocks() -> Iterator[Block]:
            pos = 0
            index = 0
            for block in source():
                n = block.shape[1]
                a, b = max(lo, pos), min(hi, pos + n)
                if b > a:
                    out = limiter.process(block[:, a - pos : b - pos] * gain)
                    if meter is not None:
                        meter.add(out)
                    if excerpts is not None and index % 12 == 0:
                        excerpts.write(out)
                        excerpt_meter.add(out)
                    index += 1
                    yield out
                pos += n
            out = limiter.flush()
            if meter is not None:
                meter.add(out)
            yield out

        shift = 0.0
        try:
            if encode:
                samples = _write(blocks(), output, spec, rate, channels, bitrate)
            else:
                samples = sum(block.shape[1] for block in blocks())
            if excerpts is not None:
                excerpts.close()
                before = excerpt_meter.result().integrated_lufs
                after = measure_file(probe_path, true_peak=False, max_duration_s=None).integrated_lufs
                if before is not None and after is not None:
                    shift = after - before
        finally:
            if excerpts is not None:
                excerpts.abort()
                probe_path.unlink(missing_ok=True)
        pre = meter.result().integrated_lufs if meter is not None else None
        return (pre if pre is not None else SILENCE_LUFS), samples, shift

    margin = 1.0 if spec.lossy else 0.1
    renders = 0
    codec_shift = 0.0
    if spec.lossy:
        while renders < max_renders - 1:
            pre, _, shift = render(gain_db, margin, encode=False, probe_codec=renders == 0)
            if renders == 0:
                codec_shift = shift
            renders += 1
            aim = loudness_lufs - codec_shift  # the encoder will add codec_shift
            gain_db += aim - pre
            if abs(aim - pre) <= 1.0:  # the rest is near-linear; the encoded file is checked anyway
                break
    result: Rendered | None = None
    peak_ok, peak, extra = False, math.inf, 0
    last_gain, last_margin = gain_db, margin
    while renders < max_renders or (not peak_ok and extra < _CEILING_RENDERS):
        if renders >= max_renders:
            # Out of renders with the ceiling broken: lower everything (gain and limiter ceiling
            # alike, so the limited signal is the same, only quieter) by the overshoot and more.
            # The ceiling is a promise; the loudness then falls short and on_target says so.
            cut = peak - true_peak_db + _CEILING_AIM_DB
            gain_db, margin, extra = last_gain - cut, last_margin + cut, extra + 1
        last_gain, last_margin = gain_db, margin
        pre, samples, _ = render(gain_db, margin, encode=True)
        renders += 1
        final = measure_file(output, max_duration_s=None)
        result = _rendered(
            output,
            samples,
            rate,
            channels,
            spec,
            loudness_lufs=final.integrated_lufs,
            true_peak_db=final.true_peak_db,
            gain_db=round(gain_db, 3),
            passes=renders,
        )
        lufs = final.integrated_lufs if final.integrated_lufs is not None else SILENCE_LUFS
        peak = final.true_peak_db if final.true_peak_db is not None else -math.inf
        peak_ok = peak <= true_peak_db - _CEILING_GUARD_DB
        on_target = abs(lufs - loudness_lufs) <= tolerance_lu and peak_ok
        result = replace(result, on_target=on_target)
        if on_target:
            break
        if not peak_ok:
            margin += peak - true_peak_db + 0.3
        gain_db += loudness_lufs - lufs
    assert result is not None
    return result  # the last render; its fields are what the file measures


# Our meter and another 4x-oversampling one differ by up to ~0.1 dB on encoded files: the peak
# must be this far under the ceiling; a lowering render aims further under, and up to this many run.
_CEILING_GUARD_DB = 0.15
_CEILING_AIM_DB = 0.4
_CEILING_RENDERS = 3


def _analyse(
    path: Path, blocks: Iterator[Block], rate: int, channels: int, find_content: bool
) -> tuple[float, tuple[int, int]]:
    """Integrated loudness of the input and the sample range to keep (all of it unless
    `find_content`: then from 0.5 s before the first to 0.5 s after the last loud window).

    Loud is by short-window RMS (50 ms, in 10 ms hops), not single sample peaks, over a
    threshold 10 dB above the recording's noise floor (its quietest windows) and at least
    40 dB under its loudness, but never less than 20 dB under it: a room's hiss up to
    -50 dBFS is silence, the quiet start of speech is not."""
    meter = LoudnessMeter(rate, channels, true_peak=False)
    hop = max(1, rate // 100)
    hop_power: list[NDArray[np.float64]] = []  # mean square of each 10 ms hop, channels averaged
    carry = np.zeros((channels, 0), dtype=np.float32)
    for block in blocks:
        meter.add(block)
        if find_content:
            data = np.concatenate([carry, block], axis=1) if carry.shape[1] else block
            whole = data.shape[1] // hop * hop
            if whole:
                squares = np.square(data[:, :whole], dtype=np.float64).mean(axis=0)
                hop_power.append(squares.reshape(-1, hop).mean(axis=1))
            carry = data[:, whole:]
    if carry.shape[1]:
        hop_power.append(np.square(carry, dtype=np.float64).mean(keepdims=True).reshape(1))
    measured = meter.result()
    if measured.samples < rate * 0.4:
        raise PostError(f"{path.name}: is shorter than 0.4 s, too short to measure its loudness (BS.1770)")
    if measured.integrated_lufs is None:
        raise PostError(f"{path.name}: the audio is silent (below -70 LUFS); there is nothing to normalise")
    total = measured.samples
    if not find_content or not hop_power:
        return measured.integrated_lufs, (0, total)
    power = np.concatenate(hop_power)
    span = min(_WINDOW_HOPS, power.shape[0])
    windows_db = 10 * np.log10(np.convolve(power, np.ones(span) / span, mode="valid") + 1e-20)
    floor_db = float(np.percentile(windows_db, 5))
    loudness = measured.integrated_lufs
    threshold = min(max(floor_db + 10.0, loudness - 40.0, -70.0), loudness - 20.0)
    loud = np.flatnonzero(windows_db > threshold)
    if loud.shape[0] == 0:
        return loudness, (0, total)
    keep = rate // 2
    first, last = int(loud[0]) * hop, (int(loud[-1]) + span) * hop  # window i covers hops i .. i+span-1
    return loudness, (max(0, first - keep), min(total, last + keep))


_WINDOW_HOPS = 5  # 50 ms loudness windows for trim_silence
