"""Saving an output off the event loop: the bytes and hash of a file larger than one write
batch, and no file under either name when the download is cancelled, refused or breaks."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp_audio.files.outputs import WRITE_BATCH, DownloadRefused, write_atomically
from tests.helpers import make_wav

pytestmark = pytest.mark.anyio


async def pieces(data: bytes, size: int = 65536, then_hang: bool = False) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]
        await anyio.lowlevel.checkpoint()
    if then_hang:
        await anyio.sleep_forever()


async def test_a_file_of_several_batches_is_written_whole_with_its_hash(tmp_path: Path) -> None:
    data = make_wav(1.0) + bytes(range(256)) * (3 * WRITE_BATCH // 256 + 7)
    target = tmp_path / "out" / "take.wav"
    size, digest = await write_atomically(target, pieces(data), declared="audio/wav")
    assert size == len(data) and digest == hashlib.sha256(data).hexdigest()
    assert target.read_bytes() == data and [p.name for p in target.parent.iterdir()] == ["take.wav"]


async def test_a_cancelled_download_leaves_nothing_under_either_name(tmp_path: Path) -> None:
    target = tmp_path / "take.wav"
    data = make_wav(1.0) + bytes(2 * WRITE_BATCH)  # two batches written, then the transfer stalls
    with anyio.move_on_after(0.5) as waited:
        await write_atomically(target, pieces(data, then_hang=True), declared="audio/wav")
    assert waited.cancelled_caught
    assert list(tmp_path.iterdir()) == []


async def test_a_refused_or_broken_download_leaves_nothing(tmp_path: Path) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield make_wav(1.0)
        yield bytes(WRITE_BATCH)
        raise OSError("connection reset")

    with pytest.raises(DownloadRefused):
        await write_atomically(tmp_path / "a.wav", pieces(bytes(3 * WRITE_BATCH)), max_bytes=WRITE_BATCH)
    with pytest.raises(DownloadRefused):  # an HTML page declared as audio
        await write_atomically(tmp_path / "b.wav", pieces(b"<html>" + bytes(100)), declared="audio/wav")
    with pytest.raises(OSError, match="reset"):
        await write_atomically(tmp_path / "c.wav", broken(), declared="audio/wav")
    assert list(tmp_path.iterdir()) == []


async def test_the_writes_run_off_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Which thread opens, syncs and renames the file is what matters here (the bench measures the loop's lag).
    loop_thread, writers = threading.get_ident(), set()

    def watched(real: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            writers.add(threading.get_ident())
            return real(*args, **kwargs)

        return call

    for name in ("open", "fsync", "replace"):
        monkeypatch.setattr(os, name, watched(getattr(os, name)))
    await write_atomically(tmp_path / "t.wav", pieces(make_wav(1.0)), declared="audio/wav")
    assert writers and loop_thread not in writers
