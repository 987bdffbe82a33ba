"""Benchmark: what C2PA signing (mcp_audio.files.provenance) adds to mastering a long file.

A synthetic 10-minute narration (bench/post_bench.py's) is mastered to -16 LUFS / -1 dBTP with
the post engine, per format; then the output is signed as an edit with the narration as its
ingredient (what the post tools do). Goal: signing adds at most 10% to the master's time.

`--tool`: the same through the server, as an agent meets it: `audio_master` called through an
in-process MCP client, with MCP_AUDIO_PROVENANCE=off and on (a fresh server each call, so the
on side includes loading the certificate), the best of `--runs` calls of each kept. Wall time and
this process's CPU time (the server runs in it): on a loaded machine the CPU figure is the steadier.

    .venv/bin/python bench/provenance.py [--minutes 10] [--formats mp3,flac,wav,m4a,ogg] [--runs 1] [--tool]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from post_bench import write_narration

from mcp_audio.files.provenance import Creation, Ingredient, load_signer, read_provenance, sign_audio
from mcp_audio.post import ops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--formats", default="mp3,flac,wav,m4a,ogg")
    parser.add_argument("--runs", type=int, default=1, help="signing runs per format (the best is kept)")
    parser.add_argument("--tool", action="store_true", help="time audio_master through the MCP server, off vs on")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="provenance_bench_"))
    try:
        t0 = time.perf_counter()
        identity = load_signer(work / "data")  # made once: its cost is not per file
        print(f"development certificate made and probed in {time.perf_counter() - t0:.3f} s")
        voice = write_narration(work / "narration.wav", args.minutes)
        # the narration as a generated file, so the master has an ingredient with a manifest
        sign_audio(voice, identity=identity, created=Creation("fal", "bench/model"), title="narration",
                   now=datetime.now(UTC))  # fmt: skip
        print(f"narration: {args.minutes:g} min, {voice.stat().st_size / 1e6:.1f} MB WAV")
        if args.tool:
            import anyio

            anyio.run(through_the_tool, voice, work, args.formats.split(","), args.runs)
            return
        for fmt in args.formats.split(","):
            t0 = time.perf_counter()
            out = ops.master(voice, work / f"final.{fmt}", loudness_lufs=-16, true_peak_db=-1).path
            master_s = time.perf_counter() - t0
            size = out.stat().st_size
            best = float("inf")
            for _ in range(args.runs):
                copy = out.with_name(f"signed.{fmt}")
                shutil.copyfile(out, copy)
                t0 = time.perf_counter()
                result = sign_audio(copy, identity=identity, ingredients=[Ingredient(voice)], title=copy.name,
                                    now=datetime.now(UTC), operation="master")  # fmt: skip
                best = min(best, time.perf_counter() - t0)
            t0 = time.perf_counter()
            report = read_provenance(copy)
            read_s = time.perf_counter() - t0
            assert report.signature_valid and not report.tampered and report.ai_generated
            where = "embedded" if result.embedded else "sidecar"
            print(
                f"{fmt:5s} {size / 1e6:6.1f} MB  master {master_s:6.2f} s  + sign {best:5.2f} s ({where}) "
                f"= {100 * best / master_s:4.1f}% of the master;  read+validate {read_s:.2f} s"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def through_the_tool(voice: Path, work: Path, formats: list[str], runs: int) -> None:
    from mcp import Client

    from mcp_audio.config import Settings
    from mcp_audio.server import build_server

    for fmt in formats:
        best = {"off": float("inf"), "on": float("inf")}
        cpu = {"off": float("inf"), "on": float("inf")}
        for mode in ("off", "on") * runs:  # alternated: a busy machine weighs on both alike
            settings = Settings(
                data_dir=work / "data", output_dir=work / f"out-{mode}", allowed_dirs=str(work), wait_s=3600,
                download="always", provenance=mode,
            )  # fmt: skip
            async with Client(build_server(settings)) as client:
                t0, c0 = time.perf_counter(), time.process_time()
                result = await client.call_tool("audio_master", {"audio_url": str(voice), "format": fmt})
                took, used = time.perf_counter() - t0, time.process_time() - c0
            assert not result.is_error and result.structured_content is not None, result
            first = result.structured_content["files"][0]
            assert ("credentials" in first) is (mode == "on"), first
            best[mode], cpu[mode] = min(best[mode], took), min(cpu[mode], used)
            Path(first["path"]).unlink()
        added, added_cpu = best["on"] - best["off"], cpu["on"] - cpu["off"]
        print(
            f"{fmt:5s} audio_master wall: off {best['off']:6.2f} s, on {best['on']:6.2f} s ({added:+.2f} s = "
            f"{100 * added / best['off']:+.1f}%);  CPU: off {cpu['off']:6.2f} s, on {cpu['on']:6.2f} s "
            f"({added_cpu:+.2f} s = {100 * added_cpu / cpu['off']:+.1f}%)",
            flush=True,
        )


if __name__ == "__main__":
    main()
