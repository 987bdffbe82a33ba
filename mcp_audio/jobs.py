"""JobRunner: moves each job through its states, in the background, surviving restarts.

    queued --submit--> queued/running --follow--> completed | failed
       \\___________________ cancel_job _________________/--> cancelled

The row is written before the upstream submit. Each job is followed by a task in the server's
task group, so it outlives the tool call that started it; a tool call only *waits* on it. When
the server stops, followers are cancelled without touching their rows, and the next start
re-attaches to every job that has an upstream id.
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

from mcp_audio.catalog import Capability, Catalog, PreparedCall, SavedVoice
from mcp_audio.errors import JobNotFound, McpAudioError
from mcp_audio.outputs import OutputSaver
from mcp_audio.pricing import SpendGuard, estimate_cost
from mcp_audio.providers.base import FileSink, Provider, Update
from mcp_audio.redaction import redact
from mcp_audio.results import extract_result, value_at
from mcp_audio.store import Job, JobStore

log = logging.getLogger("mcp_audio.jobs")

# A job without an upstream id this old was cut off mid-submit by a crash, not still submitting.
SUBMIT_GRACE_S = 120.0

OnUpdate = Callable[[Job, str], Awaitable[None]]


@dataclass
class _Live:
    """A job being followed by this process."""

    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    listeners: set[MemoryObjectSendStream[tuple[Job, str]]] = field(default_factory=set)


class JobRunner:
    def __init__(
        self,
        store: JobStore,
        catalog: Catalog,
        providers: dict[str, Callable[[], Provider]],
        task_group: TaskGroup,
        secrets: Iterable[str] = (),
        spend: SpendGuard | None = None,
        saver: OutputSaver | None = None,
        download: bool = False,
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._factories = providers
        self._providers: dict[str, Provider] = {}
        self._tg = task_group
        self._secrets = list(secrets)
        self._live: dict[str, _Live] = {}
        self._spend = spend or SpendGuard(None)
        self._saver = saver
        self._download = download and saver is not None

    # --- starting and resuming --------------------------------------------------------------

    def provider(self, name: str) -> Provider:
        """The provider called `name`, created on first use: its HTTP client costs start-up time."""
        if name not in self._providers:
            self._providers[name] = self._factories[name]()
        return self._providers[name]

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
        if self._saver is not None:
            await self._saver.aclose()

    async def start(self, capability: Capability, call: PreparedCall) -> Job:
        """Persist a new job and start following it in the background."""
        cost = estimate_cost(capability.spec.price, call.payload)
        self._spend.charge(capability.name, cost)  # raises SpendLimitExceeded before anything is sent
        job = self._store.create_job(
            estimated_cost_usd=cost,
            tool=capability.name,
            provider=capability.provider,
            endpoint=call.endpoint,
            payload=call.payload,
            local=call.local,
        )
        self._spawn(job.id, capability)
        return job

    def resume_unfinished(self) -> int:
        """Re-attach to every unfinished job left by an earlier run; returns how many."""
        resumed = 0
        for job in self._store.unfinished_jobs():
            capability = self._catalog.get(job.tool)
            if job.id in self._live:
                continue
            if capability is None:
                self._store.update_job(job.id, state="failed", error=f"tool {job.tool} no longer exists in this server")
            elif job.upstream_id is not None:
                self._spawn(job.id, capability)
                resumed += 1
            elif capability.spec.mode == "stream":
                self._store.update_job(
                    job.id,
                    state="failed",
                    error="The server stopped during this streaming call, which cannot be resumed. "
                    "Call the tool again.",
                )
            elif time.time() - job.created_at > SUBMIT_GRACE_S:
                self._store.update_job(
                    job.id,
                    state="failed",
                    error="The server stopped before the upstream confirmed this job, so it was not resubmitted "
                    "(that could bill twice). Call the tool again if no result arrived.",
                )
        return resumed

    def _spawn(self, job_id: str, capability: Capability) -> None:
        self._live[job_id] = _Live()
        self._tg.start_soon(self._follow, job_id, capability, name=f"job-{job_id}")

    # --- the life of one job ----------------------------------------------------------------

    async def _follow(self, job_id: str, capability: Capability) -> None:
        live = self._live[job_id]
        try:
            with live.scope:
                await self._run(job_id, capability)
        finally:
            self._live.pop(job_id, None)
            for listener in live.listeners:
                listener.close()  # ends every waiter's loop; they read the final row themselves

    async def _run(self, job_id: str, capability: Capability) -> None:
        job = self._require(job_id)
        provider = self.provider(job.provider)
        try:

            async def report(update: Update) -> None:
                self._on_update(job_id, update)

            if capability.spec.mode == "stream":
                self._store.update_job(job_id, state="running")
                output = await provider.stream(
                    job.endpoint, job.payload, report, capability.spec.partial_text, self._file_sink(capability, job_id)
                )
            else:
                if job.upstream_id is None:
                    submitted = await provider.submit(job.endpoint, job.payload)
                    job = self._store.update_job(job_id, upstream_id=submitted.upstream_id, handle=submitted.handle)
                    self._notify(job, f"Submitted to {job.provider} (request {submitted.upstream_id})")
                output = await provider.follow(job.endpoint, job.handle, report, self._file_sink(capability, job_id))
            result = extract_result(capability, output)
            remote = [entry for entry in result["files"] if "path" not in entry]
            if self._download and self._saver is not None and remote:
                self._notify(job, f"Saving {len(remote)} file(s) to {self._saver.output_dir}")
                result["files"] = await self._saver.save_all(capability.name, job_id, result["files"])
            saved = self._save_voice(capability, job, output)
            if saved is not None:
                result["saved_voice"] = saved
            self._store.update_job(job_id, state="completed", result=result, queue_position=None)
        except McpAudioError as exc:
            self._store.update_job(job_id, state="failed", error=redact(str(exc), self._secrets))
        except Exception:
            log.exception("job %s crashed", job_id)
            self._store.update_job(job_id, state="failed", error="internal error in mcp-audio (see the server log)")

    def _file_sink(self, capability: Capability, job_id: str) -> FileSink:
        """Where a provider puts bytes its upstream returned directly: the job's output files."""
        saved = itertools.count()

        def save(data: bytes, content_type: str) -> dict[str, Any]:
            if self._saver is None:
                raise McpAudioError("this server has no output folder to store returned audio in")
            return self._saver.save_bytes(capability.name, job_id, next(saved), data, content_type)

        return save

    def _on_update(self, job_id: str, update: Update) -> None:
        changes: dict[str, Any] = {"state": update.state, "queue_position": update.queue_position}
        job = self._require(job_id)
        if job.finished:  # a late update after cancel_job
            return
        if update.logs:
            changes["logs"] = (job.logs + [redact(line, self._secrets) for line in update.logs])[-20:]
        job = self._store.update_job(job_id, **changes)
        if update.partial is not None:
            message = f"Partial: {update.partial[-300:]}"
        elif update.state == "queued":
            message = "In queue" + (f" (position {update.queue_position})" if update.queue_position is not None else "")
        else:
            message = "Running" + (f": {job.logs[-1]}" if update.logs else "")
        self._notify(job, message)

    def _save_voice(self, capability: Capability, job: Job, output: dict[str, Any]) -> str | None:
        spec = capability.spec.saves_voice
        name = job.local.get(spec.name_input) if spec else None
        if spec is None or not name:
            return None
        sources = {"output": output, "input": job.payload | job.local}
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

    def is_live(self, job_id: str) -> bool:
        return job_id in self._live

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
        return self._require(job_id)

    async def cancel(self, job_id: str) -> Job:
        """Cancel upstream, stop following, and record the job as cancelled."""
        job = self._require(job_id)
        if job.finished:
            return job
        if job.upstream_id is not None:
            accepted = await self.provider(job.provider).cancel(job.endpoint, job.handle)
            if not accepted:
                # It finished upstream before the cancel arrived: let the follower collect it.
                return await self.wait(job_id, timeout=30)
        live = self._live.get(job_id)
        if live is not None:
            live.scope.cancel()
        return self._store.update_job(job_id, state="cancelled", error="cancelled at the client's request")

    def _require(self, job_id: str) -> Job:
        job = self._store.get_job(job_id)
        if job is None:
            raise JobNotFound(not_found_message(job_id))
        return job


def not_found_message(job_id: str) -> str:
    return f"No job with id '{job_id[:64]}'. List recent jobs with list_jobs or read jobs://recent."


def _has_room(stream: MemoryObjectSendStream[Any]) -> bool:
    stats = stream.statistics()
    return stats.current_buffer_used < stats.max_buffer_size and stats.open_receive_streams > 0
