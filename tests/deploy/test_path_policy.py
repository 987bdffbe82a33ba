"""Which local files a caller may have read: over HTTP never by the client's say-so, only inside
MCP_AUDIO_ALLOWED_DIRS; over stdio never `/`, the home folder or system folders by default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp_types import ListRootsResult, Root

from mcp_audio.config import ServerSettings
from mcp_audio.sandbox.fal_queue import FakeFal
from tests.helpers import make_wav, server, text_of
from tests.http_harness import http_server, mcp_client

pytestmark = pytest.mark.anyio


async def _whole_disk(context: Any) -> ListRootsResult:
    return ListRootsResult(roots=[Root(uri="file:///", name="everything")])


async def test_http_ignores_client_roots_and_reads_nothing_local_by_default(
    settings: ServerSettings, fake_fal: FakeFal
) -> None:
    with http_server(settings) as served:
        async with mcp_client(served.mcp, mode="legacy", list_roots_callback=_whole_disk) as client:
            result = await client.call_tool("whisper_transcribe", {"audio_url": "/etc/passwd"})
            instructions = client.instructions or ""
    assert "cannot read the user's local files" in instructions and "POST /uploads" in instructions
    assert result.is_error
    assert "local files are disabled (no allowed folders: the server's MCP_AUDIO_ALLOWED_DIRS)" in text_of(result)
    assert [r.kind for r in fake_fal.requests] == []  # nothing uploaded


async def test_http_reads_only_inside_allowed_dirs(settings: ServerSettings, fake_fal: FakeFal, rec_dir: Path) -> None:
    (rec_dir / "talk.wav").write_bytes(make_wav())
    env = {"MCP_AUDIO_ALLOWED_DIRS": str(rec_dir)}
    with http_server(settings, extra_env=env) as served:
        async with mcp_client(served.mcp, mode="legacy", list_roots_callback=_whole_disk) as client:
            outside = await client.call_tool("whisper_transcribe", {"audio_url": "/etc/passwd"})
            inside = await client.call_tool("whisper_transcribe", {"audio_url": str(rec_dir / "talk.wav")})
    assert outside.is_error and f"is outside the folders this server may read ({rec_dir.resolve()})" in text_of(outside)
    assert "MCP_AUDIO_ALLOWED_DIRS" in text_of(outside)
    assert not inside.is_error, text_of(inside)


@pytest.mark.parametrize("start_in", ["/", "home", "/etc"])
async def test_stdio_started_from_a_broad_folder_reads_only_the_output_folder(
    settings: ServerSettings, fake_fal: FakeFal, monkeypatch: pytest.MonkeyPatch, start_in: str
) -> None:
    folder = Path.home() if start_in == "home" else Path(start_in)
    monkeypatch.chdir(folder)
    async with Client(server(settings)) as client:
        result = await client.call_tool("whisper_transcribe", {"audio_url": "/etc/hostname"})
    assert result.is_error
    message = text_of(result)
    assert f"is outside the folders this server may read ({settings.output_dir.resolve()})" in message
    assert "MCP_AUDIO_ALLOWED_DIRS" in message
    assert [r.kind for r in fake_fal.requests] == []


async def test_stdio_started_from_a_project_folder_reads_it(
    settings: ServerSettings, fake_fal: FakeFal, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "take1.wav").write_bytes(make_wav())
    monkeypatch.chdir(project)
    async with Client(server(settings)) as client:
        result = await client.call_tool("whisper_transcribe", {"audio_url": "take1.wav"})
    assert not result.is_error, text_of(result)
