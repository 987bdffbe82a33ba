"""Fixtures: a clean environment, one loopback fake per upstream for the whole session (reset
before each test), settings pointing at them, and MCP clients in both protocol eras."""

from __future__ import annotations

import gc
import importlib.util
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from pydantic import SecretStr

from mcp_audio.config import ServerSettings, Settings
from mcp_audio.core.upstreams import REMOTE
from mcp_audio.sandbox._base import FakeUpstream
from mcp_audio.sandbox.eigen import FakeEigen
from mcp_audio.sandbox.fal_queue import FakeFal
from mcp_audio.sandbox.serve import fake_for
from mcp_audio.sandbox.voice_api import FakeVoiceApi
from tests.forked import stop_fork_server
from tests.helpers import EIGEN_KEY, FAL_KEY, KEYS, VOICE_HOST, VOICE_KEY, env_for, served, server
from tests.pg_harness import HOW_TO_RUN, PgServer, find_bin_dir
from tests.pg_harness import pg_server as start_pg_server

# Test modules are compiled with their asserts rewritten once, not in every test process of every
# run (about 3 CPU-seconds a process): PYTHONDONTWRITEBYTECODE would otherwise keep pytest from
# caching them (in __pycache__, which git ignores).
sys.dont_write_bytecode = False


def pytest_collection_finish(session: pytest.Session) -> None:
    """What a test process holds from here on (the SDK, the catalog, every test module) is set
    aside from garbage collection, as a server does after its start (cli._started): each full
    collection walked all of it again, a fifth of the in-process tests' CPU time."""
    gc.collect()
    gc.freeze()


def pytest_unconfigure(config: pytest.Config) -> None:
    stop_fork_server()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's real keys or folders."""
    keys = {upstream.key_env for upstream in REMOTE.values()} | {"FAL_KEY_ID", "FAL_KEY_SECRET"}
    for name in list(os.environ):
        if name.startswith("MCP_AUDIO_") or name in keys:
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that tries to reach a real host fails at name lookup instead of using the network."""
    real_getaddrinfo = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host  # anyio passes IDNA-encoded bytes
        if name not in ("127.0.0.1", "localhost", "::1", None) and not str(name).startswith("127."):
            raise OSError(f"test tried to reach {host!r}: only loopback is allowed")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)


# --- one served fake per upstream, shared by the session, reset for each test ---------------


# Options the tests give a fake beyond its key (a short SSE keep-alive, the expected gateway host).
FAKE_OPTIONS: dict[str, dict[str, Any]] = {"fal": {"keepalive_s": 0.2}, "voice_api": {"host": VOICE_HOST}}


@pytest.fixture(scope="session")
def fakes() -> Iterator[dict[str, FakeUpstream[Any]]]:
    """Every registered upstream's fake, served on loopback once for the whole session."""
    with ExitStack() as stack:
        yield {
            name: stack.enter_context(
                contextmanager(served)(fake_for(upstream, KEYS[name], **FAKE_OPTIONS.get(name, {})))
            )
            for name, upstream in REMOTE.items()
        }


def _fresh(fakes: dict[str, FakeUpstream[Any]], name: str) -> Any:
    fake = fakes[name]
    fake.reset()
    return fake


@pytest.fixture
def fake_fal(fakes: dict[str, FakeUpstream[Any]]) -> FakeFal:
    fake: FakeFal = _fresh(fakes, "fal")
    return fake


@pytest.fixture
def fake_voice(fakes: dict[str, FakeUpstream[Any]]) -> FakeVoiceApi:
    fake: FakeVoiceApi = _fresh(fakes, "voice_api")
    return fake


@pytest.fixture
def fake_eigen(fakes: dict[str, FakeUpstream[Any]]) -> FakeEigen:
    fake: FakeEigen = _fresh(fakes, "eigen")
    return fake


# --- settings -----------------------------------------------------------------------------


@pytest.fixture
def rec_dir(tmp_path: Path) -> Path:
    """A folder of the user's recordings, which tests allow local file inputs from."""
    folder = tmp_path / "rec"
    folder.mkdir()
    return folder


def _folders(tmp_path: Path) -> dict[str, Any]:
    return {"data_dir": tmp_path / "data", "output_dir": tmp_path / "out", "wait_s": 10}


@pytest.fixture
def settings(tmp_path: Path, fake_fal: FakeFal) -> ServerSettings:
    url = fake_fal.base_url
    assert url is not None
    return Settings(
        fal_key=FAL_KEY,
        fal_queue_url=url,
        fal_run_url=url + "/run",
        fal_rest_url=url,
        fal_cdn_url=url,
        download="never",  # tests of saved files turn it on; seed outputs point at real hosts
        **_folders(tmp_path),
    )


