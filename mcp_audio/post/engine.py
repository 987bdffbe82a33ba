"""Decode and encode audio files in blocks (PyAV: FFmpeg's libraries, no system install).

A signal inside the engine is a float32 numpy array shaped (channels, samples), values in
-1..1 (beyond only transiently, before a limiter). `iter_blocks` decodes any file FFmpeg
reads into such blocks at a requested rate and channel count; `AudioWriter` encodes them to
one of `FORMATS`, writing a temporary file that replaces the output only when complete.
Every FFmpeg failure becomes a `PostError` naming the file.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import threading
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import av
import av.error
import numpy as np
from numpy.typing import NDArray

from mcp_audio.core.media import sniff_content_type
from mcp_audio.post.errors import PostError
from mcp_audio.post.progress import tracked

Block = NDArray[np.float32]

BLOCK_SIZE = 65536
"""Samples per channel in a block: ~1.4 s at 48 kHz; memory stays a few MB per stream."""

DEFAULT_MAX_DURATION_S = 4 * 3600.0
"""Inputs longer than this are refused unless the caller passes another `max_duration_s`."""

T = TypeVar("T")
_DONE = object()


@dataclass(frozen=True)
class OutputFormat:
    """How one output format is written: container, codec, file extension, allowed rates."""

    name: str
    container: str
    codec: str
    extension: str
    rates: tuple[int, ...] | None  # None: any rate up to 192 kHz
    lossy: bool
    bitrate_per_channel: int | None  # bits/s per channel for lossy codecs


FORMATS: dict[str, OutputFormat] = {
    "mp3": OutputFormat("mp3", "mp3", "libmp3lame", ".mp3", (48000, 44100, 32000, 24000, 22050, 16000), True, 96000),
    "wav": OutputFormat("wav", "wav", "pcm_s16le", ".wav", None, False, None),
    "flac": OutputFormat("flac", "flac", "flac", ".flac", None, False, None),
    "ogg": OutputFormat("ogg", "ogg", "libopus", ".ogg", (48000,), True, 64000),
    "m4a": OutputFormat("m4a", "ipod", "aac", ".m4a", (96000, 48000, 44100, 32000, 24000, 22050, 16000), True, 96000),
}
"""Output formats. m4a is AAC unless `codec="alac"`; ogg is Opus (the PyAV wheels carry no
libvorbis, and FFmpeg's own Vorbis encoder is experimental)."""

CODEC_CHOICES: dict[str, tuple[str, ...]] = {
    "mp3": ("libmp3lame",),
    "wav": ("pcm_s16le", "pcm_s24le"),
    "flac": ("flac",),
    "ogg": ("libopus",),
    "m4a": ("aac", "alac"),
}
_LOSSLESS_CODECS = ("pcm_s16le", "pcm_s24le", "flac", "alac")


@dataclass(frozen=True)
class SourceInfo:
    """What the container says about an input before decoding it."""

    path: Path
    format: str  # short name: mp3, wav, flac, ogg, m4a, or FFmpeg's demuxer name
    codec: str
    sample_rate: int
    channels: int
    duration_s: float | None  # the container's estimate; exact lengths come from decoding
    bit_rate: int | None


def short_format_name(demuxer: str, codec: str) -> str:
    """Our format name for an FFmpeg demuxer name ('mov,mp4,m4a,...' -> 'm4a')."""
    names = demuxer.split(",")
    if "mp4" in names or "mov" in names:
        return "m4a"
    for ours in ("mp3", "wav", "flac", "ogg"):
        if ours in names:
            return ours
    if codec == "opus" and "webm" in names:
        return "webm"
    return names[0]


def _layout(channels: int) -> str:
    return "mono" if channels == 1 else "stereo"


def _fail(path: Path, problem: str, exc: BaseException | None = None) -> PostError:
    detail = f" ({exc})" if exc is not None and str(exc) else ""
    return PostError(f"{path.name}: {problem}{detail}")


# FFmpeg reads up to 5 MB of an input to learn its streams' parameters. A WAV header states them
# all, yet finding them in 5 s of PCM cost about 20 ms a file (other formats: under 0.5 ms), and a
# render opens each input several times; reading 32 KB gives the same format, codec, rate,
# channels, duration and bit rate (checked on WAV, MP3, M4A, FLAC, Opus, ADTS AAC and WebM).
WAV_PROBE = {"probesize": "32768"}


def _open_input(path: Path) -> Any:
    if not path.exists():
        raise _fail(path, "file not found")
    if path.is_dir():
        raise _fail(path, "is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise _fail(path, "file is empty")
    try:
        with path.open("rb") as file:
            wav = sniff_content_type(file.read(12)) == "audio/wav"
        return av.open(str(path), "r", options=WAV_PROBE if wav else {})
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise _fail(path, "not a readable audio file", exc) from exc


MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 4000, 768000
"""Input sample rates read (FFmpeg's meters and resamplers fail on absurd ones such as 1 Hz)."""


def _audio_stream(path: Path, container: Any) -> Any:
    if not container.streams.audio:
        container.close()
        raise _fail(path, "has no audio stream")
    stream = container.streams.audio[0]
    ctx = stream.codec_context
    problem = None
    if ctx is None:  # e.g. a WAV header saying 0 bits per sample: FFmpeg has no decoder for it
        problem = "its audio stream cannot be decoded (an unknown codec, or a header such as 0 bits per sample)"
    elif not ctx.sample_rate or not ctx.channels:
        problem = "audio stream has no sample rate or channel count"
    elif not MIN_SAMPLE_RATE <= ctx.sample_rate <= MAX_SAMPLE_RATE:
        problem = (
            f"its sample rate is {ctx.sample_rate} Hz; rates from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz are read"
        )
    if problem is not None:
        container.close()
        raise _fail(path, problem)
    return stream


def _check_duration(path: Path, seconds: float | None, max_duration_s: float | None) -> None:
    if max_duration_s is not None and seconds is not None and seconds > max_duration_s:
        raise _fail(path, f"is {seconds:.1f} s long; the limit is {max_duration_s:.0f} s")


def probe(path: Path, *, max_duration_s: float | None = DEFAULT_MAX_DURATION_S) -> SourceInfo:
    """Read an input's header: format, codec, rate, channels, estimated duration.

    Raises PostError if the file is missing, empty, not audio, or longer than `max_duration_s`.
    """
    container = _open_input(path)
    try:
        stream = _audio_stream(path, container)
        ctx = stream.codec_context
        duration: float | None = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        info = SourceInfo(
            path=path,
            format=short_format_name(container.format.name, ctx.name),
            codec=ctx.name,
            sample_rate=int(ctx.sample_rate),
            channels=int(ctx.channels),
            duration_s=duration,
            bit_rate=int(container.bit_rate) if container.bit_rate else None,
        )
    finally:
        container.close()
    _check_duration(path, info.duration_s, max_duration_s)
    return info


def _frame_to_array(frame: Any) -> Block:
    """A decoded fltp frame as (channels, samples) float32."""
    arr = frame.to_ndarray()
    return np.asarray(arr, dtype=np.float32)


def iter_blocks(
    path: Path,
    *,
    sample_rate: int,
    channels: int,
    block_size: int = BLOCK_SIZE,
    max_duration_s: float | None = DEFAULT_MAX_DURATION_S,
    on_packet: Callable[[Any], None] | None = None,
) -> Iterator[Block]:
    """Decode `path` into float32 blocks, in a worker thread a few blocks ahead (see
    `decode_blocks` for the details), counted as one pass of the running render, if any (which
    raises RenderStopped here once it is stopped)."""
    blocks = prefetch(
        decode_blocks(
            path,
            sample_rate=sample_rate,
            channels=channels,
            block_size=block_size,
            max_duration_s=max_duration_s,
            on_packet=on_packet,
        )
    )
    return tracked(blocks, sample_rate, lambda: probe(path, max_duration_s=None).duration_s)


def decode_blocks(
    path: Path,
    *,
    sample_rate: int,
    channels: int,
    block_size: int = BLOCK_SIZE,
    max_duration_s: float | None = DEFAULT_MAX_DURATION_S,
    on_packet: Callable[[Any], None] | None = None,
) -> Iterator[Block]:
    """Decode `path` into float32 blocks of `block_size` samples (the last may be shorter).

    The audio is resampled to `sample_rate` and mixed to `channels` (1 or 2): mono becomes
    stereo by duplication, more channels are downmixed by FFmpeg's matrix.
    Encoder padding is dropped: MP3 (LAME header) and Opus by FFmpeg's decoders, MP4/M4A by
    the stream duration from the edit list. Raises PostError for unreadable input, for input
    with no samples, and when the decoded length passes `max_duration_s`. `on_packet` sees every
    encoded packet as it is read (in the decoding thread): a check of the bitstream costs no second
    pass over the file.
    """
    container = _open_input(path)
    try:
        stream = _audio_stream(path, container)
        ctx = stream.codec_context
        limit = None if max_duration_s is None else int(max_duration_s * sample_rate) + 1
        cap: int | None = None  # total samples at the output rate, for MP4 edit lists
        if short_format_name(container.format.name, ctx.name) == "m4a" and stream.duration and stream.time_base:
            cap = round(float(stream.duration * stream.time_base) * sample_rate)
        # mono to stereo by duplication (players do the same; swresample would pan it at -3 dB)
        decode_channels = 1 if ctx.channels == 1 else channels
        duplicate = channels == 2 and decode_channels == 1
        resampler = av.AudioResampler(format="fltp", layout=_layout(decode_channels), rate=sample_rate)
        pending: list[Block] = []
        pending_n = 0
        total = 0

        def decoded() -> Iterator[Any]:
            if on_packet is None:
                yield from container.decode(stream)
                return
            for packet in container.demux(stream):
                if packet.size:
                    on_packet(packet)
                yield from packet.decode()

        def frames() -> Iterator[Any]:
            for frame in decoded():
                if (
                    frame.format.name == "fltp"
                    and frame.sample_rate == sample_rate
                    and frame.layout.nb_channels == decode_channels
                ):
                    yield frame
                else:
                    yield from resampler.resample(frame)
            yield from resampler.resample(None)

        try:
            for frame in frames():
                arr = _frame_to_array(frame)
                if duplicate:
                    arr = np.repeat(arr, 2, axis=0)
                if cap is not None:
                    arr = arr[:, : max(0, cap - total)]
                if arr.shape[1] == 0:
                    continue
                total += arr.shape[1]
                if limit is not None and total > limit:
                    raise _fail(path, f"is longer than the limit of {max_duration_s:.0f} s")
                pending.append(arr)
                pending_n += arr.shape[1]
                while pending_n >= block_size:
                    joined = np.concatenate(pending, axis=1) if len(pending) > 1 else pending[0]
                    yield np.ascontiguousarray(joined[:, :block_size])
                    rest = joined[:, block_size:]
                    pending = [rest] if rest.shape[1] else []
                    pending_n = rest.shape[1]
        except (av.error.FFmpegError, OSError) as exc:
            raise _fail(path, "could not be decoded", exc) from exc
        if pending_n:
            yield np.ascontiguousarray(np.concatenate(pending, axis=1))
        if total == 0:
            raise _fail(path, "contains no audio samples")
    finally:
        container.close()


def prefetch(items: Iterator[T], depth: int = 4) -> Generator[T]:
    """Run `items` in a worker thread, `depth` items ahead (decoding overlaps the caller's work:
    FFmpeg and numpy release the GIL). Exceptions reach the caller; closing the generator
    early stops the worker."""
    slots: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        slots.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put(_DONE)
        except BaseException as exc:  # handed to the consumer
            slots.put(exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()

    worker = threading.Thread(target=work, name="post-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                slots.get_nowait()
        worker.join()


class BlockReader:
    """Reads exact sample counts from a block iterator (fewer only at the end of the stream)."""

    def __init__(self, blocks: Iterator[Block], channels: int) -> None:
        self._blocks = blocks
        self._channels = channels
        self._buf: list[Block] = []
        self._buf_n = 0
        self.exhausted = False

    def read(self, n: int) -> Block:
        """The next `n` samples, or what is left (possibly none) at the end."""
        while self._buf_n < n and not self.exhausted:
            try:
                block = next(self._blocks)
            except StopIteration:
                self.exhausted = True
                break
            self._buf.append(block)
            self._buf_n += block.shape[1]
        if not self._buf:
            return np.zeros((self._channels, 0), dtype=np.float32)
        joined = np.concatenate(self._buf, axis=1) if len(self._buf) > 1 else self._buf[0]
        out, rest = joined[:, :n], joined[:, n:]
        self._buf = [rest] if rest.shape[1] else []
        self._buf_n = rest.shape[1]
        return out

    def close(self) -> None:
        """Stop decoding now (the decoder thread ends), not when the reader is collected."""
        close = getattr(self._blocks, "close", None)
        if close is not None:
            close()
        self.exhausted = True

    def __iter__(self) -> Iterator[Block]:
        while True:
            block = self.read(BLOCK_SIZE)
            if block.shape[1] == 0:
                return
            yield block


def resolve_output(output: Path, format: str | None, codec: str | None = None) -> tuple[Path, OutputFormat]:
    """The output path (its extension made to match the format) and the format to write.

    `format` defaults to the output's extension. Raises PostError for an unknown format or codec.
    """
    name = (format or output.suffix.lstrip(".")).lower()
    if name == "opus":
        name = "ogg"
    if name not in FORMATS:
        raise PostError(f"unknown output format {name!r}; choose one of {', '.join(FORMATS)}")
    spec = FORMATS[name]
    if codec is not None:
        if codec not in CODEC_CHOICES[name]:
            raise PostError(f"codec {codec!r} is not available for {name}; choose one of {CODEC_CHOICES[name]}")
        spec = OutputFormat(
            spec.name,
            spec.container,
            codec,
            spec.extension,
            None if codec in _LOSSLESS_CODECS else spec.rates,
            codec not in _LOSSLESS_CODECS,
            None if codec in _LOSSLESS_CODECS else spec.bitrate_per_channel,
        )
    if output.suffix.lower() != spec.extension:
        output = output.with_suffix(spec.extension)
    return output, spec


def output_rate(spec: OutputFormat, wanted: int) -> int:
    """`wanted` if the codec takes it, else the nearest rate it takes (the next higher first)."""
    if spec.rates is None:
        return min(max(wanted, 8000), 192000)
    if wanted in spec.rates:
        return wanted
    higher = [r for r in spec.rates if r > wanted]
    return min(higher) if higher else max(spec.rates)


class AudioWriter:
    """Encodes float32 blocks to a file; the output appears only when `close()` succeeds.

    Use as a context manager: an exception inside the block removes the partial file.
    """

    def __init__(
        self,
        output: Path,
        spec: OutputFormat,
        *,
        sample_rate: int,
        channels: int,
        bitrate: int | None = None,
    ) -> None:
        self.output = output
        self.spec = spec
        self.sample_rate = sample_rate
        self.channels = channels
        self.samples_written = 0
        output.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = output.with_name(f".{output.stem}.{uuid.uuid4().hex[:8]}{spec.extension}.part")
        try:
            self._container: Any = av.open(str(self._tmp), "w", format=spec.container)
            stream: Any = self._container.add_stream(spec.codec, rate=sample_rate, layout=_layout(channels))
            if spec.lossy and spec.bitrate_per_channel:
                stream.bit_rate = bitrate or spec.bitrate_per_channel * channels
            if spec.codec == "libmp3lame":
                # LAME's -q 7, its documented fast mode: half the CPU of the default (measured: 2.8 s
                # vs 5.5 s per 2 min of stereo) at the same bit rate; loudness and peak tests still hold.
                stream.codec_context.options = {"compression_level": "7"}
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            self._cleanup()
            raise PostError(f"{output.name}: cannot write {spec.name} ({exc})") from exc
        self._stream = stream
        self._layout = _layout(channels)
        self._error: BaseException | None = None
        self._queue: queue.Queue[Block | None] = queue.Queue(maxsize=4)
        self._worker = threading.Thread(target=self._encode_loop, name="post-encode", daemon=True)
        self._worker.start()

    def write(self, block: Block) -> None:
        """Queue one (channels, n) float32 block for encoding (samples beyond ±1 are clipped).

        Encoding runs in a worker thread, overlapping the caller's decoding and processing.
        """
        if self._error is not None:
            raise self._error
        if block.shape[1] == 0:
            return
        self.samples_written += block.shape[1]
        self._queue.put(block)

    def _encode_loop(self) -> None:
        pts = 0
        while True:
            block = self._queue.get()
            if block is None:
                break
            if self._error is not None:
                continue  # drain
            try:
                data = np.ascontiguousarray(np.clip(block, -1.0, 1.0), dtype=np.float32)
                frame = av.AudioFrame.from_ndarray(data, format="fltp", layout=self._layout)
                frame.sample_rate = self.sample_rate
                frame.time_base = Fraction(1, self.sample_rate)
                frame.pts = pts
                pts += block.shape[1]
                self._mux(frame)
            except BaseException as exc:
                self._error = exc
        if self._error is None:
            try:
                self._mux(None)
            except BaseException as exc:
                self._error = exc

    def _mux(self, frame: Any) -> None:
        try:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        except (av.error.FFmpegError, OSError) as exc:
            raise PostError(f"{self.output.name}: encoding failed ({exc})") from exc

    def _finish_worker(self) -> None:
        if self._worker.is_alive():
            self._queue.put(None)
            self._worker.join()

    def close(self) -> Path:
        """Flush the encoder, finish the file and move it into place; returns the output path."""
        self._finish_worker()
        if self._error is not None:
            self._cleanup()
            raise self._error
        try:
            self._container.close()
        except (av.error.FFmpegError, OSError) as exc:
            self._cleanup()
            raise PostError(f"{self.output.name}: could not finish the file ({exc})") from exc
        os.replace(self._tmp, self.output)
        return self.output

    def abort(self) -> None:
        """Stop and remove the partial file (no effect after a successful `close`)."""
        self._cleanup()

    def _cleanup(self) -> None:
        with contextlib.suppress(Exception):
            if hasattr(self, "_worker"):
                self._error = self._error or PostError("aborted")
                self._finish_worker()
        with contextlib.suppress(Exception):
            self._container.close()
        with contextlib.suppress(OSError):
            self._tmp.unlink()

    def __enter__(self) -> AudioWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self._cleanup()


def seconds_to_samples(seconds: float, sample_rate: int) -> int:
    """Whole samples in `seconds` (rounded), never negative."""
    return max(0, round(seconds * sample_rate))


def db_to_gain(db: float) -> float:
    """Linear amplitude for a level in dB."""
    return float(10.0 ** (db / 20.0))


def gain_to_db(gain: float) -> float:
    """Level in dB for a linear amplitude (-inf for 0)."""
    return 20.0 * math.log10(gain) if gain > 0 else -math.inf
