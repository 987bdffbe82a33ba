"""The audio engine, checked from outside: test signals are written with PyAV directly, results
are decoded with PyAV and measured with pyloudnorm (BS.1770 in numpy, not the engine's FFmpeg
meter) and 4x oversampling with scipy for true peak."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from numpy.typing import NDArray

from mcp_audio.post import ops
from mcp_audio.post.dsp import Limiter, PeakSummary
from mcp_audio.post.errors import PostError

Array = NDArray[np.float64]
RNG = np.random.default_rng(1770)

# --- independent helpers --------------------------------------------------------------------


def write_wav(path: Path, x: Array, sr: int) -> Path:
    """Write (channels, n) float to 16-bit WAV with PyAV (not through the engine)."""
    x = np.atleast_2d(x)
    layout = "mono" if x.shape[0] == 1 else "stereo"
    pcm = np.round(np.clip(x, -1, 1) * 32767).astype(np.int16)
    with av.open(str(path), "w", format="wav") as out:
        stream = out.add_stream("pcm_s16le", rate=sr, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm.T.reshape(1, -1)), format="s16", layout=layout)
        frame.sample_rate = sr
        frame.pts = 0
        frame.time_base = Fraction(1, sr)
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def decode(path: Path) -> tuple[Array, int]:
    """All samples as (channels, n) float64; MP4 cut to its edit-list duration, as players do."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        sr = stream.codec_context.sample_rate
        layout = "mono" if stream.codec_context.channels == 1 else "stereo"
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=sr)
        parts: list[NDArray[Any]] = []
        for frame in container.decode(stream):
            parts.extend(f.to_ndarray() for f in resampler.resample(frame))
        parts.extend(f.to_ndarray() for f in resampler.resample(None))
        x = np.concatenate(parts, axis=1).astype(np.float64)
        if "mp4" in container.format.name.split(","):
            assert stream.duration is not None and stream.time_base is not None
            x = x[:, : round(float(stream.duration * stream.time_base) * sr)]
    return x, sr


# pyloudnorm and scipy load at the first measure (a CPU-second), not in every test process's
# collection: other modules import these helpers.
def lufs(x: Array, sr: int) -> float:
    import pyloudnorm

    return float(pyloudnorm.Meter(sr).integrated_loudness(x.T))


def true_peak_db(x: Array) -> float:
    from scipy.signal import resample_poly

    return float(20 * np.log10(np.abs(resample_poly(x, 4, 1, axis=1)).max()))


def rms_db(x: Array) -> float:
    return float(10 * np.log10(np.mean(np.square(x)) + 1e-20))


def tone(freq: float, seconds: float, sr: int, amp: float = 0.3, channels: int = 1) -> Array:
    t = np.arange(round(seconds * sr)) / sr
    return np.tile(amp * np.sin(2 * np.pi * freq * t), (channels, 1))


def speechlike(seconds: float, sr: int, *, on: float = 1.5, off: float = 2.0, amp: float = 0.1) -> Array:
    """Noise bursts with a tone, `on` seconds of 'speech' then `off` seconds of silence, repeated."""
    n = round(seconds * sr)
    t = np.arange(n) / sr
    gate = (t % (on + off)) < on
    voiced = amp * (0.6 * RNG.standard_normal(n) + np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)))
    return np.vstack([voiced * gate, 0.8 * voiced * gate])


def dominant_hz(x: Array, sr: int) -> float:
    mono = x.mean(axis=0)
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(mono.shape[0])))
    return float(np.fft.rfftfreq(mono.shape[0], 1 / sr)[int(np.argmax(spectrum))])


@pytest.fixture
def narration(tmp_path: Path) -> Path:
    """7 s of speech-like stereo at 44.1 kHz, about -30 LUFS, with one sharp transient."""
    x = speechlike(7.0, 44100, amp=0.03)
    x[:, 30000:30040] = 0.5  # a click that forces the limiter to work at -16 LUFS
    return write_wav(tmp_path / "narration.wav", x, 44100)


# --- master ---------------------------------------------------------------------------------

MASTER_FORMATS = [("mp3", None), ("wav", None), ("flac", None), ("ogg", None), ("m4a", None), ("m4a", "alac")]


