"""Request bodies are refused past their limit before they are read: `POST /webhooks/fal` checks
its signature headers and size first, and holds at most its limit per delivery, so bodies of
hundreds of MB (no token needed) leave the server's memory where it was (issue 20, finding 4)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_audio.config import ServerSettings
from mcp_audio.deploy.webhooks import FAL_PATH
from mcp_audio.sandbox.fal_queue import FakeFal
from tests.deploy.test_webhooks import replica
from tests.http_harness import Served

pytestmark = pytest.mark.anyio

MiB = 2**20


def peak_rss_mb(pid: int) -> float:
    """The process's high-water resident set (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def _headers(length: int | None, signed: bool = True) -> bytes:
    lines = [f"POST {FAL_PATH} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    if signed:  # well formed, not verifiable: only the body could tell
        lines += [
            "X-Fal-Webhook-Request-Id: r1",
            "X-Fal-Webhook-User-Id: u1",
            f"X-Fal-Webhook-Timestamp: {int(time.time())}",
            "X-Fal-Webhook-Signature: " + "ab" * 64,
        ]
    lines.append(f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _send_body(served: Served, total: int, *, declared: bool, signed: bool = True) -> tuple[int, bytes]:
    """POST a body of `total` bytes in 1 MiB pieces until the server answers or stops reading;
    (bytes sent, the answer's status line)."""
    port = int(served.url.rsplit(":", 1)[1])
    piece = b"x" * MiB
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(_headers(total if declared else None, signed))
        sock.settimeout(5)
        try:
            while sent < total:
                sock.sendall(piece if declared else b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
                sock.setblocking(False)
                try:
                    if sock.recv(1, socket.MSG_PEEK):
                        break  # answered
                except BlockingIOError:
                    pass
                finally:
                    sock.setblocking(True)
                    sock.settimeout(5)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
        sock.settimeout(10)
        try:
            answer = sock.recv(200)
        except (ConnectionResetError, TimeoutError):
            answer = b""
    return sent, answer.split(b"\r\n", 1)[0]


@pytest.fixture
def hook_server(settings: ServerSettings, fake_fal: FakeFal) -> Iterator[Served]:
    # A fresh interpreter: the test reads the process's peak memory, which a fork would share.
    with replica(settings, fake_fal, cold=True) as served:
        yield served


def test_a_declared_oversize_delivery_is_refused_before_its_body(hook_server: Served) -> None:
    sent, status = _send_body(hook_server, 800 * MiB, declared=True)
    assert status.endswith(b"413 Request Entity Too Large") or b" 413 " in status + b" ", status
    assert sent <= 64 * MiB  # refused at its headers: the rest was never read


def test_an_unsigned_delivery_is_refused_before_its_body(hook_server: Served) -> None:
    sent, status = _send_body(hook_server, 800 * MiB, declared=False, signed=False)
    assert b" 401 " in status + b" ", status
    assert sent <= 64 * MiB


def test_undeclared_huge_deliveries_leave_memory_where_it_was(hook_server: Served) -> None:
    results: list[tuple[int, bytes]] = []
    threads = [
        threading.Thread(target=lambda: results.append(_send_body(hook_server, 300 * MiB, declared=False)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(results) == 3
    for sent, status in results:
        assert b" 413 " in status + b" " and sent <= 64 * MiB, (sent, status)
    assert peak_rss_mb(hook_server.proc.pid) < 300
