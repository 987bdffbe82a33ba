"""Benchmark of the local audio engine (mcp_audio.post) against the ffmpeg command line.

A synthetic narration (speech-like noise/tone bursts with pauses) over a looped music bed:
mix (ducking) to WAV, then master to -16 LUFS / -1 dBTP as MP3 (192 kbit/s CBR) and as FLAC.
The same job through ffmpeg: sidechaincompress + amix, then two-pass loudnorm (linear) per
format. Prints wall and CPU times (ffmpeg's as child-process CPU), x real time, what each
output measures, and the engine's time and peak RSS (ru_maxrss) for a 60-minute narration
mixed and mastered to MP3 in a subprocess.

    .venv/bin/python bench/post_bench.py [--minutes 10] [--long-minutes 60] [--formats mp3,flac] [--keep DIR]

Needs `ffmpeg` on PATH for the comparison (skipped with a note if missing).
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mcp_audio.post import ops
from mcp_audio.post.engine import AudioWriter, resolve_output
from mcp_audio.post.loudness import measure_file

SR = 44100


def write_narration(path: Path, minutes: float, seed: int = 7) -> Path:
    """Mono speech-like signal: phrases of syllable bursts (noise + a gliding harmonic tone)
    separated by pauses, about -20 LUFS; written block by block."""
    rng = np.random.default_rng(seed)
    out, spec = resolve_output(path, "wav")
    total = round(minutes * 60 * SR)
    # phrase plan: (start, end) in samples
    plan: list[tuple[int, int]] = []
    t = 0
    while t < total:
        talk = round(rng.uniform(1.5, 5.0) * SR)
        pause = round(rng.uniform(0.3, 1.2) * SR)
        plan.append((t, min(total, t + talk)))
        t += talk + pause
    block = SR * 10
    phase = 0.0
    with AudioWriter(out, spec, sample_rate=SR, channels=1) as writer:
        for start in range(0, total, block):
            n = min(block, total - start)
            pos = np.arange(start, start + n)
            gate = np.zeros(n, dtype=np.float32)
            for a, b in plan:
                if b > start and a < start + n:
                    gate[max(a, start) - start : min(b, start + n) - start] = 1.0
            tsec = pos / SR
            syllables = (0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * tsec)) ** 2
            f0 = 140 + 40 * np.sin(2 * np.pi * 0.3 * tsec)
            inst_phase = phase + np.cumsum(2 * np.pi * f0 / SR)
            phase = float(inst_phase[-1] % (2 * np.pi))
            voiced = 0.5 * np.sin(inst_phase) + 0.25 * np.sin(2 * inst_phase) + 0.12 * np.sin(3 * inst_phase)
            noise = rng.standard_normal(n) * 0.15
            x = 0.15 * gate * syllables * (voiced + noise)
            writer.write(x[None, :].astype(np.float32))
    return out


def write_music(path: Path, seconds: float = 20.0) -> Path:
    """Stereo music bed: a slow chord progression with soft noise, ~-14 LUFS."""
    rng = np.random.default_rng(3)
    out, spec = resolve_output(path, "wav")
    n = round(seconds * SR)
    t = np.arange(n) / SR
    chords = [(220.0, 277.2, 329.6), (196.0, 246.9, 293.7), (174.6, 220.0, 261.6), (196.0, 246.9, 329.6)]
    x = np.zeros(n)
    seg = n // len(chords)
    for i, chord in enumerate(chords):
        sl = slice(i * seg, (i + 1) * seg if i < len(chords) - 1 else n)
        for f in chord:
            x[sl] += 0.12 * np.sin(2 * np.pi * f * t[sl])
    left = x + 0.02 * rng.standard_normal(n)
    right = np.roll(x, 50) + 0.02 * rng.standard_normal(n)
    with AudioWriter(out, spec, sample_rate=SR, channels=2) as writer:
        writer.write(np.vstack([left, right]).astype(np.float32))
    return out


class Clock:
    """Wall time, this process's CPU time (all threads) and its children's CPU time (ffmpeg)."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()
        self.child = self._children()

    @staticmethod
    def _children() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def lap(self) -> tuple[float, float]:
        """(wall s, cpu s) since the last lap."""
        now, cpu, child = time.perf_counter(), time.process_time(), self._children()
        out = (now - self.wall, (cpu - self.cpu) + (child - self.child))
        self.wall, self.cpu, self.child = now, cpu, child
        return out


Timings = dict[str, tuple[float, float]]


def engine_job(voice: Path, music: Path, work: Path, formats: list[str]) -> tuple[Timings, dict[str, Path]]:
    """mix, then master to each format, through the engine."""
    times: Timings = {}
    outs: dict[str, Path] = {}
    clock = Clock()
    mixed = ops.mix(voice, music, work / "mix_engine.wav", music_gain_db=-18, duck_db=10, fade_in_s=1, fade_out_s=2)
    times["mix"] = clock.lap()
    for fmt in formats:
        outs[fmt] = ops.master(mixed.path, work / f"final_engine.{fmt}", loudness_lufs=-16, true_peak_db=-1).path
        times[fmt] = clock.lap()
    return times, outs


FFMPEG_CODECS = {"mp3": ["-c:a", "libmp3lame", "-b:a", "192k"], "flac": ["-c:a", "flac", "-sample_fmt", "s16"]}