@pytest.mark.parametrize(("fmt", "codec"), MASTER_FORMATS)
def test_master_hits_loudness_and_true_peak_on_the_encoded_file(
    tmp_path: Path, narration: Path, fmt: str, codec: str | None
) -> None:
    src, sr_in = decode(narration)
    assert lufs(src, sr_in) < -25  # the input is far from the target
    result = ops.master(narration, tmp_path / "out.wav", format=fmt, codec=codec, loudness_lufs=-16, true_peak_db=-1)
    assert result.path.suffix == f".{fmt}" and result.path.exists()
    assert not list(tmp_path.glob("*.part"))
    out, sr = decode(result.path)
    assert abs(lufs(out, sr) - (-16)) <= 0.5
    assert true_peak_db(out) <= -1.0
    assert abs(out.shape[1] / sr - src.shape[1] / sr_in) <= 0.001  # duration kept (gapless)
    assert sr == (48000 if fmt == "ogg" else 44100)
    assert result.loudness_lufs is not None and abs(result.loudness_lufs - lufs(out, sr)) < 0.3
    assert result.on_target is True
    with av.open(str(result.path)) as container:
        assert (
            container.streams.audio[0].codec_context.name
            == {
                "mp3": "mp3float",
                "wav": "pcm_s16le",
                "flac": "flac",
                "ogg": "opus",
                "m4a": codec or "aac",
            }[fmt]
        )


def drums(seconds: float, sr: int) -> Array:
    """Dense percussive stereo: decaying noise hits four times a second over a low tone. Limited
    hard to reach a loud target, it is what lossy encoders add the most peaks to."""
    t = np.arange(round(seconds * sr)) / sr
    hits = np.exp(-(t % 0.25) * 40) * RNG.standard_normal(t.shape[0]) * 0.8 + 0.05 * np.sin(2 * np.pi * 110 * t)
    return np.clip(np.vstack([hits, 0.9 * hits]), -1, 1)


@pytest.mark.parametrize("fmt", ["mp3", "m4a", "ogg", "flac", "wav"])
@pytest.mark.parametrize(("sr", "target"), [(44100, -16), (48000, -9)])
def test_master_holds_the_true_peak_ceiling_on_the_encoded_file_even_off_loudness(
    tmp_path: Path, fmt: str, sr: int, target: float
) -> None:
    src = write_wav(tmp_path / "drums.wav", drums(6.0, sr), sr)
    result = ops.master(src, tmp_path / f"out.{fmt}", loudness_lufs=target, true_peak_db=-1)
    out, out_sr = decode(result.path)
    assert true_peak_db(out) <= -1.0  # 4x oversampled, measured here: the ceiling is a promise
    assert result.true_peak_db is not None and result.true_peak_db <= -1.0
    if not result.on_target:  # loudness may fall short of a target the ceiling makes unreachable
        assert lufs(out, out_sr) < target + 0.5


def test_master_loud_input_down_and_to_another_rate(tmp_path: Path) -> None:
    x = np.clip(tone(440, 3.0, 44100, amp=1.5, channels=2), -1, 1) * 0.99  # clipped: -3 LUFS-ish
    src = write_wav(tmp_path / "loud.wav", x, 44100)
    result = ops.master(src, tmp_path / "quiet.mp3", loudness_lufs=-23, true_peak_db=-2, sample_rate=48000)
    out, sr = decode(result.path)
    assert sr == 48000 and result.sample_rate == 48000
    assert abs(lufs(out, sr) + 23) <= 0.5
    assert true_peak_db(out) <= -2.0
    assert abs(out.shape[1] / sr - 3.0) <= 0.001


def test_master_trim_silence_keeps_at_most_0_6_s_around_the_content(tmp_path: Path) -> None:
    sr = 44100
    content = speechlike(3.4, sr, on=3.4, off=0.1, amp=0.05)
    x = np.concatenate([np.zeros((2, 3 * sr)), content, np.zeros((2, 2 * sr))], axis=1)
    x += 1e-4 * RNG.standard_normal(x.shape)  # a noise floor, 50+ dB under the content
    src = write_wav(tmp_path / "padded.wav", x, sr)
    result = ops.master(src, tmp_path / "trimmed.flac", trim_silence=True)
    out, sr = decode(result.path)
    loud = np.flatnonzero(np.abs(out).max(axis=0) > 0.01)
    assert loud[0] / sr <= 0.6
    assert (out.shape[1] - loud[-1]) / sr <= 0.6
    assert 3.4 <= out.shape[1] / sr <= 3.4 + 1.2
    assert abs(lufs(out, sr) + 16) <= 0.5


