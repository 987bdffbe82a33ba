"""Loopback fakes of upstream services, for tests and offline development.

`fal_queue.FakeFal` imitates fal.ai's queue and storage HTTP API; `serve.serve_in_thread`
runs any ASGI app on a free loopback port; `run.sandboxed` points settings at a set of fakes
(`mcp-audio serve --sandbox`). The server itself never imports the fakes.
"""

__all__ = ["run", "serve"]
