"""The CLI as a person at a terminal meets it: Ctrl-C, what `serve` says, waiting on jobs, pipes."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from mcp_audio.config import Settings
from mcp_audio.sandbox.fal_queue import FakeFal
from tests.forked import run_mcp_audio
from tests.helpers import HANDSHAKE, env_for
from tests.server.test_post_tools import tone, wav_bytes

INTERRUPT = b"\x03"  # what the Ctrl-C key sends; the terminal turns it into SIGINT


class Terminal:
    """A pseudo-terminal a child runs on as its controlling terminal, as in a shell."""

    def __init__(self, proc: subprocess.Popen[bytes], master: int) -> None:
        self.proc, self.master, self.seen = proc, master, b""

    def read_until(self, needle: bytes, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while needle not in self.seen and time.monotonic() < deadline:
            if select.select([self.master], [], [], 0.1)[0]:
                try:
                    self.seen += os.read(self.master, 65536)
                except OSError:  # the child closed its side
                    break
        return needle in self.seen

    def drain(self) -> None:
        self.read_until(b"\x00never\x00", 0.3)

    def press_ctrl_c(self) -> None:
        os.write(self.master, INTERRUPT)

    def exited_within(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.drain()
        self.drain()  # what it wrote last
        return self.proc.poll() is not None


@contextmanager
def on_terminal(args: list[str], env: dict[str, str], *, stdin_pipe: bool = False) -> Iterator[Terminal]:
    """Run `mcp-audio ARGS` with stderr (and stdin unless `stdin_pipe`) on a new terminal; stdout a pipe."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a window's size, as a shell has

    def controlling_terminal() -> None:  # in the child, after setsid: the terminal becomes its own
        fcntl.ioctl(2, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        [sys.executable, "-m", "mcp_audio", *args],
        stdin=subprocess.PIPE if stdin_pipe else slave,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=env,
        start_new_session=True,
        preexec_fn=controlling_terminal,
    )
    os.close(slave)
    try:
        yield Terminal(proc, master)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
        os.close(master)


def sandbox_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_AUDIO_") and not k.endswith("_KEY")}
    return env | {"MCP_AUDIO_DATA_DIR": str(tmp_path / "d"), "MCP_AUDIO_OUTPUT_DIR": str(tmp_path / "o")}


def test_serve_on_a_terminal_says_it_waits_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    with on_terminal(["serve", "--sandbox"], sandbox_env(tmp_path)) as term:
        assert term.read_until(b"waiting for an MCP client", 30), term.seen.decode(errors="replace")
        assert b"inspector" in term.seen and b"Ctrl-C" in term.seen  # how to connect one, how to stop
        term.drain()
        term.press_ctrl_c()
        assert term.exited_within(5), "still running 5 s after Ctrl-C"
        assert term.proc.returncode == 130
        assert term.proc.stdout is not None and term.proc.stdout.read() == b""  # stdout is the protocol's only


def test_a_second_ctrl_c_forces_the_stop(tmp_path: Path) -> None:
    # A client connected over a pipe that it keeps open and silent: the SDK's reader thread,
    # blocked on it, holds the first stop; the second must not wait for it.
    with on_terminal(["serve", "--sandbox"], sandbox_env(tmp_path), stdin_pipe=True) as term:
        stdin, stdout = term.proc.stdin, term.proc.stdout
        assert stdin is not None and stdout is not None
        stdin.write(json.dumps(HANDSHAKE[0]).encode() + b"\n")
        stdin.flush()
        assert select.select([stdout], [], [], 60)[0], term.seen.decode(errors="replace")
        assert json.loads(stdout.readline())["id"] == 1  # serving
        assert b"waiting for an MCP client" not in term.seen  # stdin is a client's pipe, not a person
        term.press_ctrl_c()
        assert not term.exited_within(1.5)  # the reader thread holds it...
        term.press_ctrl_c()
        assert term.exited_within(3), "a second Ctrl-C did not force the stop"
        assert term.proc.returncode == 130
        assert b"Ctrl-C again to force" in term.seen  # ...and the first said how to go on


