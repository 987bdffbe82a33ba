"""This process's Prometheus metrics, served at `GET /metrics` in HTTP mode (deploy/).

Off until `enable()` (the HTTP server calls it before it starts): prometheus_client is imported
then, and every `record` function below counts; before, each costs one check, so stdio and the
tests pay nothing. It sits with config and net in the import layers, so providers (upstream
requests), the store (finished jobs), the runner and deploy all reach it.

What is measured: jobs by upstream and state (unfinished, read from the store at each scrape;
finished, counted by the replica that finished them), upstream request latency (until the
answer's headers) and errors by upstream and kind, estimated spend, the event loop's lag (a
timer's lateness, sampled in the background), and the jobs this replica follows (its leases).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = [
    "LAG_INTERVAL_S",
    "enable",
    "enabled",
    "job_finished",
    "on_scrape",
    "registry",
    "render",
    "sample_loop_lag",
    "set_jobs",
    "set_leases",
    "spent",
    "upstream_answered",
    "upstream_failed",
]

LAG_INTERVAL_S = 0.1  # how often the loop's lag is sampled
# Seconds; fine around the 20 ms a healthy loop stays under, coarse beyond.
LAG_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

Refresher = Callable[[], Awaitable[None]]


class _Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.jobs = Gauge(
            "mcp_audio_jobs", "Unfinished jobs in the store (every replica's)", ["upstream", "state"], registry=r
        )
        self.finished = Counter(
            "mcp_audio_jobs_finished", "Jobs this replica finished, by final state", ["upstream", "state"], registry=r
        )
        self.latency = Histogram(
            "mcp_audio_upstream_request_seconds",
            "Upstream requests: seconds until the answer's headers",
            ["upstream"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "mcp_audio_upstream_errors",
            "Upstream requests that failed: http_<status>, or the transport error's name",
            ["upstream", "kind"],
            registry=r,
        )
        self.spend = Counter("mcp_audio_spend_usd", "Estimated cost of the jobs started here", ["upstream"], registry=r)
        self.lag = Histogram(
            "mcp_audio_event_loop_lag_seconds",
            f"How late a {LAG_INTERVAL_S:g} s timer fires on the event loop",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.leases = Gauge("mcp_audio_leases_held", "Jobs this replica follows", registry=r)
        self.refreshers: list[Refresher] = []


_metrics: _Metrics | None = None


def enable() -> None:
    """Start counting (idempotent)."""
    global _metrics
    if _metrics is None:
        _metrics = _Metrics()


def enabled() -> bool:
    return _metrics is not None


def upstream_answered(upstream: str, seconds: float, status: int) -> None:
    if _metrics is not None:
        _metrics.latency.labels(upstream).observe(seconds)
        if status >= 400:
            _metrics.errors.labels(upstream, f"http_{status}").inc()


def upstream_failed(upstream: str, kind: str) -> None:
    """A request that got no answer: `kind` is the transport error's name (ConnectError, ReadTimeout...)."""
    if _metrics is not None:
        _metrics.errors.labels(upstream, kind).inc()


def job_finished(upstream: str, state: str) -> None:
    if _metrics is not None:
        _metrics.finished.labels(upstream, state).inc()


def spent(upstream: str, usd: float | None) -> None:
    if _metrics is not None and usd:
        _metrics.spend.labels(upstream).inc(usd)


def set_jobs(counts: dict[tuple[str, str], int]) -> None:
    """The unfinished jobs by (upstream, state), as the store counts them now."""
    if _metrics is not None:
        _metrics.jobs.clear()
        for (upstream, state), count in counts.items():
            _metrics.jobs.labels(upstream, state).set(count)


def set_leases(count: int) -> None:
    if _metrics is not None:
        _metrics.leases.set(count)


def on_scrape(refresh: Refresher) -> Callable[[], None]:
    """Run `refresh` (it sets gauges) before each scrape; returns what unregisters it."""
    if _metrics is None:
        return lambda: None
    metrics = _metrics
    metrics.refreshers.append(refresh)
    return lambda: metrics.refreshers.remove(refresh) if refresh in metrics.refreshers else None


async def sample_loop_lag(interval_s: float = LAG_INTERVAL_S) -> None:
    """For the life of the server: how late a timer fires is how long the loop was held by
    something else (blocking I/O, long computation)."""
    while True:
        due = time.perf_counter() + interval_s
        await anyio.sleep(interval_s)
        if _metrics is not None:
            _metrics.lag.observe(max(0.0, time.perf_counter() - due))


async def render() -> tuple[bytes, str]:
    """The metrics in the Prometheus text format, and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    if _metrics is None:
        enable()
    assert _metrics is not None
    for refresh in list(_metrics.refreshers):
        await refresh()
    return generate_latest(_metrics.registry), CONTENT_TYPE_LATEST


def registry() -> CollectorRegistry | None:
    """For tests and the bench: the live registry (None while off)."""
    return _metrics.registry if _metrics is not None else None
