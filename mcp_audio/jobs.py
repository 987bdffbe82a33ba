"""JobRunner: moves each job through its states, in the background, surviving restarts.

    queued --submit--> queued/running --follow--> completed | failed
       \\___________________ cancel_job _________________/--> cancelled

The row is written before anything is sent upstream. Each job is followed by a task in the
server's task group, so it outlives the tool call that started it; a tool call only *waits* on
it. The runner picks how to run a job by its tool's shape: a queued job is submitted once and
followed through its stored handle (so the next start re-attaches to it); a one-shot job is
one request whose answer is the output. When the server stops, followers are cancelled
without touching their rows.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream
from pydantic import BaseModel, ValidationError

from mcp_audio.catalog import Capability, Catalog, SavedVoice
from mcp_audio.errors import InvalidArguments, JobNotFound, McpAudioError
from mcp_audio.inputs import file_records
from mcp_audio.outputs import OutputSaver
from mcp_audio.pricing import SpendGuard, estimate_cost
from mcp_audio.providers.base import (
    Cancels,
    FileSink,
    OneShotProvider,
    Pacing,
    Provider,
    QueuedProvider,
    Update,
    UpstreamRequest,
)
from mcp_audio.providers.registry import UPSTREAMS
from mcp_audio.redaction import redact, redact_json
from mcp_audio.results import OutputFile, extract_result, value_at
from mcp_audio.store import LOCAL_PRINCIPAL, Job, JobStore

log = logging.getLogger("mcp_audio.jobs")

# A job without an upstream id this old was cut off mid-submit by a crash, not still submitting.
SUBMIT_GRACE_S = 120.0
# How often a waiter re-reads the row of a job another process follows (a local SQLite read).
ROW_POLL_S = 0.25

OnUpdate = Callable[[Job, str], Awaitable[None]]


@dataclass
class _Live:
    """A job being followed by this process."""

    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    listeners: set[MemoryObjectSendStream[tuple[Job, str]]] = field(default_factory=set)


class ProviderPool:
    """One provider per upstream, built from the settings on first use (their clients cost start-up time)."""

    def __init__(self, settings: Any, pacing: Pacing | None = None) -> None:
        self._settings = settings
        self._pacing = pacing
        self._providers: dict[str, Provider] = {}

    def get(self, name: str) -> Provider:
        if name not in self._providers:
            self._providers[name] = UPSTREAMS[name].build(self._settings, self._pacing)
        return self._providers[name]

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()


class JobRunner:
    def __init__(
        self,
        store: JobStore,
        catalog: Catalog,
        providers: ProviderPool,
        task_group: TaskGroup,
        secrets: Iterable[str] = (),
        spend: SpendGuard | None = None,
        saver: OutputSaver | None = None,
        download: bool = False,
    ) -> None:
        self._store = store
        self._catalog = catalog
        self.providers = providers
        self._tg = task_group
        self._secrets = list(secrets)
        self._live: dict[str, _Live] = {}
        self._spend = spend or SpendGuard(None)
        self._saver = saver
        self._download = download and saver is not None

    async def aclose(self) -> None:
        await self.providers.aclose()
        if self._saver is not None:
            await self._saver.aclose()

    # --- starting and resuming --------------------------------------------------------------

    async def start(self, capability: Capability, request: UpstreamRequest, principal: str = LOCAL_PRINCIPAL) -> Job:
        """Persist a new job of `principal`'s and start running it in the background."""
        cost = estimate_cost(capability.spec.price, request.body)
        self._spend.charge(capability.name, cost, principal)  # raises SpendLimitExceeded before anything is sent
        job = self._store.create_job(
            principal=principal,
            estimated_cost_usd=cost,
            tool=capability.name,
            provider=capability.provider,
            endpoint=request.endpoint,
            body=file_records(request),
            options=request.options,
        )
        self._spawn(job.id, capability, request)
        return job

    def resume_unfinished(self) -> int:
        """Re-attach to every unfinished job left by an earlier run; returns how many."""
        resumed = 0
        for job in self._store.unfinished_jobs():
            capability = self._catalog.get(job.tool)
            if job.id in self._live:
                continue
            if capability is None:
                self._store.fail(job.id, f"tool {job.tool} no longer exists in this server")
            elif job.upstream_id is not None:
                self._spawn(job.id, capability, None)
                resumed += 1
            elif capability.shape == "one_shot":
                self._store.fail(
                    job.id,
                    "The server stopped during this one-request call, which cannot be resumed. Call the tool again.",
                )
            elif time.time() - job.created_at > SUBMIT_GRACE_S:
                self._store.fail(
                    job.id,
                    "The server stopped before the upstream confirmed this job, so it was not resubmitted "
                    "(that could bill twice). Call the tool again if no result arrived.",
                )
        return resumed

    def _spawn(self, job_id: str, capability: Capability, request: UpstreamRequest | None) -> None:
        self._live[job_id] = _Live()
        self._tg.start_soon(self._follow, job_id, capability, request, name=f"job-{job_id}")

    # --- the life of one job ----------------------------------------------------------------

    async def _follow(self, job_id: str, capability: Capability, request: UpstreamRequest | None) -> None:
        live = self._live[job_id]
        try:
            with live.scope:
                await self._run(job_id, capability, request)
        finally:
            self._live.pop(job_id, None)
            for listener in live.listeners:
                listener.close()  # ends every waiter's loop; they read the final row themselves

    async def _run(self, job_id: str, capability: Capability, request: UpstreamRequest | None) -> None:
        job = self._require(job_id)
        provider = self.providers.get(job.provider)
        files = self._file_sink(capability, job_id)

        async def report(update: Update) -> None:
            self._on_update(job_id, update)

        try:
            if capability.shape == "one_shot":
                assert isinstance(provider, OneShotProvider) and request is not None
                self._store.mark_running(job_id)
                output = await provider.run(request, report, files)
            else:
                assert isinstance(provider, QueuedProvider)
                if job.upstream_id is None:
                    assert request is not None
                    submitted = await provider.submit(request)
                    job = self._store.record_submission(
                        job_id, submitted.upstream_id, submitted.handle.model_dump(mode="json")
                    )
                    self._notify(job, f"Submitted to {capability.upstream.label} (request {submitted.upstream_id})")
                handle = _stored_handle(provider.handle_type, job)
                output = await provider.follow(job.endpoint, handle, report, files)
            # Upstream JSON is data: a secret it echoes is never stored or returned.
            output = {k: v if isinstance(v, OutputFile) else redact_json(v, self._secrets) for k, v in output.items()}
            result = extract_result(capability, output)
            remote = [item for item in result.files if not item.saved]
            if self._download and self._saver is not None and remote:
                self._notify(job, f"Saving {len(remote)} file(s) to {self._saver.output_dir}")
                result.files = await self._saver.save_all(capability.name, job_id, result.files)
            result.saved_voice = self._save_voice(capability, job, output)
            self._store.complete(job_id, result)
        except McpAudioError as exc:
            self._store.fail(job_id, redact(str(exc), self._secrets))
        except Exception:
            log.exception("job %s crashed", job_id)
            self._store.fail(job_id, "internal error in mcp-audio (see the server log)")

    def _file_sink(self, capability: Capability, job_id: str) -> FileSink:
        """Where a provider puts bytes its upstream returned directly: the job's output files."""
        saved = itertools.count()

        def save(data: bytes, content_type: str) -> OutputFile:
            if self._saver is None:
                raise McpAudioError("this server has no output folder to store returned audio in")
            return self._saver.save_bytes(capability.name, job_id, next(saved), data, content_type)

        return save

    def _on_update(self, job_id: str, update: Update) -> None:
        job = self._require(job_id)
        if job.finished:  # a late update after cancel_job
            return
        logs = [redact(line, self._secrets) for line in update.logs]
        job = self._store.record_progress(job_id, update.state, update.queue_position, logs)
        if update.partial is not None:
            message = f"Partial: {update.partial[-300:]}"
        elif update.state == "queued":
            message = "In queue" + (f" (position {update.queue_position})" if update.queue_position is not None else "")
        else:
            message = "Running" + (f": {job.logs[-1]}" if update.logs else "")
        self._notify(job, message)

    def _save_voice(self, capability: Capability, job: Job, output: dict[str, Any]) -> str | None:
        spec = capability.spec.saves_voice
        name = job.options.get(spec.name_input) if spec else None
        if spec is None or not name:
            return None
        sources = {"output": output, "input": job.body | job.options}
        fields = {key: value_at(sources, path) for key, path in spec.fields.items()}
        self._store.save_voice(
            SavedVoice(name=name, family=spec.family, provider=capability.provider, fields=fields), job_id=job.id
        )
        return str(name)

    def _notify(self, job: Job, message: str) -> None:
        live = self._live.get(job.id)
        for listener in list(live.listeners if live else ()):
            if _has_room(listener):  # a slow waiter misses intermediate updates, never blocks the job
                listener.send_nowait((job, message))

    # --- what tools ask of the runner -------------------------------------------------------

    async def wait(self, job_id: str, timeout: float, on_update: OnUpdate | None = None) -> Job:
        """Wait up to `timeout` seconds for a job to finish, forwarding its updates."""
        live = self._live.get(job_id)
        if live is not None and timeout > 0:
            send, receive = anyio.create_memory_object_stream[tuple[Job, str]](64)
            live.listeners.add(send)
            try:
                with anyio.move_on_after(timeout):
                    async with receive:
                        async for job, message in receive:
                            if on_update is not None:
                                await on_update(job, message)
            finally:
                live.listeners.discard(send)
                send.close()
        elif timeout > 0:
            await self._watch_row(job_id, timeout, on_update)
        return self._require(job_id)

    async def _watch_row(self, job_id: str, timeout: float, on_update: OnUpdate | None) -> None:
        """A job this process does not follow (another process on the same data dir does, or
        nobody yet): wait on its row, so `get_job(wait_s)` waits instead of answering at once."""
        seen: tuple[Any, ...] | None = None
        with anyio.move_on_after(timeout):
            while True:
                job = self._require(job_id)
                if job.finished or job_id in self._live:
                    return
                now = (job.state, job.queue_position, len(job.logs))
                if seen is not None and now != seen and on_update is not None:
                    await on_update(job, f"{job.state.capitalize()}" + (f": {job.logs[-1]}" if job.logs else ""))
                seen = now
                await anyio.sleep(ROW_POLL_S)

    async def cancel(self, job_id: str) -> Job:
        """Cancel upstream, stop following, and record the job as cancelled."""
        job = self._require(job_id)
        if job.finished:
            return job
        upstream = UPSTREAMS[job.provider]
        if not upstream.can_cancel:
            raise InvalidArguments(
                f"The {upstream.label} cannot cancel tasks; task {job.upstream_id} keeps running upstream and it "
                "will finish on its own (get_job returns its result)."
            )
        provider = self.providers.get(job.provider)
        if job.upstream_id is not None and isinstance(provider, Cancels) and isinstance(provider, QueuedProvider):
            accepted = await provider.cancel(job.endpoint, _stored_handle(provider.handle_type, job))
            if not accepted:
                # It finished upstream before the cancel arrived: let the follower collect it.
                return await self.wait(job_id, timeout=30)
        live = self._live.get(job_id)
        if live is not None:
            live.scope.cancel()  # a one-shot request is dropped here
        return self._store.cancel(job_id, "cancelled at the client's request")

    def _require(self, job_id: str) -> Job:
        job = self._store.get_job(job_id)
        if job is None:
            raise JobNotFound(not_found_message(job_id))
        return job


def _stored_handle(handle_type: type[BaseModel], job: Job) -> BaseModel:
    try:
        return handle_type.model_validate(job.handle)
    except ValidationError as exc:
        raise McpAudioError(
            f"job {job.id}'s stored upstream handle is not valid ({exc.error_count()} problem(s)); it cannot be "
            f"followed. Upstream request id: {job.upstream_id}."
        ) from exc


def not_found_message(job_id: str) -> str:
    return f"No job with id '{job_id[:64]}'. List recent jobs with list_jobs or read jobs://recent."


def _has_room(stream: MemoryObjectSendStream[Any]) -> bool:
    stats = stream.statistics()
    return stats.current_buffer_used < stats.max_buffer_size and stats.open_receive_streams > 0