def test_call_progress_line_on_a_terminal_ends_saying_done(settings: Settings, fake_fal: FakeFal) -> None:
    fake_fal.script("fal-ai/lyria2", queue_s=0.2, run_s=0.3, logs=["rendering"])
    with on_terminal(["call", "lyria2_music", "--json", '{"prompt": "calm"}'], env_for(settings)) as term:
        assert term.exited_within(60)
        assert term.proc.returncode == 0, term.seen.decode(errors="replace")
        last = term.seen.decode(errors="replace").rstrip().split("\r")[-1]
        assert last.startswith("lyria2_music: done"), repr(last)


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`mcp-audio ARGS` in a process of its own, forked warm (tests/forked.py)."""
    return run_mcp_audio(list(args), env, timeout=90)


def test_jobs_sandbox_lists_the_sandbox_jobs(tmp_path: Path) -> None:
    env = sandbox_env(tmp_path)
    called = run(env, "call", "qwen3_tts", "--sandbox", "--json", '{"text": "Hello from the sandbox."}', "--wait", "30")
    assert called.returncode == 0, called.stderr
    job_id = json.loads(called.stdout)["job_id"]
    listed = run(env, "jobs", "--sandbox", "--json")
    assert [json.loads(line)["job_id"] for line in listed.stdout.splitlines()] == [job_id], listed.stderr
    table = run(env, "jobs", "--sandbox").stdout.splitlines()
    assert table[0].split()[:3] == ["JOB_ID", "TOOL", "STATUS"] and table[1].split()[:3] == [
        job_id,
        "qwen3_tts",
        "completed",
    ]
    assert run(env, "jobs", "--json").stdout == ""  # the real jobs stay apart


def test_wait_waits_for_a_job_a_finished_call_left_running(settings: Settings, fake_fal: FakeFal) -> None:
    fake_fal.script("fal-ai/lyria2", queue_s=0.5, run_s=1.5)
    env = env_for(settings)
    called = run(env, "call", "lyria2_music", "--json", '{"prompt": "calm"}', "--wait", "0")
    assert called.returncode == 3, called.stderr  # still running: the handle, and how to wait for it
    handle = json.loads(called.stdout)
    assert handle["status"] in ("queued", "running") and f"mcp-audio wait {handle['job_id']}" in called.stderr
    early = run(env, "wait", handle["job_id"], "--timeout", "0")
    assert early.returncode in (0, 3)
    waited = run(env, "wait", handle["job_id"], "--timeout", "60")
    assert waited.returncode == 0, waited.stderr
    result = json.loads(waited.stdout)
    assert result["job_id"] == handle["job_id"] and result["status"] == "completed"
    assert run(env, "wait", "no-such-job").returncode == 1


def test_call_on_a_local_tool_waits_for_its_job_whatever_wait_says(settings: Settings, tmp_path: Path) -> None:
    recording = tmp_path / "talk.wav"
    recording.write_bytes(wav_bytes(np.vstack([tone(20.0), tone(20.0, 550)])))
    env = env_for(settings) | {"MCP_AUDIO_ALLOWED_DIRS": str(tmp_path), "MCP_AUDIO_DOWNLOAD": "always"}
    called = run(env, "call", "audio_master", "--json", json.dumps({"audio_url": str(recording)}), "--wait", "0")
    assert called.returncode == 0, called.stderr
    result = json.loads(called.stdout)
    assert result["status"] == "completed"  # not a handle to a job that died with the process
    assert all(Path(file["path"]).is_file() for file in result["files"])


def test_a_reader_that_leaves_early_is_no_error(settings: Settings) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # `| head -1` that has already left
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "mcp_audio", "tools"],
            env=env_for(settings),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    assert proc.returncode == 0


def test_listings_are_a_table_or_json_lines(settings: Settings) -> None:
    env = env_for(settings)
    tools = run(env, "tools", "--json").stdout.splitlines()
    assert len(tools) > 50 and all(isinstance(json.loads(line), dict) for line in tools)
    assert run(env, "tokens", "add", "ann").returncode == 0
    table = run(env, "tokens", "list").stdout.splitlines()
    assert table[0].split()[0] == "NAME" and table[1].split()[0] == "ann"
    [line] = run(env, "tokens", "list", "--json").stdout.splitlines()
    assert json.loads(line)["name"] == "ann"