def ffmpeg_job(
    voice: Path, music: Path, work: Path, voice_s: float, formats: list[str]
) -> tuple[Timings, dict[str, Path]]:
    """The same with the ffmpeg CLI: sidechaincompress + amix, then two-pass loudnorm per format."""
    times: Timings = {}
    outs: dict[str, Path] = {}
    total = 1 + voice_s + 2
    mixed = work / "mix_ffmpeg.wav"
    graph = (
        "[0:a]aformat=channel_layouts=stereo,adelay=1000|1000,apad=pad_dur=2,asplit=2[sc][v];"
        "[1:a]aformat=channel_layouts=stereo,volume=-18dB,afade=t=in:d=1[bed];"
        "[bed][sc]sidechaincompress=threshold=0.01:ratio=6:attack=15:release=300:makeup=1[ducked];"
        f"[ducked][v]amix=inputs=2:duration=first:normalize=0,afade=t=out:st={total - 2:.3f}:d=2"
    )
    base = ["ffmpeg", "-hide_banner", "-nostats", "-y"]
    clock = Clock()
    subprocess.run(
        [*base, "-loglevel", "error", "-i", str(voice), "-stream_loop", "-1", "-i", str(music),
         "-filter_complex", graph, "-t", f"{total:.3f}", "-c:a", "pcm_s16le", str(mixed)],
        check=True,
    )  # fmt: skip
    times["mix"] = clock.lap()
    for fmt in formats:
        first = subprocess.run(
            [*base, "-i", str(mixed), "-af", "loudnorm=I=-16:TP=-1:LRA=11:print_format=json", "-f", "null", "-"],
            check=True,
            capture_output=True,
            text=True,
        )
        stats = json.loads(re.findall(r"\{[^{}]*\}", first.stderr)[-1])
        final = work / f"final_ffmpeg.{fmt}"
        second = (
            f"loudnorm=I=-16:TP=-1:LRA=11:measured_I={stats['input_i']}:measured_TP={stats['input_tp']}"
            f":measured_LRA={stats['input_lra']}:measured_thresh={stats['input_thresh']}"
            f":offset={stats['target_offset']}:linear=true,aresample={SR}"
        )
        subprocess.run(
            [*base, "-loglevel", "error", "-i", str(mixed), "-af", second, *FFMPEG_CODECS[fmt], str(final)], check=True
        )
        outs[fmt] = final
        times[fmt] = clock.lap()
    return times, outs


def _child_long_run(voice: str, music: str, work: str) -> None:
    """Runs in a subprocess: the engine job on the long file, then prints JSON with ru_maxrss."""
    times, outs = engine_job(Path(voice), Path(music), Path(work), ["mp3"])
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"times": times, "rss_mb": rss_kb / 1024, "out": str(outs["mp3"])}))


def report(name: str, times: Timings, outs: dict[str, Path], audio_s: float) -> dict[str, float]:
    """Print one line per format (mix + master) and return the wall totals."""
    totals = {}
    mix_wall, mix_cpu = times["mix"]
    for fmt, path in outs.items():
        wall, cpu = times[fmt]
        totals[fmt] = mix_wall + wall
        print(
            f"{name:7s} mix {mix_wall:6.2f} s + master->{fmt:4s} {wall:6.2f} s = {mix_wall + wall:6.2f} s wall "
            f"({audio_s / (mix_wall + wall):6.1f}x real time; CPU {mix_cpu + cpu:6.2f} s = "
            f"{audio_s / (mix_cpu + cpu):6.1f}x)  -> {describe(path)}"
        )
    return totals


def describe(path: Path) -> str:
    m = measure_file(path)
    return f"{m.integrated_lufs:.2f} LUFS, {m.true_peak_db:.2f} dBTP, {m.samples / SR:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--long-minutes", type=float, default=60.0, help="0 skips the RSS run")
    parser.add_argument("--formats", default="mp3,flac", help="master output formats (mp3, flac)")
    parser.add_argument("--keep", type=Path, help="keep the files in this folder")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child_long_run(*args.child)
        return
    work = args.keep or Path(tempfile.mkdtemp(prefix="post_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        voice = write_narration(work / "narration.wav", args.minutes)
        music = write_music(work / "music.wav")
        audio_s = args.minutes * 60 + 3
        print(f"narration {args.minutes:g} min + 3 s of fades = {audio_s:.0f} s of output audio, 44.1 kHz")

        formats = args.formats.split(",")
        e_times, e_outs = engine_job(voice, music, work, formats)
        e_tot = report("engine", e_times, e_outs, audio_s)
        if shutil.which("ffmpeg"):
            f_times, f_outs = ffmpeg_job(voice, music, work, args.minutes * 60, formats)
            f_tot = report("ffmpeg", f_times, f_outs, audio_s)
            for fmt in formats:
                print(f"engine / ffmpeg wall time, {fmt}: {e_tot[fmt] / f_tot[fmt]:.2f}")
        else:
            print("ffmpeg not on PATH: comparison skipped")

        if args.long_minutes > 0:
            long_voice = write_narration(work / "narration_long.wav", args.long_minutes, seed=11)
            sub = work / "long"
            sub.mkdir(exist_ok=True)
            run = subprocess.run(
                [sys.executable, __file__, "--child", str(long_voice), str(music), str(sub)],
                check=True,
                capture_output=True,
                text=True,
            )
            stats = json.loads(run.stdout.strip().splitlines()[-1])
            long_s = args.long_minutes * 60 + 3
            (mix_wall, mix_cpu), (m_wall, m_cpu) = stats["times"]["mix"], stats["times"]["mp3"]
            print(
                f"engine, {args.long_minutes:g} min narration: mix {mix_wall:.2f} s + master->mp3 {m_wall:.2f} s "
                f"= {long_s / (mix_wall + m_wall):.1f}x real time (CPU {mix_cpu + m_cpu:.2f} s); "
                f"peak RSS {stats['rss_mb']:.0f} MB   -> {describe(Path(stats['out']))}"
            )
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