def window_rms_db(x: Array, sr: int, seconds: float = 0.01) -> Array:
    n = round(seconds * sr)
    frames = x[:, : x.shape[1] // n * n].reshape(x.shape[0], -1, n)
    return np.asarray(10 * np.log10(np.mean(np.square(frames), axis=(0, 2)) + 1e-20))


@pytest.mark.parametrize("floor_dbfs", [-80, -65, -50])
def test_master_trim_silence_decides_on_loudness_over_a_noise_floor(tmp_path: Path, floor_dbfs: float) -> None:
    sr = 44100
    content = speechlike(3.0, sr, on=0.4, off=0.15, amp=0.1)  # words and short pauses, about -20 dBFS RMS
    pad = 10 ** (floor_dbfs / 20) * RNG.standard_normal((2, round(1.5 * sr)))  # a room's noise, this RMS
    x = np.concatenate(
        [pad, content + 10 ** (floor_dbfs / 20) * RNG.standard_normal(content.shape), pad[:, ::-1]], axis=1
    )
    src = write_wav(tmp_path / "padded.wav", x, sr)
    result = ops.master(src, tmp_path / "trimmed.flac", trim_silence=True)
    out, sr = decode(result.path)
    assert 3.0 - 0.02 <= out.shape[1] / sr <= 3.0 + 1.2  # the content kept, at most 0.6 s each side
    levels = window_rms_db(out, sr)
    voiced = np.flatnonzero(levels > levels.max() - 20)
    assert voiced[0] * 0.01 <= 0.6 and (levels.shape[0] - voiced[-1] - 1) * 0.01 <= 0.6


def test_master_refuses_silence(tmp_path: Path) -> None:
    src = write_wav(tmp_path / "silent.wav", np.zeros((1, 44100)), 44100)
    with pytest.raises(PostError, match=r"silent\.wav: the audio is silent"):
        ops.master(src, tmp_path / "x.mp3")
    assert not list(tmp_path.glob("x*"))


# --- join -----------------------------------------------------------------------------------


def test_join_resamples_and_puts_gaps_between_inputs_in_order(tmp_path: Path) -> None:
    a = write_wav(tmp_path / "a.wav", tone(300, 1.0, 22050), 22050)  # mono 22.05 kHz
    b = write_wav(tmp_path / "b.wav", tone(700, 1.5, 44100, channels=2), 44100)  # stereo
    c = write_wav(tmp_path / "c.wav", tone(1100, 0.5, 48000), 48000)  # mono 48 kHz
    result = ops.join([a, b, c], tmp_path / "joined.wav", gap_s=0.25)
    out, sr = decode(result.path)
    assert sr == 48000 and out.shape[0] == 2
    assert abs(out.shape[1] / sr - (1.0 + 0.25 + 1.5 + 0.25 + 0.5)) <= 0.001

    def at(t0: float, t1: float) -> Array:
        return out[:, round(t0 * sr) : round(t1 * sr)]

    assert abs(dominant_hz(at(0.1, 0.9), sr) - 300) < 5
    assert np.abs(at(1.02, 1.23)).max() < 1e-3  # the gap is silent
    assert abs(dominant_hz(at(1.35, 2.65), sr) - 700) < 5
    assert np.abs(at(2.77, 2.98)).max() < 1e-3
    assert abs(dominant_hz(at(3.05, 3.45), sr) - 1100) < 5
    assert abs(rms_db(at(0.1, 0.9)) - rms_db(tone(300, 0.8, sr))) < 0.2  # level kept


def test_join_crossfade_overlaps_with_equal_power(tmp_path: Path) -> None:
    sr = 44100
    a = write_wav(tmp_path / "a.wav", RNG.standard_normal((2, 2 * sr)) * 0.1, sr)
    b = write_wav(tmp_path / "b.wav", RNG.standard_normal((2, 2 * sr)) * 0.1, sr)
    result = ops.join([a, b], tmp_path / "x.flac", crossfade_s=0.5, gap_s=1.0)
    out, sr = decode(result.path)
    assert abs(out.shape[1] / sr - 3.5) <= 0.001
    levels = [rms_db(out[:, round(t * sr) : round((t + 0.1) * sr)]) for t in np.arange(0.2, 3.2, 0.1)]
    assert max(levels) - min(levels) < 1.5  # no dip or bump through the crossfade
    a_x, _ = decode(a)
    assert np.allclose(out[:, :sr], a_x[:, :sr], atol=2e-4)  # before the fade: the first input


# --- mix ------------------------------------------------------------------------------------


@pytest.mark.parametrize("duck_db", [10.0, 18.0])
def test_mix_ducks_the_looped_bed_under_the_voice(tmp_path: Path, duck_db: float) -> None:
    sr = 44100
    voice_x = speechlike(10.5, sr, on=1.5, off=2.0, amp=0.1)
    voice_x += 0.003 * RNG.standard_normal(voice_x.shape)  # room tone at -50 dBFS: not speech
    voice = write_wav(tmp_path / "voice.wav", voice_x, sr)
    music = write_wav(tmp_path / "music.wav", tone(110, 2.5, sr, amp=0.5, channels=2), sr)  # loops 5 times
    result = ops.mix(voice, music, tmp_path / "mix.wav", music_gain_db=-12, duck_db=duck_db, fade_in_s=1, fade_out_s=2)
    out, sr = decode(result.path)
    voice_in, _ = decode(voice)
    assert abs(out.shape[1] / sr - (1 + 10.5 + 2)) <= 0.001
    bed = out.copy()
    bed[:, sr : sr + voice_in.shape[1]] -= voice_in  # what is left is the bed

    def seg(t0: float, t1: float) -> float:
        return rms_db(bed[:, round(t0 * sr) : round(t1 * sr)])

    speaking = [seg(1 + k * 3.5 + 0.5, 1 + k * 3.5 + 1.3) for k in range(3)]
    pauses = [seg(1 + k * 3.5 + 2.6, 1 + k * 3.5 + 3.4) for k in range(3)]
    for s, p in zip(speaking, pauses, strict=True):
        assert abs((p - s) - duck_db) <= 3.0
    full = rms_db(tone(110, 1, sr, amp=0.5)) - 12  # the music at -12 dB
    assert abs(max(pauses) - full) < 3.0
    assert seg(0.0, 0.1) < seg(0.85, 0.95) - 12  # faded in
    assert seg(13.4, 13.5) < seg(11.55, 11.65) - 12  # faded out at the end
    assert np.abs(bed[:, -50:]).max() < 0.01


def test_mix_resamples_a_mono_voice_and_a_music_bed_of_another_rate(tmp_path: Path) -> None:
    voice = write_wav(tmp_path / "v.wav", speechlike(2.0, 16000)[:1], 16000)
    music = write_wav(tmp_path / "m.wav", tone(200, 5.0, 44100, channels=2), 44100)
    result = ops.mix(voice, music, tmp_path / "m.mp3", fade_in_s=0.5, fade_out_s=0.5)
    out, sr = decode(result.path)
    assert (sr, out.shape[0]) == (44100, 2)
    assert abs(out.shape[1] / sr - 3.0) <= 0.001
    assert result.path.suffix == ".mp3"


# --- trim -----------------------------------------------------------------------------------


def test_trim_cuts_exactly_with_short_fades(tmp_path: Path) -> None:
    sr = 44100
    x = RNG.uniform(-0.5, 0.5, (2, 4 * sr))
    src = write_wav(tmp_path / "in.wav", x, sr)
    result = ops.trim(src, tmp_path / "cut.wav", start_s=1.0, end_s=2.5, fade_s=0.01)
    out, sr = decode(result.path)
    assert out.shape[1] == round(1.5 * sr)
    original, _ = decode(src)
    middle = slice(round(0.02 * sr), round(1.48 * sr))
    assert np.allclose(out[:, middle], original[:, sr + middle.start : sr + middle.stop], atol=1e-4)
    assert np.abs(out[:, :3]).max() < 0.01 and np.abs(out[:, -3:]).max() < 0.01  # faded edges


def test_trim_to_the_end_and_errors(tmp_path: Path) -> None:
    src = write_wav(tmp_path / "in.wav", tone(440, 2.0, 48000), 48000)
    result = ops.trim(src, tmp_path / "tail.ogg", start_s=1.25)
    out, sr = decode(result.path)
    assert abs(out.shape[1] / sr - 0.75) <= 0.001
    with pytest.raises(PostError, match="past the end"):
        ops.trim(src, tmp_path / "none.wav", start_s=5.0)
    with pytest.raises(PostError, match="must be greater than start_s"):
        ops.trim(src, tmp_path / "none.wav", start_s=1.0, end_s=0.5)


# --- info -----------------------------------------------------------------------------------


def test_info_reports_duration_format_loudness_and_slice_peaks(tmp_path: Path) -> None:
    sr = 48000
    steps = [0.1 * (k + 1) for k in range(10)]  # ten 0.5 s steps of rising amplitude
    x = np.concatenate([RNG.uniform(-a, a, round(0.5 * sr)) for a in steps])[None, :]
    x[0, ::97] = np.repeat(steps, round(0.5 * sr))[::97]  # each step reaches its amplitude
    src = write_wav(tmp_path / "steps.wav", x, sr)
    data = ops.info(src)
    assert data["duration_s"] == pytest.approx(5.0, abs=1e-6)
    assert (data["sample_rate"], data["channels"], data["format"], data["codec"]) == (48000, 1, "wav", "pcm_s16le")
    decoded, _ = decode(src)
    assert abs(data["loudness_lufs"] - lufs(decoded, sr)) < 0.2
    assert abs(data["true_peak_db"] - true_peak_db(decoded)) < 0.3
    peaks = data["peaks"]
    assert len(peaks) == 100 and all(0 <= p <= 1 for p in peaks)
    for i, p in enumerate(peaks):
        expected = np.abs(decoded[0, i * 2400 : (i + 1) * 2400]).max()
        assert p == pytest.approx(expected, abs=1e-3)
    assert len(ops.info(src, peaks=10)["peaks"]) == 50
    assert len(ops.info(src, peaks=999)["peaks"]) == 200


@pytest.mark.parametrize("fmt", ["mp3", "flac", "ogg", "m4a"])
def test_info_reads_every_output_format(tmp_path: Path, fmt: str) -> None:
    src = write_wav(tmp_path / "t.wav", tone(1000, 1.2345, 44100, amp=0.5, channels=2), 44100)  # not whole 100 ms
    rendered = ops.trim(src, tmp_path / "t", start_s=0.0, fade_s=0.0, format=fmt)
    data = ops.info(rendered.path)
    assert data["format"] == fmt and data["channels"] == 2
    assert data["duration_s"] == pytest.approx(1.2345, abs=0.001)
    assert data["loudness_lufs"] == pytest.approx(-6.0, abs=0.6)  # 1 kHz at 0.5 in both channels: -6 LUFS
    assert max(data["peaks"]) == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize("codec", ["pcm_s16le", "pcm_s24le", "pcm_f32le"])
def test_a_wav_whose_header_outgrows_the_probe_window_is_read_whole(tmp_path: Path, codec: str) -> None:
    """WAVs are opened reading 32 KB to find their streams (engine.WAV_PROBE): a LIST chunk of
    100 KB before the samples (a long tag) still gives the right rate, width and duration."""
    sr, x = 32000, tone(440, 3.0, 32000, amp=0.5, channels=2)
    plain = tmp_path / "plain.wav"
    with av.open(str(plain), "w", format="wav") as out:
        stream = out.add_stream(codec, rate=sr, layout="stereo")
        frame = av.AudioFrame.from_ndarray(x.astype(np.float32), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = sr, 0, Fraction(1, sr)
        resampler = av.AudioResampler(format=stream.codec_context.format, layout="stereo", rate=sr)
        for packet in [p for f in resampler.resample(frame) for p in stream.encode(f)] + list(stream.encode(None)):
            out.mux(packet)
    riff = plain.read_bytes()
    text = b"x" * 100_000
    info_chunk = b"INFO" + b"ICMT" + len(text).to_bytes(4, "little") + text
    fmt_end = riff.index(b"data")  # the LIST goes between fmt and data
    tagged_body = riff[12:fmt_end] + b"LIST" + len(info_chunk).to_bytes(4, "little") + info_chunk + riff[fmt_end:]
    tagged = tmp_path / "tagged.wav"
    tagged.write_bytes(b"RIFF" + (len(tagged_body) + 4).to_bytes(4, "little") + b"WAVE" + tagged_body)
    for src in (plain, tagged):
        data = ops.info(src)
        assert (data["format"], data["codec"], data["sample_rate"], data["channels"]) == ("wav", codec, sr, 2)
        assert data["duration_s"] == pytest.approx(3.0, abs=1e-3)
        assert max(data["peaks"]) == pytest.approx(0.5, abs=0.01)


def test_info_of_silence_has_no_loudness(tmp_path: Path) -> None:
    data = ops.info(write_wav(tmp_path / "s.wav", np.zeros((1, 24000)), 48000))
    assert data["loudness_lufs"] is None and data["true_peak_db"] is None
    assert data["peaks"] == [0.0] * 100


# --- bad input ------------------------------------------------------------------------------


def test_bad_inputs_raise_post_error_naming_the_problem(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp3"
    text.write_text("this is not audio at all, just text " * 50)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    long = write_wav(tmp_path / "long.wav", np.zeros((1, 3 * 8000)), 8000)
    short = write_wav(tmp_path / "short.wav", tone(440, 0.3, 8000), 8000)
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: ops.info(text), "notes.mp3: not a readable audio file"),
        (lambda: ops.info(empty), "empty.wav: file is empty"),
        (lambda: ops.info(tmp_path / "missing.wav"), "missing.wav: file not found"),
        (lambda: ops.info(long, max_duration_s=2), "long.wav: is 3.0 s long; the limit is 2 s"),
        (lambda: ops.master(long, tmp_path / "o.xyz"), "unknown output format 'xyz'"),
        (lambda: ops.master(long, tmp_path / "o.ogg", codec="vorbis"), "codec 'vorbis' is not available for ogg"),
        (lambda: ops.join([], tmp_path / "o.wav"), "at least one input"),
        (lambda: ops.join([long, text], tmp_path / "o.wav"), "notes.mp3: not a readable audio file"),
        (lambda: ops.master(long, long), "long.wav: the output would overwrite an input"),
        (lambda: ops.mix(long, long, tmp_path / "long.wav"), "long.wav: the output would overwrite an input"),
        (lambda: ops.master(short, tmp_path / "o.wav"), "short.wav: is shorter than 0.4 s"),
    ]
    for call, message in cases:
        with pytest.raises(PostError) as info:
            call()
        assert message in str(info.value)
        assert isinstance(info.value, ValueError) and not isinstance(info.value, av.error.FFmpegError)


def test_truncated_file_is_a_post_error(tmp_path: Path) -> None:
    src = write_wav(tmp_path / "t.wav", tone(440, 1.0, 44100), 44100)
    mp3 = ops.trim(src, tmp_path / "t.mp3", start_s=0).path
    broken = tmp_path / "broken.mp3"
    broken.write_bytes(mp3.read_bytes()[:200])
    with pytest.raises(PostError, match=r"broken\.mp3"):
        ops.master(broken, tmp_path / "x.wav")


# --- building blocks ------------------------------------------------------------------------


def test_limiter_holds_the_ceiling_keeps_length_and_ignores_block_size() -> None:
    sr = 48000
    x = (RNG.standard_normal((2, sr)) * 0.05).astype(np.float32)
    x[:, 20000:20005] = 0.95
    outputs = []
    for size in (1000, 4096, sr):
        limiter = Limiter(0.5, sr, 2)
        parts = [limiter.process(x[:, i : i + size]) for i in range(0, sr, size)] + [limiter.flush()]
        outputs.append(np.concatenate(parts, axis=1))
    for y in outputs:
        assert y.shape == x.shape
        assert np.abs(y).max() <= 0.5 + 1e-6
        assert np.allclose(y, outputs[0], atol=1e-6)
    assert np.array_equal(outputs[0][:, :19000], x[:, :19000])  # untouched before the peak's look-ahead
    assert np.allclose(outputs[0][:, 45000:], x[:, 45000:], atol=1e-3)  # released after (80 ms time constant)


def test_peak_summary_merges_without_losing_the_maxima() -> None:
    x = RNG.uniform(-1, 1, (1, 100_003)).astype(np.float32) * 0.5
    x[0, 77_777] = 0.99
    summary = PeakSummary(keep=64)
    for i in range(0, x.shape[1], 777):
        summary.add(x[:, i : i + 777])
    peaks = summary.peaks(50)
    assert len(peaks) == 50 and max(peaks) == pytest.approx(0.99)
    assert int(np.argmax(peaks)) == 77_777 * 50 // 100_003


def test_join_crossfade_is_shortened_for_an_input_shorter_than_it(tmp_path: Path) -> None:
    sr = 44100
    a = write_wav(tmp_path / "a.wav", tone(300, 2.0, sr), sr)
    b = write_wav(tmp_path / "b.wav", tone(500, 0.2, sr), sr)
    c = write_wav(tmp_path / "c.wav", tone(700, 2.0, sr), sr)
    result = ops.join([a, b, c], tmp_path / "j.wav", crossfade_s=0.5)
    out, sr = decode(result.path)
    # b (0.2 s) fades entirely into a's end; c follows whole
    assert abs(out.shape[1] / sr - 4.0) <= 0.001
    assert abs(dominant_hz(out[:, round(2.3 * sr) : round(3.8 * sr)], sr) - 700) < 5
