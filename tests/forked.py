"""`python -m mcp_audio ARGS` as a real process of its own, forked from a warm interpreter
(multiprocessing's fork server, one per test process) instead of started cold: the child runs
`mcp_audio.cli.main(ARGS)` with the given environment, stderr (and stdout) to files, and can be
signalled, killed and waited for like any process. A cold start imports the MCP SDK and the
package (about a CPU-second); a fork costs a tenth of that. Tests of start-up itself (what a
fresh interpreter imports, how long it takes) start `sys.executable` instead."""

from __future__ import annotations

import contextlib
import errno
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from mcp_audio.net import ssl_context

# What every mcp-audio command of the tests imports (`serve --http`'s start, read with
# `python -X importtime`), and what their first calls import (a fal provider, the PostgreSQL
# store, content credentials, OAuth: a py-spy of the suite found these imports were 44% of the
# forked processes' CPU), loaded once in the fork server. Nothing here may start a thread (numpy
# does): a fork copies only the thread that forks.
PRELOAD = [
    "mcp_audio.cli",
    "mcp_audio.config",
    "mcp_audio.core.logs",
    "mcp_audio.server",
    "mcp_audio.deploy.app",
    "mcp_audio.deploy.webhooks",
    "mcp_audio.providers.fal",
    "mcp_audio.store.postgres",
    "mcp_audio.files.provenance",
    "psycopg",
    "psycopg_pool",
    "jwt",
    "jsonschema",
    "anyio._backends._asyncio",
    "prometheus_client",
    "rich.console",
    "rich.logging",
    "uvicorn",
    "uvicorn.protocols.websockets.websockets_sansio_impl",
    "anyio._core._sockets",
    "tests.forked",
]

_context: Any = None


def _forks() -> Any:
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def _child(args: list[str], env: dict[str, str], cwd: str, stdio: tuple[str | None, str | None, str]) -> None:
    """In the forked process: the environment, folder, stdio and argv of `python -m mcp_audio ARGS`."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    stdin, stdout, stderr = stdio
    if stdin is not None:  # a FIFO the test writes to: opening it waits for the test's end
        source = os.open(stdin, os.O_RDONLY)
        sys.stdin.close()  # multiprocessing's os.devnull, which would close fd 0 once collected
        os.dup2(source, 0)
        os.close(source)
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115 (the process's own)
    for fd, path in ((1, stdout or os.devnull), (2, stderr)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.dup2(target, fd)
        os.close(target)
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.argv = [sys.executable, *args]
    from mcp_audio.cli import main

    code = main(args)
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)


class ForkedProcess:
    """The little of subprocess.Popen the tests use, for a forked `mcp-audio` process."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        *,
        capture_stdout: bool = False,
        stdin: bool = False,
        stderr: Path | None = None,
    ) -> None:
        """`stdin`: a pipe the test writes to (`self.stdin`), open until `clean_up`; `stderr`: a
        file to append the process's stderr to instead of one of its own."""
        self._dir = Path(tempfile.mkdtemp(prefix="mcp-audio-fork-"))
        self.stdout_path = self._dir / "stdout" if capture_stdout else None
        self.stderr_path = stderr or self._dir / "stderr"
        for path in (self.stdout_path, self.stderr_path):
            if path is not None:
                path.touch()
        fifo = self._dir / "stdin" if stdin else None
        if fifo is not None:
            os.mkfifo(fifo)
        stdio = (
            str(fifo) if fifo else None,
            str(self.stdout_path) if self.stdout_path else None,
            str(self.stderr_path),
        )
        self._process = _forks().Process(target=_child, args=(args, env, os.getcwd(), stdio), daemon=False)
        self._process.start()
        self.pid: int = self._process.pid
        self.returncode: int | None = None
        self.stdin: TextIO | None = self._open_stdin(fifo) if fifo else None
        self.stdout = self.stderr = None  # as Popen's when not piped

    def _open_stdin(self, fifo: Path) -> TextIO:
        """The FIFO's writing end, once the child opened its reading end (or it died)."""
        deadline = time.monotonic() + 30
        while True:
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO until a reader is there
                break
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
                if self.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mcp-audio exited or hung before reading stdin: {self.stderr_text()}") from exc
                time.sleep(0.005)
        os.set_blocking(fd, True)
        return open(fd, "w", encoding="utf-8")  # closed by clean_up

    def poll(self) -> int | None:
        if self.returncode is None and not self._process.is_alive():
            self._finish()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.is_alive():
            raise TimeoutError(f"mcp-audio process {self.pid} still running after {timeout} s")
        self._finish()
        assert self.returncode is not None
        return self.returncode

    def _finish(self) -> None:
        if self.returncode is None:
            self._process.join()
            code = self._process.exitcode
            assert code is not None
            self.returncode = code
            self._process.close()

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stdout_text(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path else ""

    def clean_up(self) -> None:
        """Stop the process if it still runs; close its stdin; remove its own files."""
        if self.poll() is None:
            self.kill()
            self.wait(10)
        if self.stdin is not None:
            with contextlib.suppress(BrokenPipeError):  # what was still buffered had no reader left
                self.stdin.close()
        for path in self._dir.iterdir():
            path.unlink()
        self._dir.rmdir()


def run_mcp_audio(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`mcp-audio ARGS` run to its end in a forked process: its exit code, stdout and stderr."""
    proc = ForkedProcess(args, env, capture_stdout=True)
    try:
        code = proc.wait(timeout)
        return subprocess.CompletedProcess(["mcp-audio", *args], code, proc.stdout_text(), proc.stderr_text())
    finally:
        proc.clean_up()


def stop_fork_server() -> None:
    """Stop this test process's fork server, if it started one, and wait for it: at the end of a
    session, so that it (and what it forked) is not left to init, and counts in `time`'s figures."""
    if _context is not None:
        from multiprocessing import forkserver

        forkserver._forkserver._stop()  # type: ignore[attr-defined]  # the stdlib's own tests' way to stop it


# The server's trust store (mcp_audio.net caches it per process), loaded at import: this module is
# the fork server's last preload, so every forked server inherits it instead of loading the CA
# bundle again (about 20 ms each).
ssl_context()
