"""Run an ASGI app on loopback: in a background thread for tests, or in the foreground for
manual poking (`python -m mcp_audio.sandbox.fal_queue --port 8799`)."""

from __future__ import annotations

import argparse
import copy
import logging
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import uvicorn
from starlette.types import ASGIApp

log = logging.getLogger(__name__)


@contextmanager
def serve_in_thread(app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `app` with uvicorn in a daemon thread; yield its base URL (`http://host:port`).

    The socket is bound here, before the thread starts, so port 0 cannot race with another
    process, and the URL is known up front. Exits stop the server; streams still open after
    1 s are cancelled so a forgotten SSE connection cannot hang the test run.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        http="h11",
        loop="asyncio",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{bound_port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10.0
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"uvicorn failed to start on {host}:{bound_port}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {host}:{bound_port} within 10 s")
            time.sleep(0.01)
        yield f"http://[{host}]:{bound_port}" if family == socket.AF_INET6 else f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5.0)
        sock.close()


def _stderr_log_config() -> dict[str, Any]:
    """uvicorn's logging config with the access log moved from stdout to stderr."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    return config


def main(argv: Sequence[str] | None = None) -> None:
    """Serve a `FakeFal` until Ctrl-C. Everything is logged to stderr."""
    parser = argparse.ArgumentParser(
        prog="python -m mcp_audio.sandbox.fal_queue",
        description="A loopback fake of fal.ai's queue + storage API (no real models).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8799)
    parser.add_argument("--key", default="test-key", help="the FAL key the fake accepts")
    parser.add_argument("--keepalive", type=float, default=15.0, help="SSE ping interval, s")
    args = parser.parse_args(argv)

    # Imported here: fal_queue's __main__ block imports this module.
    from mcp_audio.sandbox.fal_queue import FakeFal

    # base_url stays None so URLs follow the Host header the client used.
    fake = FakeFal(valid_key=args.key, keepalive_s=args.keepalive)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)
    log.info("fake fal on http://%s:%d (key %r)", args.host, args.port, args.key)
    uvicorn.run(fake.app, host=args.host, port=args.port, http="h11", log_config=_stderr_log_config())


if __name__ == "__main__":
    main()
