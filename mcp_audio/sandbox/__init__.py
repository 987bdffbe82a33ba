"""Loopback fakes of upstream services, for tests and offline development.

`fal_queue.FakeFal` imitates fal.ai's queue and storage HTTP API; `serve.serve_in_thread`
runs any ASGI app on a free loopback port. Nothing here is imported by the server itself.
"""
