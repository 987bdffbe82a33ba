"""The job engine a server runs: the store, the output saver, the runner that follows jobs and the
pipeline that starts them, opened together and closed in order. Unfinished jobs are re-attached at
open; at close followers stop and rows stay unfinished, so the next start resumes them."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlparse

import anyio
from anyio.abc import TaskGroup

from mcp_audio.catalog import Catalog
from mcp_audio.config import ServerSettings
from mcp_audio.core.upstreams import UPSTREAMS
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
    store = open_store(settings)  # SQLite, or PostgreSQL with MCP_AUDIO_DATABASE_URL
    if on_job_change is not None:
        store.watch(lambda job_id: on_job_change(store, job_id))
    saver = open_saver(  # the output folder, or the bucket of MCP_AUDIO_OUTPUT_URL
        settings,
        max_bytes=int(settings.max_download_mb * 2**20),
        trusted_origins=upstream_origins(settings),
    )
    if removed := saver.remove_leftovers():
        log.info("removed %d unfinished download(s) left by a stopped process", removed)
    runner: JobRunner | None = None
    pipeline: CallPipeline | None = None
    productions: Productions | None = None
    try:
        async with anyio.create_task_group() as task_group:
            runner = JobRunner(
                store,
                catalog,
                ProviderPool(settings, pacing),
                task_group,
                secrets=settings.secrets(),
                spend=SpendGuard(settings.max_spend_usd, store, open_tokens(settings, store).cap_of),
                saver=saver,
                download=settings.downloads_for(transport),
                pacing=pacing,
                retention_s=settings.result_retention_s,
            )
            pipeline = CallPipeline(store, runner, open_uploads(settings) if transport == "http" else None)
            # Registered before unfinished jobs are re-attached: a production resumes with them.
            productions = Productions(store, runner, pipeline, catalog, saver, settings.data_dir / "productions")
            if resumed := runner.adopt_unfollowed():
                log.info("re-attached to %d unfinished job(s)", resumed)
            task_group.start_soon(runner.keep_leases, name="leases")
            yield Engine(store=store, runner=runner, pipeline=pipeline, productions=productions, task_group=task_group)
            # Stopping: followers are cancelled, rows stay unfinished, the next start resumes them.
            task_group.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            if pipeline is not None:
                await pipeline.aclose()
            if productions is not None:
                await productions.aclose()
            if runner is not None:
                await runner.aclose()
        store.close()


def upstream_origins(settings: ServerSettings) -> frozenset[str]:
    """Every configured upstream base URL's origin: output files there are fetched as they come."""
    return frozenset(
        _origin(settings.url_of(upstream, url.param)).lower()
        for upstream in UPSTREAMS.values()
        for url in upstream.urls
        if "://" in settings.url_of(upstream, url.param)
    )


def _origin(url: str) -> str:
    parsed = urlparse(url)
    return f"{parsed.scheme}://{parsed.netloc}"
