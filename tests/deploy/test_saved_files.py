"""A saved output too large for one resource message is not read into memory: `files://` refuses
it and names `GET /files/JOB/NAME`, which streams the caller's own file with range requests
(issue 20, finding 3)."""

from __future__ import annotations

import json
import os

import httpx
import pytest

from mcp_audio.config import ServerSettings
from mcp_audio.sandbox.fal_queue import FakeFal
from tests.helpers import text_of
from tests.http_harness import add_token, http_server, mcp_client

pytestmark = pytest.mark.anyio


async def test_a_large_saved_file_is_streamed_by_its_route_not_a_resource_read(
    settings: ServerSettings, fake_fal: FakeFal
) -> None:
    alice, bob = add_token(settings, "alice"), add_token(settings, "bob")
    saved = settings.model_copy(update={"download": "always"})
    with http_server(saved, extra_env={"MCP_AUDIO_MAX_RESOURCE_MB": "0.001"}) as served:  # 1 kB
        async with mcp_client(served.mcp, alice) as client:
            made = await client.call_tool("lyria2_music", {"prompt": "calm"})
            assert not made.is_error, text_of(made)
            [entry] = (made.structured_content or {})["files"]
            job_id, name = entry["resource"].removeprefix("files://").split("/")
            with pytest.raises(Exception) as refused:
                await client.read_resource(entry["resource"])
        message = str(refused.value)
        assert "over the 0.001 MB a files:// read returns (MCP_AUDIO_MAX_RESOURCE_MB)" in message
        assert f"`GET /files/{job_id}/{name}`" in message
        url = f"{served.url}/files/{job_id}/{name}"
        whole = httpx.get(url, headers={"Authorization": f"Bearer {alice}"})
        part = httpx.get(url, headers={"Authorization": f"Bearer {alice}", "Range": "bytes=4-11"})
        others = httpx.get(url, headers={"Authorization": f"Bearer {bob}"})
        anonymous = httpx.get(url)
    assert whole.status_code == 200 and len(whole.content) == entry["file_size"] > 1024
    assert whole.headers["content-type"].startswith("audio/")
    assert part.status_code == 206 and part.content == whole.content[4:12]
    assert others.status_code == 404 and anonymous.status_code == 401


async def test_remote_callers_see_no_server_paths_and_state_is_owner_only(
    settings: ServerSettings, fake_fal: FakeFal
) -> None:
    token = add_token(settings, "alice")
    saved = settings.model_copy(update={"download": "always"})
    old_umask = os.umask(0o022)
    try:
        with http_server(saved) as served:
            async with mcp_client(served.mcp, token) as client:
                made = await client.call_tool("lyria2_music", {"prompt": "calm"})
                again = await client.call_tool("get_job", {"job_id": (made.structured_content or {})["job_id"]})
    finally:
        os.umask(old_umask)
    for result in (made, again):
        assert not result.is_error, text_of(result)
        shown = text_of(result) + json.dumps(result.structured_content)
        assert str(settings.output_dir) not in shown and str(settings.data_dir) not in shown
        [entry] = (result.structured_content or {})["files"]
        assert "path" not in entry and "file_uri" not in entry and entry["resource"] in text_of(result)
    [output] = list(settings.output_dir.iterdir())
    modes = {path: oct(path.stat().st_mode & 0o777) for path in (output, settings.output_dir, settings.data_dir)}
    modes |= {path: oct(path.stat().st_mode & 0o777) for path in settings.data_dir.glob("jobs.sqlite3*")}
    assert len(modes) >= 4, modes
    assert all(mode == ("0o700" if path.is_dir() else "0o600") for path, mode in modes.items()), modes
