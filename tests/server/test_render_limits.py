"""The local tools' limits and failures as an agent meets them (a real MCP client, in process):
inputs whose headers lie about their length are refused once their decoded audio passes
MCP_AUDIO_MAX_AUDIO_S, naming the input field and the limit; malformed inputs, a full output
folder (a real tmpfs) and unreadable URLs are answered with their cause, never "internal error"."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from mcp import Client

from mcp_audio.config import ServerSettings, Settings
from tests.helpers import body_of, make_lying_flac, make_wav, server, text_of

pytestmark = pytest.mark.anyio


async def test_join_refuses_inputs_whose_decoded_total_passes_the_limit(tmp_path: Path, rec_dir: Path) -> None:
    parts = []
    for i in range(3):  # each claims 1 s in its header and holds 40 s
        parts.append(rec_dir / f"part{i}.flac")
        parts[-1].write_bytes(make_lying_flac(40.0, 1.0))
    settings = Settings(
        data_dir=tmp_path / "data",
        output_dir=tmp_path / "out",
        allowed_dirs=str(rec_dir),
        wait_s=60,
        download="always",
        max_audio_s=60,
    )
    async with Client(server(settings)) as client:
        result = await client.call_tool("audio_join", {"audio_urls": [str(p) for p in parts]})
        one = await client.call_tool("audio_info", {"audio_url": str(parts[0])})
    message = text_of(result)
    assert result.is_error and body_of(result)["status"] == "failed", message
    assert "`audio_urls[1]`: part1.flac: the joined inputs pass the limit of 60 s of decoded audio" in message
    assert not list((tmp_path / "out").rglob("*.flac"))  # nothing written
    assert not one.is_error and body_of(one)["output"]["duration_s"] == pytest.approx(40.0)  # alone: within it


def odd_wav(rate: int, bits: int, samples: int = 100) -> bytes:
    """A PCM WAV whose header says `rate` Hz and `bits` bits per sample (mono)."""
    width = max(bits, 8) // 8
    data = bytes(samples * width)
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * width, width, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def local_settings(tmp_path: Path, rec_dir: Path, **more: object) -> ServerSettings:
    fields: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "output_dir": tmp_path / "out",
        "allowed_dirs": str(rec_dir),
        "wait_s": 60,
        "download": "always",
    }
    return Settings(**(fields | more))


async def test_malformed_wavs_are_refused_with_their_cause(tmp_path: Path, rec_dir: Path) -> None:
    (rec_dir / "zero_bit.wav").write_bytes(odd_wav(16000, 0))
    (rec_dir / "one_hz.wav").write_bytes(odd_wav(1, 16))
    async with Client(server(local_settings(tmp_path, rec_dir))) as client:
        zero = await client.call_tool("audio_info", {"audio_url": str(rec_dir / "zero_bit.wav")})
        slow = await client.call_tool("audio_master", {"audio_url": str(rec_dir / "one_hz.wav")})
    assert zero.is_error and "internal error" not in text_of(zero)
    assert "`audio_url`: zero_bit.wav: its audio stream cannot be decoded" in text_of(zero), text_of(zero)
    assert slow.is_error and "internal error" not in text_of(slow)
    assert "`audio_url`: one_hz.wav: its sample rate is 1 Hz; rates from 4000" in text_of(slow), text_of(slow)


async def test_a_full_output_folder_says_so(tmp_path: Path, rec_dir: Path, small_disk: Path) -> None:
    (rec_dir / "long.wav").write_bytes(make_wav(15.0, rate=48000, channels=2))  # 2.9 MB: more than the disk
    settings = local_settings(tmp_path, rec_dir, output_dir=small_disk / "out")
    async with Client(server(settings)) as client:
        result = await client.call_tool("audio_trim", {"audio_url": str(rec_dir / "long.wav"), "start_s": 0.5})
    message = text_of(result)
    assert result.is_error and body_of(result)["status"] == "failed", message
    assert "The output folder's disk is full (MCP_AUDIO_OUTPUT_DIR)" in message and "internal error" not in message
    assert not [p for p in small_disk.rglob("*") if p.is_file()]  # no partial file left


async def test_an_unreadable_url_host_names_its_cause(tmp_path: Path, rec_dir: Path) -> None:
    async with Client(server(local_settings(tmp_path, rec_dir))) as client:
        result = await client.call_tool("audio_info", {"audio_url": "https://0177.0.0.1/x.wav"})
    message = text_of(result)
    assert result.is_error and message.strip() != "Error executing tool audio_info", message
    assert "`audio_url`" in message or "audio_info could not start: " in message, message