@pytest.fixture
def voice_settings(tmp_path: Path, fake_voice: FakeVoiceApi, rec_dir: Path) -> ServerSettings:
    # No fal settings: these tools never reach fal.
    assert fake_voice.base_url is not None
    return Settings(
        voice_api_key=VOICE_KEY,
        voice_api_url=fake_voice.base_url,
        voice_api_host=VOICE_HOST,
        allowed_dirs=str(rec_dir),
        download="never",
        **_folders(tmp_path),
    )


@pytest.fixture
def eigen_settings(tmp_path: Path, fake_eigen: FakeEigen, rec_dir: Path) -> ServerSettings:
    assert fake_eigen.base_url is not None
    return Settings(
        eigen_api_key=EIGEN_KEY, eigen_url=fake_eigen.base_url, allowed_dirs=str(rec_dir), **_folders(tmp_path)
    )


@pytest.fixture(params=["auto", "legacy"], ids=["2026-era", "2025-era"])
async def client(request: pytest.FixtureRequest, settings: ServerSettings) -> AsyncIterator[Client]:
    """A real MCP client connected in-process, in the modern era and the initialize era."""
    async with Client(server(settings), mode=request.param) as connected:
        yield connected


# --- the job store on both backends ---------------------------------------------------------


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One real PostgreSQL server for the session (per xdist worker); skips if it is not installed,
    unless CI is set, where these tests must run."""
    bin_dir = find_bin_dir()
    missing = HOW_TO_RUN if bin_dir is None else None
    if importlib.util.find_spec("psycopg") is None:
        missing = "PostgreSQL tests skipped: psycopg is not installed; run `pip install 'psycopg[binary]'`"
    if missing is not None or bin_dir is None:
        if os.environ.get("CI"):
            pytest.fail(missing or HOW_TO_RUN)
        pytest.skip(missing or HOW_TO_RUN)
    with start_pg_server(bin_dir) as started:
        yield started


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A fresh, migrated PostgreSQL database of its own for this test."""
    return pg_server.fresh_database()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """Each backend in turn: None (the data dir's SQLite file) or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("pg_url")
    return url


def on_backend(settings: ServerSettings, database_url: str | None) -> ServerSettings:
    """These settings with the store on the given backend."""
    return settings.model_copy(update={"database_url": SecretStr(database_url) if database_url else None})


# --- an S3-compatible loopback server (moto in server mode) ---------------------------------

S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "test-access-key",
    "AWS_SECRET_ACCESS_KEY": "test-secret",
    "AWS_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 on loopback for the session; its URL (MCP_AUDIO_S3_ENDPOINT_URL)."""
    server_module = pytest.importorskip("moto.server", reason="S3 tests need moto: pip install 'moto[server]'")
    from tests.http_harness import free_port

    port = free_port()
    moto = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        moto.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    """A new, empty bucket for this test, with credentials in the environment; its name."""
    import boto3

    for name, value in S3_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    bucket = f"test-{abs(hash(request.node.nodeid)) % 10**10}-{os.getpid()}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture
def every_settings(
    tmp_path: Path, rec_dir: Path, fake_fal: FakeFal, fake_voice: FakeVoiceApi, fake_eigen: FakeEigen
) -> ServerSettings:
    """Every upstream configured at once, local files allowed from rec_dir."""
    fal = fake_fal.base_url
    assert fal is not None and fake_voice.base_url is not None and fake_eigen.base_url is not None
    return Settings(
        fal_key=FAL_KEY,
        fal_queue_url=fal,
        fal_run_url=fal + "/run",
        fal_rest_url=fal,
        fal_cdn_url=fal,
        voice_api_key=VOICE_KEY,
        voice_api_url=fake_voice.base_url,
        voice_api_host=VOICE_HOST,
        eigen_api_key=EIGEN_KEY,
        eigen_url=fake_eigen.base_url,
        allowed_dirs=str(rec_dir),
        download="never",  # seed outputs point at real hosts; tests that save turn it on
        data_dir=tmp_path / "data",
        output_dir=tmp_path / "out",
        wait_s=30,
    )


@pytest.fixture(params=["auto", "legacy"], ids=["2026-era", "2025-era"])
async def every_client(request: pytest.FixtureRequest, every_settings: ServerSettings) -> AsyncIterator[Client]:
    """A client of both protocol eras on a server with every upstream configured (downloads on)."""
    saving = every_settings.model_copy(update={"download": "always", "wait_s": 10})
    async with Client(server(saving), mode=request.param) as connected:
        yield connected


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The environment of `settings`, and the root logger put back after the CLI configured it."""
    for name, value in env_for(settings).items():
        monkeypatch.setenv(name, value)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield settings
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A folder on a 2 MB tmpfs of its own: a data or output dir that really fills up."""
    from tests.helpers import mounted_tmpfs

    where = tmp_path / "small"
    where.mkdir()
    yield from mounted_tmpfs(where, "2m")
