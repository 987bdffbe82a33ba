"""Streaming signal blocks: a look-ahead peak limiter, a sidechain ducker, fades, a peak summary.

Each processor keeps its state between blocks, so a file is processed block by block with
the same result as in one piece; all per-sample work is vectorised numpy.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from mcp_audio.post.engine import Block

Floats = NDArray[np.float64]


def sliding_min(x: Floats, w: int) -> Floats:
    """min(x[i : i + w]) for i in 0..len(x) - w (van Herk / Gil-Werman, O(n), vectorised)."""
    n = x.shape[0]
    if w <= 1:
        return x.copy()
    blocks = -(-n // w)
    pad = np.full(blocks * w, np.inf)
    pad[:n] = x
    grid = pad.reshape(blocks, w)
    prefix = np.minimum.accumulate(grid, axis=1).reshape(-1)
    suffix = np.minimum.accumulate(grid[:, ::-1], axis=1)[:, ::-1].reshape(-1)
    count = n - w + 1
    return np.minimum(suffix[:count], prefix[w - 1 : w - 1 + count])


class Limiter:
    """Look-ahead peak limiter: the output never exceeds `ceiling` (linear) at the samples or at
    their midpoints (estimated band-limited with a 4-tap cubic, which catches most inter-sample
    peaks; the master checks true peak on the encoded file anyway).

    The gain is computed on chunks of `CHUNK` samples: each chunk's needed gain (ceiling over
    its largest peak) bounds the gain at the chunk's two edges; the edge gains get a trailing
    minimum over the look-ahead and a moving average of the same length (a linear attack that
    is complete when the peak arrives), then an exponential release (attenuation in nepers
    decays with `release_ms`); inside a chunk the gain is interpolated linearly between its
    edges, so it stays under every sample's need. The signal is delayed to match; `flush`
    returns the rest, so the output has exactly as many samples as the input.
    """

    CHUNK = 32

    def __init__(
        self, ceiling: float, sample_rate: int, channels: int, *, lookahead_ms: float = 5.0, release_ms: float = 80.0
    ) -> None:
        self.ceiling = ceiling
        d = self.CHUNK
        self._win = max(2, round(lookahead_ms * sample_rate / 1000 / d))  # in chunk edges
        self._decay = -d / max(1.0, release_ms * sample_rate / 1000)  # log of the per-edge decay
        self._channels = channels
        self._pbuf = np.zeros((channels, 2), dtype=np.float32)  # 2 samples of history + unpeaked
        self._dline = np.zeros((channels, 0), dtype=np.float32)  # received, not yet output
        self._need_last = 1.0
        self._b_tail = np.ones(self._win - 1, dtype=np.float32)
        self._m_tail = np.ones(self._win - 1, dtype=np.float32)
        self._att = 0.0
        self._skip = self._win - 1  # smoothed edges that belong before the first chunk
        self._gq = np.zeros(0, dtype=np.float32)  # edge gains from the next chunk to output on
        self._received = 0
        self._emitted = 0

    def process(self, x: Block) -> Block:
        """Limit one block; returns the limited signal so far (delayed by the look-ahead)."""
        n = x.shape[1]
        if n == 0:
            return np.zeros((self._channels, 0), dtype=np.float32)
        x = np.asarray(x, dtype=np.float32)
        self._received += n
        self._dline = np.concatenate([self._dline, x], axis=1)
        self._pbuf = np.concatenate([self._pbuf, x], axis=1)
        d = self.CHUNK
        m = (self._pbuf.shape[1] - 4) // d * d  # samples whose peaks are computable (2 before, 2 after)
        if m > 0:
            self._edges(self._chunk_needs(m))
            self._pbuf = self._pbuf[:, m:]
        return self._emit()

    def _chunk_needs(self, m: int) -> NDArray[np.float32]:
        e = self._pbuf[:, : m + 4]  # e[k] is sample k-2 of this batch
        mid = (9.0 * (e[:, 1:-2] + e[:, 2:-1]) - (e[:, :-3] + e[:, 3:])) * np.float32(1.0 / 16.0)
        mid_peak = np.abs(mid).max(axis=0)  # midpoints after samples -1 .. m (m + 1 values used)
        peak = np.abs(e[:, 2 : 2 + m]).max(axis=0)
        peak = np.maximum(peak, np.maximum(mid_peak[:m], mid_peak[1 : m + 1]))
        chunk_peak = peak.reshape(-1, self.CHUNK).max(axis=1)
        need = np.minimum(np.float32(1.0), np.float32(self.ceiling) / np.maximum(chunk_peak, np.float32(1e-9)))
        return np.asarray(need, dtype=np.float32)

    def _edges(self, need: NDArray[np.float32]) -> None:
        prev = np.concatenate([[np.float32(self._need_last)], need[:-1]]).astype(np.float32)
        self._need_last = float(need[-1])
        edge = np.minimum(prev, need)  # the start edge of each chunk: under both neighbours' need
        w = self._win
        b = np.concatenate([self._b_tail, edge])
        mins = sliding_min(b.astype(np.float64), w)
        self._b_tail = b[-(w - 1) :]
        mm = np.concatenate([self._m_tail.astype(np.float64), mins])
        csum = np.cumsum(np.concatenate([[0.0], mm]))
        smooth = (csum[w:] - csum[:-w]) / w
        self._m_tail = mm[-(w - 1) :].astype(np.float32)
        gains = self._release(smooth).astype(np.float32)
        if self._skip:
            cut = min(self._skip, gains.shape[0])
            self._skip -= cut
            gains = gains[cut:]
        self._gq = np.concatenate([self._gq, gains])

    def _release(self, g: Floats) -> Floats:
        """att[k] = max(A[k], att[k-1] * e^decay), computed as a running max in log space."""
        a = np.maximum(-np.log(np.clip(g, 1e-12, 1.0)), 0.0)
        if not a.any() and self._att < 1e-9:
            self._att = 0.0
            return np.ones_like(g)
        idx = np.arange(1, a.shape[0] + 1, dtype=np.float64)
        with np.errstate(divide="ignore"):
            log_a = np.log(a)
        start = math.log(self._att) if self._att > 1e-12 else -np.inf
        series = np.maximum.accumulate(np.concatenate([[start], log_a - idx * self._decay]))[1:]
        att = np.exp(series + idx * self._decay)
        self._att = float(att[-1]) if att[-1] > 1e-9 else 0.0
        return np.asarray(np.exp(-att), dtype=np.float64)

    def _emit(self) -> Block:
        d = self.CHUNK
        k = min(self._gq.shape[0] - 1, self._dline.shape[1] // d)
        if k <= 0:
            return np.zeros((self._channels, 0), dtype=np.float32)
        start, end = self._gq[:k], self._gq[1 : k + 1]
        frac = np.arange(d, dtype=np.float32) / np.float32(d)
        gain = (start[:, None] + (end - start)[:, None] * frac[None, :]).reshape(-1)
        out = self._dline[:, : k * d] * gain
        self._dline = self._dline[:, k * d :]
        self._gq = self._gq[k:]
        self._emitted += k * d
        return out

    def flush(self) -> Block:
        """The delayed last samples (call once, after the last `process`)."""
        remaining = self._received - self._emitted
        if remaining <= 0:
            return np.zeros((self._channels, 0), dtype=np.float32)
        pad = (self._win + 3) * self.CHUNK + 4
        received = self._received
        out = self.process(np.zeros((self._channels, pad), dtype=np.float32))
        self._received = received
        return np.ascontiguousarray(out[:, :remaining])


class Ducker:
    """Sidechain ducking gain for a music bed from the voice (envelope follower).

    Per 10 ms hop: the voice's RMS level; "speaking" is a level above max(`floor_db`, the
    loudest hop so far minus `range_db`), with a 6 dB soft knee. The speaking amount is smoothed
    with a one-pole attack (`attack_ms`), held for `hold_ms` and released (`release_ms`), and
    mapped to a gain of -duck_db * amount dB, ramped linearly across each hop.
    Blocks must be whole hops, except the last.
    """

    def __init__(
        self,
        sample_rate: int,
        duck_db: float,
        *,
        attack_ms: float = 15.0,
        hold_ms: float = 200.0,
        release_ms: float = 300.0,
        floor_db: float = -55.0,
        range_db: float = 25.0,
    ) -> None:
        self.hop = max(1, round(sample_rate / 100))
        hop_ms = 1000.0 * self.hop / sample_rate
        self._duck_db = duck_db
        self._att = 1.0 - math.exp(-hop_ms / attack_ms)
        self._rel = 1.0 - math.exp(-hop_ms / release_ms)
        self._hold = round(hold_ms / hop_ms)
        self._floor = floor_db
        self._range = range_db
        self._loudest = -120.0
        self._level = 0.0
        self._hold_left = 0
        self._last_gain = 1.0

    def gains(self, voice: Block) -> NDArray[np.float32]:
        """Per-sample gain (linear, ≤ 1) for the bed under this voice block."""
        n = voice.shape[1]
        if n == 0:
            return np.ones(0, dtype=np.float32)
        hops = -(-n // self.hop)
        padded = voice if hops * self.hop == n else np.pad(voice, ((0, 0), (0, hops * self.hop - n)))
        power = np.mean(np.square(padded.reshape(voice.shape[0], hops, self.hop), dtype=np.float64), axis=(0, 2))
        level_db = 10.0 * np.log10(np.maximum(power, 1e-12))
        loudest = np.maximum.accumulate(np.concatenate([[self._loudest], level_db]))[1:]
        self._loudest = float(loudest[-1])
        threshold = np.maximum(self._floor, loudest - self._range)
        target = np.clip((level_db - threshold) / 6.0 + 1.0, 0.0, 1.0)
        levels = np.empty(hops, dtype=np.float64)
        level, hold_left = self._level, self._hold_left
        att, rel, hold = self._att, self._rel, self._hold
        for i, t in enumerate(target.tolist()):
            if t >= level:
                level += (t - level) * att
                if t > 0.5:
                    hold_left = hold
            elif hold_left > 0:
                hold_left -= 1
            else:
                level += (t - level) * rel
            levels[i] = level
        self._level, self._hold_left = level, hold_left
        hop_gain = np.power(10.0, -self._duck_db * levels / 20.0)
        start = np.concatenate([[self._last_gain], hop_gain[:-1]])
        frac = np.arange(1, self.hop + 1, dtype=np.float64) / self.hop
        per_sample = (start[:, None] + (hop_gain - start)[:, None] * frac[None, :]).reshape(-1)[:n]
        self._last_gain = float(hop_gain[-1])
        return np.asarray(per_sample, dtype=np.float32)


def ramp(positions_start: int, n: int, fade_start: int, fade_len: int, *, rising: bool) -> NDArray[np.float32]:
    """Gain of a linear fade over samples [positions_start, positions_start + n).

    The fade runs over [fade_start, fade_start + fade_len): 0→1 if `rising` (1 after, 0 before),
    1→0 otherwise (1 before, 0 after).
    """
    pos = np.arange(positions_start, positions_start + n, dtype=np.float64)
    if fade_len <= 0:
        frac = (pos >= fade_start).astype(np.float64)
    else:
        frac = np.clip((pos - fade_start + 0.5) / fade_len, 0.0, 1.0)
    return (frac if rising else 1.0 - frac).astype(np.float32)


class PeakSummary:
    """Max |sample| per slice of a stream of unknown length, in bounded memory.

    Keeps per-chunk maxima; when there are more than `2 * keep` chunks, pairs merge and the
    chunk doubles. `peaks(count)` splits the stream into `count` slices.
    """

    def __init__(self, keep: int = 8192) -> None:
        self._keep = keep
        self._chunk = 1
        self._vals = np.zeros(0, dtype=np.float32)
        self._part_n = 0  # samples in the unfinished chunk
        self._part_max = 0.0

    def add(self, block: Block) -> None:
        """Add a (channels, n) block."""
        if block.shape[1] == 0:
            return
        mag = np.abs(block).max(axis=0)
        if self._part_n:
            need = self._chunk - self._part_n
            head, mag = mag[:need], mag[need:]
            self._part_max = max(self._part_max, float(head.max()))
            self._part_n += head.shape[0]
            if self._part_n == self._chunk:
                self._vals = np.append(self._vals, np.float32(self._part_max))
                self._part_n, self._part_max = 0, 0.0
        whole = mag.shape[0] // self._chunk * self._chunk
        if whole:
            self._vals = np.concatenate([self._vals, mag[:whole].reshape(-1, self._chunk).max(axis=1)])
        rest = mag[whole:]
        if rest.shape[0]:
            self._part_n, self._part_max = rest.shape[0], float(rest.max())
        while self._vals.shape[0] > 2 * self._keep:
            self._merge()

    def _merge(self) -> None:
        even = self._vals.shape[0] // 2 * 2
        merged = self._vals[:even].reshape(-1, 2).max(axis=1)
        if even < self._vals.shape[0]:  # the odd chunk joins the unfinished one
            self._part_n += self._chunk
            self._part_max = max(self._part_max, float(self._vals[-1]))
        self._vals = merged
        self._chunk *= 2

    def peaks(self, count: int) -> list[float]:
        """`count` values in 0..1, each the max |sample| of its slice (of equal length)."""
        vals = self._vals
        if self._part_n:
            vals = np.append(vals, np.float32(self._part_max))
        total = vals.shape[0]
        if total == 0:
            return [0.0] * count
        out = []
        for i in range(count):
            lo = i * total // count
            hi = max(lo + 1, (i + 1) * total // count)
            out.append(min(1.0, float(vals[lo:hi].max())))
        return out
