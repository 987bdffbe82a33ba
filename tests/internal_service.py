"""A loopback "internal" HTTP service: what a server's private network holds, for the tests
that a file input URL cannot reach it. It counts every TCP connection it accepts and every byte
it sends, so a test can show nothing was even connected to."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.helpers import make_wav

SECRET = make_wav(0.5)


class InternalService(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str = "127.0.0.1", redirect_to: str = "") -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.accepted = 0
        self.sent = 0
        self.redirect_to = redirect_to
        self.lock = threading.Lock()
        super().__init__((host, 0), _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def verify_request(self, request: Any, client_address: Any) -> bool:
        with self.lock:
            self.accepted += 1
        return True

    def count(self, size: int) -> None:
        with self.lock:
            self.sent += size


class _Handler(http.server.BaseHTTPRequestHandler):
    server: InternalService
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        if self.path == "/secret.wav":
            self._send(200, SECRET, "audio/wav")
        elif self.path == "/redirect" and self.server.redirect_to:
            self.send_response(302)
            self.send_header("Location", self.server.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/endless.wav":  # no length: a body that never ends
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            piece = SECRET[:44] + bytes(2**16 - 44)
            try:
                while True:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.server.count(len(piece))
                    piece = bytes(2**16)
            except OSError:
                return
        elif self.path == "/huge.wav":  # claims 2 GiB, sends the start, then holds the line
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Length", str(2 * 2**30))
            self.end_headers()
            try:
                self.wfile.write(SECRET[:44])
                self.server.count(44)
                time.sleep(5)
            except OSError:
                return
        else:
            self._send(404, b"no", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.server.count(len(body))


@contextmanager
def internal_service(host: str = "127.0.0.1", redirect_to: str = "") -> Iterator[InternalService]:
    service = InternalService(host, redirect_to)
    thread = threading.Thread(target=service.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield service
    finally:
        service.shutdown()
        service.server_close()
        thread.join(5)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
