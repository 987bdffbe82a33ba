"""Shared fixtures: a clean environment, a loopback fal fake, settings pointing at it, and
MCP clients of every kind an agent uses (in-process in both protocol eras)."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from mcp import Client

from mcp_audio.config import Settings
from mcp_audio.sandbox._base import FakeUpstream
from mcp_audio.sandbox.fal_queue import FakeFal
from mcp_audio.sandbox.serve import serve_in_thread
from mcp_audio.server import build_server

FAL_KEY = "fal-test-key-0123456789abcdef"
Fake = TypeVar("Fake", bound=FakeUpstream[Any])


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's real keys or folders."""
    for name in list(os.environ):
        if name.startswith("MCP_AUDIO_") or name in (
            "FAL_KEY",
            "FAL_KEY_ID",
            "FAL_KEY_SECRET",
            "VOICE_API_KEY",
            "EIGEN_API_KEY",
        ):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that tries to reach a real host fails at name lookup instead of using the network."""
    real_getaddrinfo = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in ("127.0.0.1", "localhost", "::1", None) and not str(host).startswith("127."):
            raise OSError(f"test tried to reach {host!r}: only loopback is allowed")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)


def served(fake: Fake) -> Iterator[Fake]:
    """Serve a loopback fake for one test, with its base_url set (yield from it in a fixture)."""
    with serve_in_thread(fake.app) as url:
        fake.base_url = url
        yield fake


@pytest.fixture
def fake_fal() -> Iterator[FakeFal]:
    yield from served(FakeFal(valid_key=FAL_KEY, keepalive_s=0.2))


@pytest.fixture
def settings(tmp_path: Path, fake_fal: FakeFal) -> Settings:
    return Settings(
        fal_key=FAL_KEY,
        fal_queue_url=fake_fal.base_url,
        fal_run_url=fake_fal.base_url + "/run",
        fal_rest_url=fake_fal.base_url,
        fal_cdn_url=fake_fal.base_url,
        data_dir=tmp_path / "data",
        output_dir=tmp_path / "out",
        wait_s=10,
        download="never",  # tests of saved files turn it on; seed outputs point at real hosts
    )


@pytest.fixture
def rec_dir(tmp_path: Path) -> Path:
    """A folder of the user's recordings, which tests allow local file inputs from."""
    folder = tmp_path / "rec"
    folder.mkdir()
    return folder


@pytest.fixture(params=["auto", "legacy"], ids=["2026-era", "2025-era"])
async def client(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Client]:
    """A real MCP client connected in-process, in the modern era and the initialize era."""
    async with Client(build_server(settings), mode=request.param) as connected:
        yield connected


def assert_secret_kept(secret: str, settings: Settings, *texts: str) -> None:
    """`secret` is in none of `texts`, nor in the job database or its write-ahead log."""
    for text in texts:
        assert secret not in text
    wal = Path(str(settings.database_path) + "-wal")  # gone once a server closed the database
    for path in (settings.database_path, wal):
        if path.exists():
            assert secret.encode() not in path.read_bytes()


def env_for(settings: Settings) -> dict[str, str]:
    """The environment a subprocess server needs to use these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_AUDIO_") and k != "FAL_KEY"}
    env.update(
        FAL_KEY=FAL_KEY,
        MCP_AUDIO_FAL_QUEUE_URL=settings.fal_queue_url,
        MCP_AUDIO_FAL_RUN_URL=settings.fal_run_url,
        MCP_AUDIO_FAL_REST_URL=settings.fal_rest_url,
        MCP_AUDIO_FAL_CDN_URL=settings.fal_cdn_url,
        MCP_AUDIO_DATA_DIR=str(settings.data_dir),
        MCP_AUDIO_OUTPUT_DIR=str(settings.output_dir),
        MCP_AUDIO_WAIT_S=str(settings.wait_s),
        MCP_AUDIO_DOWNLOAD=settings.download or "always",
    )
    return env
