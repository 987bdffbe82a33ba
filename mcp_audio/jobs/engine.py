"""The job engine a server runs: the store, the output saver, the runner that follows jobs and the
pipeline that starts them, opened together and closed in order. Unfinished jobs are re-attached at
open; at close followers stop and rows stay unfinished, so the next start resumes them."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

import anyio
from anyio.abc import TaskGroup

from mcp_audio import metrics
from mcp_audio.catalog import Catalog
from mcp_audio.config import ServerSettings
from mcp_audio.files.fetch import fetch_policy
from mcp_audio.files.marking import Marker
from mcp_audio.files.s3 import open_saver
from mcp_audio.files.uploads import open_uploads
from mcp_audio.jobs.pipeline import CallPipeline
from mcp_audio.jobs.production import Productions
from mcp_audio.jobs.runner import JobRunner
from mcp_audio.jobs.spend import SpendGuard
from mcp_audio.providers.base import Pacing
from mcp_audio.providers.pool import ProviderPool
from mcp_audio.store import JobStore, open_store
from mcp_audio.store.tokens import open_tokens

__all__ = ["Engine", "open_engine"]

log = logging.getLogger("mcp_audio.server")


@dataclass(frozen=True)
class Engine:
    store: JobStore
    runner: JobRunner
    pipeline: CallPipeline
    productions: Productions
    task_group: TaskGroup  # where the runner's followers run; the MCP face starts its own streams here too


@asynccontextmanager
async def open_engine(
    settings: ServerSettings,
    catalog: Catalog,
    *,
    transport: Literal["stdio", "http"],
    pacing: Pacing,
    on_job_change: Callable[[JobStore, str], None] | None = None,
) -> AsyncIterator[Engine]:
    """Open the engine; `on_job_change(store, job_id)` hears every change of a job, from any process."""
    store = await open_store(settings)  # SQLite, or PostgreSQL with MCP_AUDIO_DATABASE_URL
    if on_job_change is not None:
        store.watch(lambda job_id: on_job_change(store, job_id))
    # Content Credentials on every saved audio file (the certificate is loaded with the first one).
    marker = None if settings.provenance == "off" else Marker(settings.data_dir, settings.c2pa_cert, settings.c2pa_key)
    saver = open_saver(  # the output folder, or the bucket of MCP_AUDIO_OUTPUT_URL
        settings,
        max_bytes=int(settings.max_download_mb * 2**20),
        policy=fetch_policy(settings),
        marker=marker,
    )
    if removed := saver.remove_leftovers():
        log.info("removed %d unfinished download(s) left by a stopped process", removed)
    tokens = open_tokens(settings)
    runner: JobRunner | None = None
    pipeline: CallPipeline | None = None
    unwatch: Callable[[], None] = _nothing
    productions: Productions | None = None
    try:
        async with anyio.create_task_group() as task_group:
            runner = JobRunner(
                store,
                catalog,
                ProviderPool(settings, pacing),
                task_group,
                secrets=settings.secrets(),
                spend=SpendGuard(
                    settings.max_spend_usd,
                    store,
                    tokens.cap_of,
                    allow_unpriced=settings.cap_unpriced == "allow",
                ),
                saver=saver,
                download=settings.downloads_for(transport),
                pacing=pacing,
                retention_s=settings.result_retention_s,
            )
            uploads = open_uploads(settings) if transport == "http" else None
            pipeline = CallPipeline(store, runner, uploads, fetch_policy(settings))
            # Registered before unfinished jobs are re-attached: a production resumes with them.
            productions = Productions(
                store, runner, pipeline, catalog, saver, settings.data_dir / "productions", settings.production_keep_s
            )
            await productions.sweep()  # finished productions' working files past MCP_AUDIO_PRODUCTION_KEEP_S
            await runner.beat()  # this process's lease, before it starts or adopts any job
            if resumed := await runner.adopt_unfollowed():
                log.info("re-attached to %d unfinished job(s)", resumed)
            task_group.start_soon(runner.keep_leases, name="leases")
            if metrics.enabled():  # HTTP mode: /metrics reads the gauges of this engine
                unwatch = metrics.on_scrape(_gauges(store, runner))
                task_group.start_soon(metrics.sample_loop_lag, name="loop-lag")
            yield Engine(store=store, runner=runner, pipeline=pipeline, productions=productions, task_group=task_group)
            # Stopping: followers are cancelled, rows stay unfinished, the next start resumes them.
            task_group.cancel_scope.cancel()
    finally:
        unwatch()
        with anyio.CancelScope(shield=True):
            if pipeline is not None:
                await pipeline.aclose()
            if productions is not None:
                await productions.aclose()
            if runner is not None:
                await runner.aclose()
        tokens.close()
        await store.close()


def _nothing() -> None:
    pass


def _gauges(store: JobStore, runner: JobRunner) -> Callable[[], Awaitable[None]]:
    async def refresh() -> None:
        metrics.set_leases(runner.following)
        metrics.set_jobs(await store.unfinished_counts())  # one grouped read of the state index

    return refresh
