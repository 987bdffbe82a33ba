"""Memory bounded by the work, not by what an input's header claims: files whose FLAC header
says 1 s but which hold minutes (made here with PyAV, the header then rewritten) are decoded
only as far as the limits allow, counted on the decoded samples."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from mcp_audio.post import ops
from mcp_audio.post.engine import probe
from mcp_audio.post.errors import PostError
from tests.helpers import make_lying_flac
from tests.unit.test_post_engine import decode, write_wav

RATE = 8000


def lying(path: Path, seconds: float, claimed_s: float = 1.0) -> Path:
    path.write_bytes(make_lying_flac(seconds, claimed_s, RATE))
    assert probe(path).duration_s == pytest.approx(claimed_s)  # the header's claim, which the engine must not trust
    return path


def test_a_bed_whose_header_lies_is_streamed_not_decoded_whole(tmp_path: Path) -> None:
    # 30 min at 8 kHz mono is 58 MB of float32 once decoded; the header claims 1 s (cacheable).
    bed = lying(tmp_path / "bed.flac", 1800.0)
    voice = write_wav(tmp_path / "voice.wav", 0.3 * np.sin(np.arange(2 * RATE) / RATE * 2 * np.pi * 200)[None], RATE)
    tracemalloc.start()
    try:
        done = ops.mix(voice, bed, tmp_path / "mixed.wav", fade_in_s=0.5, fade_out_s=0.5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert done.duration_s == pytest.approx(3.0, abs=0.01)
    assert decode(done.path)[0].shape[1] == 3 * RATE
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.1f} MB traced while mixing over a lying bed"


def test_a_short_bed_is_still_looped_from_memory(tmp_path: Path) -> None:
    bed = write_wav(tmp_path / "bed.wav", 0.2 * np.sin(np.arange(RATE // 2) / RATE * 2 * np.pi * 300)[None], RATE)
    voice = write_wav(tmp_path / "voice.wav", np.zeros((1, 3 * RATE)), RATE)
    done = ops.mix(voice, bed, tmp_path / "mixed.wav", fade_in_s=0.0, fade_out_s=0.0, duck_db=0.0)
    assert done.duration_s == pytest.approx(3.0, abs=0.01)


def test_join_counts_its_total_on_decoded_samples(tmp_path: Path) -> None:
    # Three inputs whose headers claim 1 s each (3 s in all) hold 40 s each.
    inputs = [lying(tmp_path / f"part{i}.flac", 40.0) for i in range(3)]
    with pytest.raises(PostError) as refused:
        ops.join(inputs, tmp_path / "joined.wav", max_duration_s=60.0)
    message = str(refused.value)
    assert message.startswith("part1.flac: ") and "limit of 60 s of decoded audio" in message, message
    assert not list(tmp_path.glob("joined*")) and not list(tmp_path.glob(".joined*"))  # nothing half-written kept


def test_mix_counts_its_fades_in_the_limit(tmp_path: Path) -> None:
    voice = write_wav(tmp_path / "voice.wav", np.zeros((1, RATE)), RATE)
    bed = write_wav(tmp_path / "bed.wav", np.zeros((1, RATE)), RATE)
    with pytest.raises(PostError, match="would pass the limit of 30 s"):
        ops.mix(voice, bed, tmp_path / "mixed.wav", fade_in_s=40.0, max_duration_s=30.0)


def test_every_decode_stops_at_the_measured_limit(tmp_path: Path) -> None:
    long = lying(tmp_path / "long.flac", 90.0)
    for run in (
        lambda: ops.trim(long, tmp_path / "t.wav", max_duration_s=30.0),
        lambda: ops.info(long, max_duration_s=30.0),
        lambda: ops.master(long, tmp_path / "m.wav", max_duration_s=30.0),
    ):
        with pytest.raises(PostError, match=r"long\.flac: is longer than the limit of 30 s"):
            run()
