"""Benchmark of the local audio engine (mcp_audio.post) against the ffmpeg command line.

A synthetic narration (speech-like noise/tone bursts with pauses) over a looped music bed:
mix (ducking), then master to -16 LUFS / -1 dBTP as MP3. The same job through ffmpeg:
sidechaincompress + amix, then two-pass loudnorm (linear). Prints wall times, x real time,
the outputs' loudness, and the engine's peak RSS on a 60-minute narration (in a subprocess).

    .venv/bin/python bench/post_bench.py [--minutes 10] [--long-minutes 60] [--keep DIR]

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


def engine_job(voice: Path, music: Path, work: Path) -> tuple[float, float, Path]:
    """mix + master through the engine; returns (mix seconds, master seconds, output)."""
    t0 = time.perf_counter()
    mixed = ops.mix(voice, music, work / "mix_engine.wav", music_gain_db=-18, duck_db=10, fade_in_s=1, fade_out_s=2)
    t1 = time.perf_counter()
    mastered = ops.master(mixed.path, work / "final_engine.mp3", loudness_lufs=-16, true_peak_db=-1)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, mastered.path


def ffmpeg_job(voice: Path, music: Path, work: Path, voice_s: float) -> tuple[float, float, Path]:
    """The same with the ffmpeg CLI; returns (mix seconds, two-pass loudnorm seconds, output)."""
    total = 1 + voice_s + 2
    mixed = work / "mix_ffmpeg.wav"
    graph = (
        "[0:a]aformat=channel_layouts=stereo,adelay=1000|1000,apad=pad_dur=2,asplit=2[sc][v];"
        "[1:a]aformat=channel_layouts=stereo,volume=-18dB,afade=t=in:d=1[bed];"
        "[bed][sc]sidechaincompress=threshold=0.01:ratio=6:attack=15:release=300:makeup=1[ducked];"
        f"[ducked][v]amix=inputs=2:duration=first:normalize=0,afade=t=out:st={total - 2:.3f}:d=2"
    )
    base = ["ffmpeg", "-hide_banner", "-nostats", "-y"]
    t0 = time.perf_counter()
    subprocess.run(
        [*base, "-loglevel", "error", "-i", str(voice), "-stream_loop", "-1", "-i", str(music),
         "-filter_complex", graph, "-t", f"{total:.3f}", "-c:a", "pcm_s16le", str(mixed)],
        check=True,
    )  # fmt: skip
    t1 = time.perf_counter()
    first = subprocess.run(
        [*base, "-i", str(mixed), "-af", "loudnorm=I=-16:TP=-1:LRA=11:print_format=json", "-f", "null", "-"],
        check=True,
        capture_output=True,
        text=True,
    )
    stats = json.loads(re.findall(r"\{[^{}]*\}", first.stderr)[-1])
    final = work / "final_ffmpeg.mp3"
    second = (
        f"loudnorm=I=-16:TP=-1:LRA=11:measured_I={stats['input_i']}:measured_TP={stats['input_tp']}"
        f":measured_LRA={stats['input_lra']}:measured_thresh={stats['input_thresh']}"
        f":offset={stats['target_offset']}:linear=true,aresample={SR}"
    )
    subprocess.run(
        [*base, "-loglevel", "error", "-i", str(mixed), "-af", second, "-c:a", "libmp3lame", "-b:a", "192k", str(final)],
        check=True,
    )
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, final


def _child_long_run(voice: str, music: str, work: str) -> None:
    """Runs in a subprocess: the engine job on the long file, then prints JSON with ru_maxrss."""
    mix_s, master_s, out = engine_job(Path(voice), Path(music), Path(work))
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"mix_s": mix_s, "master_s": master_s, "rss_mb": rss_kb / 1024, "out": str(out)}))


def describe(path: Path) -> str:
    m = measure_file(path)
    return f"{m.integrated_lufs:.2f} LUFS, {m.true_peak_db:.2f} dBTP, {m.samples / SR:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--long-minutes", type=float, default=60.0, help="0 skips the RSS run")
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

        e_mix, e_master, e_out = engine_job(voice, music, work)
        e_total = e_mix + e_master
        print(
            f"engine  mix {e_mix:6.2f} s  master {e_master:6.2f} s  total {e_total:6.2f} s "
            f"= {audio_s / e_total:6.1f}x real time   -> {describe(e_out)}"
        )
        if shutil.which("ffmpeg"):
            f_mix, f_master, f_out = ffmpeg_job(voice, music, work, args.minutes * 60)
            f_total = f_mix + f_master
            print(
                f"ffmpeg  mix {f_mix:6.2f} s  master {f_master:6.2f} s  total {f_total:6.2f} s "
                f"= {audio_s / f_total:6.1f}x real time   -> {describe(f_out)}"
            )
            print(f"engine / ffmpeg wall time: {e_total / f_total:.2f}")
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
            total = stats["mix_s"] + stats["master_s"]
            print(
                f"engine, {args.long_minutes:g} min: mix {stats['mix_s']:.2f} s  master {stats['master_s']:.2f} s  "
                f"= {long_s / total:.1f}x real time; peak RSS {stats['rss_mb']:.0f} MB"
                f"   -> {describe(Path(stats['out']))}"
            )
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
