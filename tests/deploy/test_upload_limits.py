"""Uploads are a fair share: a per-caller quota (count and bytes), expired ones swept on a timer,
a full disk answered as such, and `upload://` usable inside list inputs (issue 20, findings 6, 9)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mcp_audio.config import ServerSettings
from tests.helpers import body_of, make_wav, mounted_tmpfs, text_of
from tests.http_harness import TRUST, add_token, http_server, mcp_client

pytestmark = pytest.mark.anyio


def _upload(url: str, body: bytes, token: str) -> httpx.Response:
    return httpx.post(
        url + "/uploads", content=body, headers={"Authorization": f"Bearer {token}"}, timeout=30, verify=TRUST
    )


def _kept(settings: ServerSettings) -> list[Path]:
    return [path for path in (settings.data_dir / "uploads").rglob("*") if path.is_file()]


def test_each_caller_has_a_quota_of_files_and_bytes(settings: ServerSettings) -> None:
    alice, bob = add_token(settings, "alice"), add_token(settings, "bob")
    wav = make_wav(1.0)  # 32 kB
    with http_server(settings, extra_env={"MCP_AUDIO_UPLOAD_QUOTA_FILES": "2"}) as served:
        assert [_upload(served.url, wav, alice).status_code for _ in range(2)] == [201, 201]
        third = _upload(served.url, wav, alice)
        assert _upload(served.url, wav, bob).status_code == 201  # another caller's share is untouched
    assert third.status_code == 507
    assert "MCP_AUDIO_UPLOAD_QUOTA_FILES" in third.json()["error"]
    with http_server(settings, extra_env={"MCP_AUDIO_UPLOAD_QUOTA_MB": "0.05"}) as served:
        over = _upload(served.url, make_wav(1.0), bob)  # bob keeps 32 kB already
    assert over.status_code == 507 and "MCP_AUDIO_UPLOAD_QUOTA_MB" in over.json()["error"]
    assert len(_kept(settings)) == 3  # nothing of the refused ones


def test_expired_uploads_are_swept_without_another_upload(settings: ServerSettings) -> None:
    alice = add_token(settings, "alice")
    with http_server(settings, extra_env={"MCP_AUDIO_UPLOAD_KEEP_S": "1"}) as served:
        assert _upload(served.url, make_wav(0.5), alice).status_code == 201
        assert len(_kept(settings)) == 1
        deadline = time.monotonic() + 10
        while _kept(settings) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _kept(settings) == []


@pytest.fixture
def small_uploads_disk(settings: ServerSettings) -> Iterator[Path]:
    """A 1 MB tmpfs where the uploads go (needs root; skipped where mounting is not allowed)."""
    folder = settings.data_dir / "uploads"
    folder.mkdir(parents=True)
    yield from mounted_tmpfs(folder, "1m")


def test_a_full_disk_is_answered_as_such(settings: ServerSettings, small_uploads_disk: Path) -> None:
    alice = add_token(settings, "alice")
    wav = make_wav(10.0)  # 320 kB
    with http_server(settings) as served:
        answers = [_upload(served.url, wav, alice) for _ in range(4)]
    assert [a.status_code for a in answers[:3]] == [201, 201, 201]
    assert answers[3].status_code == 507
    assert answers[3].json() == {"error": "the server's disk is full; try again later"}


async def test_uploads_are_files_inside_list_inputs_and_private(settings: ServerSettings) -> None:
    alice = add_token(settings, "alice")
    old_umask = os.umask(0o022)
    try:
        with http_server(settings) as served:
            first, second = (_upload(served.url, make_wav(0.5), alice).json()["file"] for _ in range(2))
            async with mcp_client(served.mcp, alice) as client:
                joined = await client.call_tool(
                    "audio_join", {"audio_urls": [first, second], "gap_s": 0, "format": "wav"}
                )
    finally:
        os.umask(old_umask)
    assert not joined.is_error, text_of(joined)
    assert body_of(joined)["output"]["duration_s"] == pytest.approx(1.0, abs=0.05)
    [kept, _] = sorted(_kept(settings))
    assert oct(kept.stat().st_mode & 0o777) == oct(0o600)
    assert oct(kept.parent.stat().st_mode & 0o777) == oct(0o700)
