"""The local tools' limits as an agent meets them (a real MCP client, in process): inputs whose
headers lie about their length are refused once their decoded audio passes
MCP_AUDIO_MAX_AUDIO_S, naming the input field and the limit."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client

from mcp_audio.config import Settings
from tests.helpers import body_of, make_lying_flac, server, text_of

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
