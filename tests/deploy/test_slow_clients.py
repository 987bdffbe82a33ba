"""Sockets trickling their headers, more than the server has file descriptors for, lock a
legitimate caller out only until their header deadline passes; the accept error they cause is
logged once a minute, not per event (issue 20, finding 8)."""

from __future__ import annotations

import contextlib
import resource
import socket
import threading
import time

import httpx

from mcp_audio.config import ServerSettings
from mcp_audio.deploy.slow_clients import HEADER_TIMEOUT_S
from tests.http_harness import free_port, http_server

TRICKLERS = 300
FILE_LIMIT = 256  # the server's: fewer than the tricklers


def test_trickling_sockets_do_not_lock_out_a_legitimate_caller(settings: ServerSettings) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILE_LIMIT, hard))  # inherited by the server process
    try:
        server = http_server(settings)
        served = server.__enter__()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    stop = threading.Event()
    sockets: list[socket.socket] = []
    try:
        port = int(served.url.rsplit(":", 1)[1])
        for _ in range(TRICKLERS):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            sockets.append(sock)

        def trickle() -> None:
            while not stop.wait(0.5):
                for sock in sockets:
                    with contextlib.suppress(OSError):
                        sock.send(b"X")  # one byte of a header that never ends

        threading.Thread(target=trickle, daemon=True).start()
        started = time.monotonic()
        answered = None
        while time.monotonic() - started < HEADER_TIMEOUT_S + 15:
            try:
                if httpx.get(served.url + "/healthz", timeout=2).status_code == 200:
                    answered = time.monotonic() - started
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert answered is not None, "the legitimate caller never got through"
        assert answered < HEADER_TIMEOUT_S + 8
    finally:
        stop.set()
        for sock in sockets:
            sock.close()
        server.__exit__(None, None, None)
    assert served.stderr.count("socket.accept() out of system resource") <= 2


def test_a_body_that_stops_coming_is_answered_408_and_its_connection_freed(settings: ServerSettings) -> None:
    port = free_port()
    idle = {"MCP_AUDIO_BODY_IDLE_S": "1", "MCP_AUDIO_PUBLIC_URL": f"http://127.0.0.1:{port}"}  # webhooks on
    with http_server(settings, port=port, extra_env=idle) as served:
        for path in ("/uploads", "/webhooks/fal"):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            try:
                head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 100000\r\n"
                if path == "/webhooks/fal":  # past the signature headers' checks, to its body
                    head += "X-Fal-Webhook-Request-Id: r\r\nX-Fal-Webhook-User-Id: u\r\n"
                    head += f"X-Fal-Webhook-Timestamp: {int(time.time())}\r\nX-Fal-Webhook-Signature: {'ab' * 64}\r\n"
                sock.sendall(head.encode() + b"\r\nRIFF")  # then nothing more
                started = time.monotonic()
                answer = sock.recv(4096)
                waited = time.monotonic() - started
                while b"\r\n\r\n" in answer and not answer.rstrip().endswith(b"}"):  # the rest of the JSON body
                    more = sock.recv(4096)
                    if not more:
                        break
                    answer += more
            finally:
                sock.close()
            assert answer.startswith(b"HTTP/1.1 408"), (path, answer[:200])
            assert b"MCP_AUDIO_BODY_IDLE_S" in answer and waited < 6, (path, waited)
        assert httpx.get(served.url + "/healthz", timeout=5).status_code == 200
