"""Run an ASGI app on loopback: in a background thread for tests, or a fake upstream in the
foreground for manual poking (`python -m mcp_audio.sandbox.serve fal|voice-api|eigen --port N`;
each fake's own module runs it too, e.g. `python -m mcp_audio.sandbox.fal_queue`)."""

from __future__ import annotations

import argparse
import copy
import importlib
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

from mcp_audio.core.upstreams import REMOTE, Upstream
from mcp_audio.sandbox._base import FakeUpstream

log = logging.getLogger(__name__)


def fake_for(upstream: Upstream, valid_key: str, **options: Any) -> Any:
    """A new loopback fake of `upstream` that accepts `valid_key` (a `FakeUpstream` subclass, whose own
    attributes, such as the Voice API fake's `host`, its callers use)."""
    if upstream.fake_class is None:
        raise ValueError(f"{upstream.label} runs locally: it has no fake")
    module, _, name = upstream.fake_class.partition(":")
    return getattr(importlib.import_module(module), name)(valid_key=valid_key, **options)


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mcp_audio.sandbox.serve",
        description="Serve a loopback fake upstream (no real models) until Ctrl-C; logs go to stderr.",
    )
    names = [name.replace("_", "-") for name in REMOTE]
    fakes = parser.add_subparsers(dest="fake", required=True, metavar="{" + ",".join(names) + "}")
    subs: dict[str, argparse.ArgumentParser] = {}
    for name, upstream in REMOTE.items():
        about = f"the {upstream.label} API"
        sub = fakes.add_parser(name.replace("_", "-"), help=about, description=f"A loopback fake of {about}.")
        sub.add_argument("--host", default="127.0.0.1")
        sub.add_argument("--port", type=int, default=upstream.fake_port)  # distinct, so all can run at once
        sub.add_argument("--key", default="test-key", help="the API key the fake accepts")
        subs[name] = sub
    subs["fal"].add_argument("--keepalive", type=float, default=15.0, help="SSE ping interval, s")
    subs["voice_api"].add_argument(
        "--api-host", default="voice-api.p.rapidapi.com", help="the X-RapidAPI-Host it expects"
    )
    subs["eigen"].add_argument("--delay", type=float, default=0.0, help="seconds each generate call takes")
    return parser


# Each fake's own options, by the command-line flags above.
_FAKE_OPTIONS = {"fal": {"keepalive_s": "keepalive"}, "voice_api": {"host": "api_host"}, "eigen": {"delay_s": "delay"}}


def _fake(args: argparse.Namespace) -> FakeUpstream[Any]:
    name = args.fake.replace("-", "_")
    options = {option: getattr(args, flag) for option, flag in _FAKE_OPTIONS.get(name, {}).items()}
    fake: FakeUpstream[Any] = fake_for(REMOTE[name], args.key, **options)
    return fake


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the fake named first in `argv` until Ctrl-C. Everything is logged to stderr."""
    args = _parser().parse_args(argv)
    # base_url stays None so the URLs a fake hands out follow the Host header the client used.
    fake = _fake(args)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)
    log.info("fake %s on http://%s:%d (key %r)", args.fake, args.host, args.port, args.key)
    uvicorn.run(fake.app, host=args.host, port=args.port, http="h11", log_config=_stderr_log_config())


if __name__ == "__main__":
    main()
