"""Loudness (ITU-R BS.1770-4 / EBU R128) and true peak, measured in a stream of blocks.

The measurement is FFmpeg's own `ebur128` filter (libavfilter, run through a PyAV filter
graph): K-weighting, 400 ms blocks with 75 % overlap, absolute (-70 LUFS) and relative
(-10 LU) gates, and true peak by 4x oversampling. Memory stays flat with the length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np
from av.filter import Graph

from mcp_audio.post.engine import DEFAULT_MAX_DURATION_S, Block, iter_blocks, probe

SILENCE_LUFS = -70.0
"""BS.1770's absolute gate: nothing louder than this means the signal has no loudness."""


@dataclass(frozen=True)
class Loudness:
    """Integrated loudness in LUFS and true peak in dBTP; None when the signal is silent."""

    integrated_lufs: float | None
    true_peak_db: float | None
    samples: int


class LoudnessMeter:
    """Feed (channels, n) float32 blocks with `add`, read the result with `result()`."""

    def __init__(self, sample_rate: int, channels: int, *, true_peak: bool = True) -> None:
        self._rate = sample_rate
        self._layout = "mono" if channels == 1 else "stereo"
        self._true_peak = true_peak
        self._graph = Graph()
        src = self._graph.add_abuffer(
            format="fltp", sample_rate=sample_rate, layout=self._layout, time_base=Fraction(1, sample_rate)
        )
        meter = self._graph.add("ebur128", f"peak={'true' if true_peak else 'none'}:metadata=1")
        sink = self._graph.add("abuffersink")
        src.link_to(meter)
        meter.link_to(sink)
        self._graph.configure()
        self._samples = 0
        self._last: Any = None  # the last frame out of the filter: its metadata is the running result
        self._finished = False

    def add(self, block: Block) -> None:
        """Measure one more block."""
        if block.shape[1] == 0:
            return
        data = np.ascontiguousarray(block, dtype=np.float32)
        frame = av.AudioFrame.from_ndarray(data, format="fltp", layout=self._layout)
        frame.sample_rate = self._rate
        frame.time_base = Fraction(1, self._rate)
        frame.pts = self._samples
        self._samples += block.shape[1]
        self._graph.push(frame)
        self._drain()

    def _drain(self) -> None:
        while True:
            try:
                out: Any = self._graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return
            if "lavfi.r128.I" in out.metadata:  # the frame flushed at the end carries none
                self._last = out

    def result(self) -> Loudness:
        """Integrated loudness and true peak over everything added so far (then stop adding)."""
        if not self._finished:
            self._graph.push(None)
            self._drain()
            self._finished = True
        metadata: dict[str, str] = dict(self._last.metadata) if self._last is not None else {}
        lufs: float | None = float(metadata.get("lavfi.r128.I", SILENCE_LUFS))
        if lufs is None or not math.isfinite(lufs) or lufs <= SILENCE_LUFS:
            lufs = None
        peak: float | None = None
        if self._true_peak:
            linear = float(metadata.get("lavfi.r128.true_peak", 0.0))
            peak = 20.0 * math.log10(linear) if linear > 0 else None
        return Loudness(lufs, peak, self._samples)


def measure_file(
    path: Path, *, true_peak: bool = True, max_duration_s: float | None = DEFAULT_MAX_DURATION_S
) -> Loudness:
    """Loudness and true peak of a file at its own rate (more than 2 channels mixed to stereo)."""
    src = probe(path, max_duration_s=max_duration_s)
    channels = min(src.channels, 2)
    meter = LoudnessMeter(src.sample_rate, channels, true_peak=true_peak)
    for block in iter_blocks(path, sample_rate=src.sample_rate, channels=channels, max_duration_s=max_duration_s):
        meter.add(block)
    return meter.result()
