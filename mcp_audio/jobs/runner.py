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
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream
from pydantic import BaseModel, ValidationError

from mcp_audio import metrics
from mcp_audio.catalog import Capability, Catalog
from mcp_audio.core.errors import (
    ConfigError,
    InvalidArguments,
    JobNotFound,
    KeyInUse,
    McpAudioError,
    UpstreamBadAnswer,
    UpstreamError,
    UpstreamUnavailable,
)
from mcp_audio.core.job import IdempotencyKey
from mcp_audio.core.pricing import Confirm, NotConfirmed
from mcp_audio.core.redaction import redact, redact_json
from mcp_audio.core.results import OutputFile, extract_result, value_at
from mcp_audio.core.trace import JobContext, current_job
from mcp_audio.core.upstreams import UPSTREAMS
from mcp_audio.core.voices import SavedVoice
from mcp_audio.files.inputs import file_records
from mcp_audio.files.marking import Origin
from mcp_audio.files.outputs import OutputSaver
from mcp_audio.jobs.provenance import origin_for
from mcp_audio.jobs.spend import SpendGuard
from mcp_audio.providers.base import (
    Cancels,
    FileSink,
    Hears,
    OneShotProvider,
    Pacing,
    QueuedProvider,
    Report,
    Update,
    UpstreamRequest,
)
from mcp_audio.providers.pool import ProviderPool
from mcp_audio.store import LOCAL_PRINCIPAL, LOG_TAIL, Job, JobStore, is_outage, iso_time

log = logging.getLogger("mcp_audio.jobs")

OnUpdate = Callable[[Job, str], Awaitable[None]]
T = TypeVar("T")
# A stopping process hands its jobs on within this, or leaves them to lease expiry: a database
# that is gone or hung must not hold the stop (a supervisor kills a process that does not exit).
RELEASE_S = 3.0


class Driver(Protocol):
    """Runs jobs of a tool that is not one upstream call (a production): the runner leases and
    resumes them like any job, and calls the driver to do the work."""

    async def run(self, job_id: str) -> None:
        """Take the job (new or resumed) to its end; the row records every step."""

    async def cancel(self, job: Job) -> None:
        """The client cancelled the job: cancel what it started."""


@dataclass
class _Live:
    """A job being followed by this process."""

    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    listeners: set[MemoryObjectSendStream[tuple[Job, str]]] = field(default_factory=set)
    # Set while cancel_job runs: the upstream's "cancelled" failure is not this job's failure.
    cancelling: bool = False
    # Set once the submit has its answer (or failed): a cancel that came while the request was on
    # its way waits for this, to cancel the upstream job the request may have created.
    submitting: bool = False
    submitted: anyio.Event = field(default_factory=anyio.Event)
    # The row as this follower last wrote it (each transition returns it): waiters here need not
    # read it again, and progress appends to its log lines without a read.
    last: Job | None = None


def process_owner() -> str:
    """This process's name on the leases it holds: host, pid, and a nonce (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def replica_is_dead(host: str, pid: int) -> bool:
    """True only when a lease holder is known to be gone: a process on this host that no longer
    exists. Elsewhere (another host, or Windows, where probing a pid is not harmless) only
    its heartbeat's expiry says so."""
    if os.name != "posix" or host != socket.gethostname() or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


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
        pacing: Pacing | None = None,
        retention_s: float = 3600.0,
    ) -> None:
        self._store = store
        self._catalog = catalog
        self.catalog = catalog  # what the pipeline reads earlier jobs' tools from
        self.providers = providers
        self._tg = task_group
        self._secrets = list(secrets)
        self._live: dict[str, _Live] = {}
        self._spend = spend or SpendGuard(None)
        self._saver = saver
        self._download = download and saver is not None
        self._pacing = pacing or Pacing()
        self._retention_s = retention_s
        self.owner = process_owner()
        # Jobs whose end could not be written yet (the store is full or away), with why: retried
        # until written; while any is, /healthz says the store cannot be written.
        self.unrecorded: dict[str, str] = {}
        self._drivers: dict[str, Driver] = {}

    def add_driver(self, tool: str, driver: Driver) -> None:
        """Jobs of `tool` are run (and resumed after a restart) by `driver`."""
        self._drivers[tool] = driver

    async def aclose(self) -> None:
        try:
            with anyio.fail_after(RELEASE_S):
                await self._store.release(self.owner)  # the next process takes our unfinished jobs at once
        except Exception as exc:  # nothing is lost: the rows stay unfinished, leased to this stopped process
            hung = isinstance(exc, TimeoutError)
            why = f"the job database did not answer in {RELEASE_S:g} s" if hung else _cause(exc)
            log.warning(
                "stopping without handing on this process's jobs (%s): they stay unfinished; the next start "
                "on this host resumes them at once, another host once this lease expires (MCP_AUDIO_LEASE_S, %g s)",
                why,
                self._pacing.lease_s,
            )
        await self.providers.aclose()
        if self._saver is not None:
            await self._saver.aclose()

    # --- starting, leasing and taking over ---------------------------------------------------

    async def start(
        self,
        capability: Capability,
        request: UpstreamRequest,
        principal: str = LOCAL_PRINCIPAL,
        confirm: Confirm | None = None,
        *,
        cost: float | None,
        key: IdempotencyKey | None = None,
        traceparent: str | None = None,
        job_id: str | None = None,
        prepaid: bool = False,
    ) -> Job:
        """Persist a new job of `principal`'s, leased to this process, and start running it in the
        background. `cost` is the call's estimate (`PreparedCall.estimated_cost_usd`); `confirm` may
        ask the user about it first (NotConfirmed: no job). With an idempotency `key` that names
        a job already (a call sent at the same time, anywhere), that job, and nothing is sent.
        `prepaid`: its cost was approved and charged as part of a whole (a production's part, whose
        id `job_id` the production recorded beforehand)."""
        if not prepaid:
            if confirm is not None and cost is not None and not await confirm(capability.name, cost):
                raise NotConfirmed(capability.name, cost)
            unpriced = capability.spec.price is None and not capability.upstream.local  # local tools are free
            # Raises SpendLimitExceeded before anything is sent.
            await self._spend.charge(capability.name, cost, principal, unpriced=unpriced)
        charged = None if prepaid else cost  # what to give back if no job is made
        try:
            job = await self._store.create_job(
                job_id=job_id,
                principal=principal,
                estimated_cost_usd=cost,
                tool=capability.name,
                provider=capability.provider,
                endpoint=request.endpoint,
                body=file_records(request),
                options=request.options,
                owner=self.owner,
                idempotency=key,
                traceparent=traceparent,
            )
        except KeyInUse as used:  # the other call made the job (and was charged for it)
            await self._refund(principal, charged)
            assert key is not None
            return await self._replayed(key, used.job_id, used.request_hash)
        except Exception as exc:
            if not is_outage(exc):
                raise
            await self._refund(principal, charged)
            raise McpAudioError(
                f"The job database cannot be written now ({_cause(exc)}), so nothing was started; try again later."
            ) from exc
        if not prepaid:
            metrics.spent(capability.provider, cost)
        self._spawn(job, capability, request)
        return job

    async def replay(self, principal: str, key: IdempotencyKey) -> Job | None:
        """The job `principal`'s idempotency key already names (a call sent again), or None.
        InvalidArguments when the key was used for a call with other arguments."""
        found = await self._store.keyed_job(principal, key.key)
        return None if found is None else await self._replayed(key, *found)

    async def _replayed(self, key: IdempotencyKey, job_id: str, request_hash: str) -> Job:
        if request_hash != key.request_hash:
            raise InvalidArguments(
                f"Idempotency key {key.key!r} was already used, for job {job_id}, by a call with other "
                "arguments or another tool. A key names one call: send the same arguments to get that "
                "job back, or a new key for a new call."
            )
        log.info("a call sent again with idempotency key %r gets job %s back", key.key, job_id)
        return await self._known(job_id)

    async def charge(self, what: str, cost: float | None, principal: str, provider: str) -> None:
        """Hold `principal` to its spend cap for a whole (a production) at once: SpendLimitExceeded
        before anything is sent."""
        await self._spend.charge(what, cost, principal)
        metrics.spent(provider, cost)

    def drive(self, job: Job) -> None:
        """Run a job of a driven tool (its row written and leased to this process) in the background."""
        self._live[job.id] = _Live()
        self._tg.start_soon(self._drive, job.id, self._drivers[job.tool], name=f"job-{job.id}")

    async def _drive(self, job_id: str, driver: Driver) -> None:
        live = self._live[job_id]
        try:
            with live.scope:
                await driver.run(job_id)
        except McpAudioError as exc:
            if not live.cancelling:  # a cancel's doing is no failure: cancel() records it
                await self._store.fail(job_id, redact(str(exc), self._secrets), owner=self.owner)
        except Exception as exc:
            log.exception("job %s crashed", job_id)
            message = f"internal error in mcp-audio ({_cause(exc)}; see the server log)"
            await self._store.fail(job_id, message, owner=self.owner)
        finally:
            self._live.pop(job_id, None)
            for listener in live.listeners:
                listener.close()

    async def notify(self, job_id: str, message: str) -> None:
        """Tell the waiters of a job followed here (progress notifications)."""
        job = await self._store.get_job(job_id)
        if job is not None:
            self._notify(job, message)

    @property
    def lease_s(self) -> float:
        return self._pacing.lease_s

    async def keep_leases(self) -> None:
        """For the life of the server: renew the leases of the jobs followed here, stop following
        any this process lost, and take over jobs nobody follows."""
        self._tg.start_soon(self._store.listen, name="store-listen")  # other replicas' changes wake waiters
        self._tg.start_soon(self._beat_forever, name="heartbeat")
        while True:
            try:
                following = set(self._live)  # those started after this read are ours anyway
                held = await self._store.held(self.owner)
                for job_id in following - held:  # finished or cancelled elsewhere, or taken over: not ours now
                    if (live := self._live.get(job_id)) is not None:
                        live.scope.cancel()
                if adopted := await self.adopt_unfollowed():
                    log.info("following %d unfinished job(s) nobody else follows", adopted)
            except Exception as exc:  # the database is away for a moment: the server keeps serving, retries
                log.warning("could not renew or adopt job leases (%s: %s); trying again", type(exc).__name__, exc)
            await anyio.sleep(self._pacing.lease_s / 4)

    async def _beat_forever(self) -> None:
        # A loop of its own: the checks below wait behind a busy replica's job statements (up to
        # the pool's timeout), and a renewal waiting with them would let the lease of a live
        # replica expire, so that another takes its jobs over mid-submit.
        while True:
            try:
                await self.beat()
            except Exception as exc:
                log.warning("could not renew this process's lease (%s); trying again", _cause(exc))
            await anyio.sleep(self._pacing.lease_s / 4)

    async def beat(self) -> None:
        """Renew this process's lease on every job it follows: its heartbeat row, one statement."""
        await self._store.heartbeat(self.owner, socket.gethostname(), os.getpid(), self._pacing.lease_s)

    async def adopt_unfollowed(self) -> int:
        """Lease and follow every unfinished job no live process follows; returns how many."""
        orphans = await self._store.unfinished_jobs(unleased_only=True)
        dead = {owner for owner, host, pid in await self._store.live_replicas(self.owner) if replica_is_dead(host, pid)}
        if dead:  # probed once per owner; only their jobs are read
            orphans += await self._store.leased_by_others(self.owner, only=dead)
        adopted = 0
        for job in orphans:
            if job.id in self._live or not self.has_key(job.provider):
                continue  # a process without the upstream's key leaves its jobs as they are
            claimed = await self._store.claim(job.id, self.owner, taking_over=job.lease_owner)
            if claimed is None:
                continue  # another process was quicker
            job = claimed
            if self._saver is not None and (removed := self._saver.remove_partial(job.tool, job.id)):
                log.info("job %s: removed %d unfinished download(s) its stopped process left", job.id, removed)
            capability = self._catalog.get(job.tool)
            if job.tool in self._drivers:  # a production: its driver picks up where the row says
                self.drive(job)
                adopted += 1
            elif capability is None:
                await self._store.fail(job.id, f"tool {job.tool} no longer exists in this server", owner=self.owner)
            elif job.upstream_id is not None:
                self._spawn(job, capability, None)
                adopted += 1
            elif UPSTREAMS[job.provider].local:  # local work costs nothing: say so and let it be redone
                await self._store.fail(
                    job.id,
                    "The server stopped during this local job; nothing was saved. Call the tool again.",
                    owner=self.owner,
                )
            else:
                # Its process stopped while sending the request: it may have reached the upstream.
                upstream = UPSTREAMS[job.provider]
                await self._store.mark_unknown(
                    job.id,
                    f"The server stopped while sending this request to {upstream.label}, so whether it arrived "
                    f"(and was billed) is unknown. {_UNKNOWN_ADVICE.format(where=upstream.where_to_check)}",
                    owner=self.owner,
                )
        return adopted

    @property
    def following(self) -> int:
        """How many jobs this process follows now (the leases it holds)."""
        return len(self._live)

    def has_key(self, provider: str) -> bool:
        try:
            self.providers.get(provider).check_configured()
        except ConfigError:
            return False
        return True

    def waiting_note(self, job: Job) -> str | None:
        """Why an unfinished job may not move while this process is asked about it."""
        if job.finished or self.has_key(job.provider):
            return None
        env = UPSTREAMS[job.provider].key_env
        return (
            f"This server process has no {env}, so it leaves the job as it is: the job keeps running upstream "
            f"and a server process with {env} set follows it to the end."
        )

    def _spawn(self, job: Job, capability: Capability, request: UpstreamRequest | None) -> None:
        self._live[job.id] = _Live(last=job)
        self._tg.start_soon(self._follow, job.id, capability, request, name=f"job-{job.id}")

    # --- the life of one job ----------------------------------------------------------------

    async def _follow(self, job_id: str, capability: Capability, request: UpstreamRequest | None) -> None:
        live = self._live[job_id]
        # This task's log lines and upstream requests carry the job and its call's trace.
        current_job.set(JobContext(job_id, live.last.traceparent if live.last is not None else None))
        try:
            with live.scope:
                await self._run(job_id, capability, request)
        except Exception:  # never the task group's: one job's failure must not stop the server's other work
            log.exception("job %s: its follower failed; the job is left for the next lease check", job_id)
        finally:
            self._live.pop(job_id, None)
            for listener in live.listeners:
                listener.close()  # ends every waiter's loop; they read the final row themselves

    async def _run(self, job_id: str, capability: Capability, request: UpstreamRequest | None) -> None:
        job = self._live[job_id].last or await self._require(job_id)  # as created or claimed: no read
        provider = self.providers.get(job.provider)
        origin = origin_for(capability, job.endpoint, request)  # what the saved files' credentials state
        sidecars: list[OutputFile] = []  # credentials of files saved by the sink, in `.c2pa` files
        files = self._file_sink(capability, job_id, origin, sidecars)

        async def report(update: Update) -> None:
            await self._on_update(job_id, update)

        try:
            if capability.shape == "one_shot":
                assert isinstance(provider, OneShotProvider) and request is not None
                running = await self._tolerate(job_id, "its start", lambda: self._store.mark_running(job_id))
                if running is not None:
                    self._wrote(running)
                output = await provider.run(request, report, files)
            else:
                assert isinstance(provider, QueuedProvider)
                if job.upstream_id is None:
                    assert request is not None
                    job = await self._submit(job, provider, request)
                    self._notify(job, f"Submitted to {capability.upstream.label} (request {job.upstream_id})")
                handle = _stored_handle(provider.handle_type, job)
                heard = await self._hear_or_check(job, provider, handle) if isinstance(provider, Hears) else None
                if heard is None:  # no webhook, or one that said "done" without the output
                    heard = await self._follow_through_outages(job, provider, handle, report, files)
                output = heard
            # Upstream JSON is data: a secret it echoes is never stored or returned.
            output = {k: v if isinstance(v, OutputFile) else redact_json(v, self._secrets) for k, v in output.items()}
            result = extract_result(capability.spec.files, output)
            result.files += sidecars
            remote = [item for item in result.files if not item.saved]
            if self._download and self._saver is not None and remote:
                if not await self._store.holds(self.owner, job_id):
                    return  # this process stopped answering and another took the job over: it saves the files
                self._notify(job, f"Saving {len(remote)} file(s) to {self._saver.output_dir}")
                result.files = await self._saver.save_all(capability.name, job_id, result.files, origin)
            result.saved_voice = await self._recorded(
                job_id, "saved voice", lambda: self._save_voice(capability, job, output)
            )
            self._wrote(
                await self._recorded(job_id, "result", lambda: self._store.complete(job_id, result, owner=self.owner))
            )
        except McpAudioError as exc:
            live = self._live[job_id]
            while live.cancelling:  # the failure may be the cancel's doing: cancel() stops us if so
                await anyio.sleep(0.05)
            failure = exc
            await self._recorded(job_id, "failure", lambda: self._record_failure(job_id, capability, job, failure))
        except Exception as exc:
            log.exception("job %s crashed", job_id)
            message = f"internal error in mcp-audio ({_cause(exc)}; see the server log)"
            self._wrote(
                await self._recorded(job_id, "failure", lambda: self._store.fail(job_id, message, owner=self.owner))
            )

    async def _recorded(self, job_id: str, what: str, write: Callable[[], Awaitable[T]]) -> T:
        """Run one bookkeeping write of a job, retried with capped back-off while the store is
        full or away (the job's outcome is kept in memory meanwhile); other errors are raised."""
        delay = self._pacing.retry_initial_s
        while True:
            try:
                done = await write()
            except Exception as exc:
                if not is_outage(exc):
                    raise
                self.unrecorded[job_id] = f"{what}: {_cause(exc)}"
                log.warning(
                    "job %s: could not write its %s to the job database (%s); retrying in %.1f s",
                    job_id,
                    what,
                    _cause(exc),
                    delay,
                )
                await anyio.sleep(delay)
                delay = min(self._pacing.outage_retry_max_s, delay * 2)
                continue
            if self.unrecorded.pop(job_id, None) is not None:
                log.info("job %s: its %s is written now", job_id, what)
            return done

    async def _tolerate(self, job_id: str, what: str, write: Callable[[], Awaitable[T]]) -> T | None:
        """A bookkeeping write the job does not need (a state change the end overwrites, a log
        line): skipped (None), with a warning, while the store is full or away."""
        try:
            return await write()
        except Exception as exc:
            if not is_outage(exc):
                raise
            log.warning("job %s: %s not written to the job database (%s)", job_id, what, _cause(exc))
            return None

    async def _refund(self, principal: str, cost: float | None) -> None:
        if cost is None:
            return
        try:
            await self._spend.refund(principal, cost)
        except Exception as exc:  # the charge then stays: the cap errs on the safe side
            if not is_outage(exc):
                raise
            log.warning("could not take back a charge of $%.4f (%s)", cost, _cause(exc))

    async def _submit(self, job: Job, provider: QueuedProvider, request: UpstreamRequest) -> Job:
        """Send the request once and record the upstream's id. Shielded: a cancel or a stop that
        cut the request short could leave a paid upstream job nobody knows the id of, so they wait
        for the answer (the provider's timeouts bound it); cancel_job then cancels it upstream."""
        live = self._live[job.id]
        await anyio.lowlevel.checkpoint()  # cancelled before anything was sent: send nothing
        live.submitting = True
        try:
            with anyio.CancelScope(shield=True):
                try:
                    submitted = await provider.submit(request)
                except UpstreamError as exc:
                    if refused(exc):  # answered with a refusal: not accepted, not billed
                        await self._refund(job.principal, job.estimated_cost_usd)
                    raise
                job = self._wrote(
                    await self._recorded(
                        job.id,
                        "upstream id",
                        lambda: self._store.record_submission(
                            job.id, submitted.upstream_id, submitted.handle.model_dump(mode="json")
                        ),
                    )
                )
        finally:
            live.submitting = False
            live.submitted.set()
        return job

    async def _record_failure(self, job_id: str, capability: Capability, job: Job, exc: McpAudioError) -> None:
        message = redact(str(exc), self._secrets)
        if isinstance(exc, UpstreamError) and exc.may_have_run and job.upstream_id is None:
            # Sent, never confirmed: not resent, not followed.
            advice = _UNKNOWN_ADVICE.format(where=capability.upstream.where_to_check)
            self._wrote(await self._store.mark_unknown(job_id, f"{message} {advice}", owner=self.owner))
        else:
            self._wrote(await self._store.fail(job_id, message, owner=self.owner))

    async def _follow_through_outages(
        self, job: Job, provider: QueuedProvider, handle: BaseModel, report: Report, files: FileSink
    ) -> dict[str, Any]:
        """Follow a submitted job; an outage of its status or result (after the provider's own
        retries) is retried with capped back-off for as long as the upstream keeps the result.
        A restart continues from the stored handle, within the same window."""
        upstream = UPSTREAMS[job.provider]
        deadline = job.created_at + self._retention_s
        delay = self._pacing.retry_max_s
        while True:
            try:
                return await provider.follow(job.endpoint, handle, report, files)
            except (UpstreamUnavailable, UpstreamBadAnswer) as exc:
                left = deadline - time.time()
                if left <= 0:
                    raise UpstreamError(
                        f"{exc} It kept failing until the end of the window in which {upstream.label} keeps "
                        f"results ({self._retention_s / 60:g} min after the job started, "
                        "MCP_AUDIO_RESULT_RETENTION_S), so the server stopped asking.",
                        provider=upstream.label,
                        status=exc.status,
                    ) from exc
                wait = min(delay, left)
                detail = redact(exc.detail, self._secrets)[:160]
                line = (
                    f"{upstream.label} did not answer while following the job ({detail}); "
                    f"asking again in {wait:.1f} s, until {iso_time(deadline)}"
                )
                log.info("job %s: %s", job.id, line)
                await self._on_update(
                    job.id, Update(state="queued" if job.state == "queued" else "running", logs=[line])
                )
                await anyio.sleep(wait)
                delay = min(self._pacing.outage_retry_max_s, delay * 2)

    async def _hear_or_check(self, job: Job, provider: Hears, handle: BaseModel) -> dict[str, Any] | None:
        """A job submitted with a webhook: wait, holding no stream, for its delivery (stored in
        the row by whichever replica received it), with a slow status check in case it never
        comes. The output it carried; None when the job should be followed the usual way."""
        if not provider.hears(handle):
            return None
        check_at = time.monotonic() + self._pacing.webhook_check_s
        while True:
            delivery = (await self._require(job.id)).webhook
            if delivery is not None:
                return provider.webhook_output(delivery)
            if time.monotonic() >= check_at:
                try:
                    if await provider.is_finished(job.endpoint, handle):
                        log.info("job %s finished without its webhook; fetching its result", job.id)
                        return None
                except (UpstreamUnavailable, UpstreamBadAnswer) as exc:
                    log.info("job %s: status check failed (%s); checking again later", job.id, exc.detail)
                check_at = time.monotonic() + self._pacing.webhook_check_s
            with anyio.move_on_after(max(0.0, check_at - time.monotonic())):
                await self._store.changed(job.id)

    def _file_sink(
        self, capability: Capability, job_id: str, origin: Origin | None, sidecars: list[OutputFile]
    ) -> FileSink:
        """Where a provider puts bytes its upstream returned directly: the job's output files,
        marked as made by `origin` (a sidecar of credentials goes to `sidecars`). Blocking."""
        saved = itertools.count()

        def save(data: bytes | Path, content_type: str) -> OutputFile:
            if self._saver is None:
                raise McpAudioError("this server has no output folder to store returned audio in")
            item, *extra = self._saver.save_bytes(capability.name, job_id, next(saved), data, content_type, origin)
            sidecars.extend(extra)
            return item

        return save

    async def _on_update(self, job_id: str, update: Update) -> None:
        logs = [redact(line, self._secrets) for line in update.logs]
        live = self._live.get(job_id)
        before = live.last.logs if live is not None and live.last is not None else []
        try:
            recorded = await self._store.record_progress(
                job_id, update.state, update.queue_position, (before + logs)[-LOG_TAIL:]
            )
        except Exception as exc:  # a progress line is not worth the job
            if not is_outage(exc):
                raise
            log.warning("job %s: progress not written to the job database (%s)", job_id, _cause(exc))
            return
        job = self._wrote(recorded)
        if job.finished:  # a late update after cancel_job: the store left the row as it was
            return
        if update.partial is not None:
            message = f"Partial: {update.partial[-300:]}"
        elif update.state == "queued":
            message = "In queue" + (f" (position {update.queue_position})" if update.queue_position is not None else "")
        else:
            message = "Running" + (f": {job.logs[-1]}" if update.logs else "")
        self._notify(job, message)

    def _wrote(self, job: Job) -> Job:
        """Keep the row a transition returned, for this job's waiters and its next progress line."""
        live = self._live.get(job.id)
        if live is not None:
            live.last = job
        return job

    async def _save_voice(self, capability: Capability, job: Job, output: dict[str, Any]) -> str | None:
        spec = capability.spec.saves_voice
        name = job.options.get(spec.name_input) if spec else None
        if spec is None or not name:
            return None
        sources = {"output": output, "input": job.body | job.options}
        fields = {key: value_at(sources, path) for key, path in spec.fields.items()}
        await self._store.save_voice(
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
        """Wait up to `timeout` seconds for a job to finish, forwarding its updates, whether this
        process follows it or another one does (then its row is watched)."""
        job = await self._known(job_id)
        with anyio.move_on_after(timeout) as waited:
            while not job.finished:
                live = self._live.get(job_id)
                if live is not None:
                    await self._listen(live, on_update)
                    # The follower's last write, when it finished the job; else as the row stands.
                    job = live.last if live.last is not None and live.last.finished else await self._require(job_id)
                else:
                    await self._watch_row(job_id, on_update)
                    job = await self._require(job_id)
        return await self._require(job_id) if waited.cancelled_caught else job

    async def _known(self, job_id: str) -> Job:
        """The job as its follower here last wrote it, or as its row stands."""
        live = self._live.get(job_id)
        return live.last if live is not None and live.last is not None else await self._require(job_id)

    async def _listen(self, live: _Live, on_update: OnUpdate | None) -> None:
        """Forward a followed job's updates until its follower ends."""
        send, receive = anyio.create_memory_object_stream[tuple[Job, str]](64)
        live.listeners.add(send)
        try:
            async with receive:
                async for job, message in receive:
                    if on_update is not None:
                        await on_update(job, message)
        finally:
            live.listeners.discard(send)
            send.close()

    async def _watch_row(self, job_id: str, on_update: OnUpdate | None) -> None:
        """Watch the row of a job this process does not follow (another process on the database
        does) until it finishes or this process takes it over."""
        seen: tuple[Any, ...] | None = None
        while True:
            job = await self._require(job_id)
            if job.finished or job_id in self._live:
                return
            now = (job.state, job.queue_position, len(job.logs))
            if seen is not None and now != seen and on_update is not None:
                await on_update(job, f"{job.state.capitalize()}" + (f": {job.logs[-1]}" if job.logs else ""))
            seen = now
            await self._store.changed(job_id)  # a push from the database, or a short poll

    async def cancel(self, job_id: str) -> Job:
        """Cancel upstream, stop following, and record the job as cancelled."""
        job = await self._require(job_id)
        if job.finished:
            return job
        if job.tool in self._drivers:
            # The driver first (its parts' ends are then no failure of it), then its running parts.
            if (live := self._live.get(job_id)) is not None:
                live.cancelling = True
                live.scope.cancel()
            await self._drivers[job.tool].cancel(job)
            return await self._store.cancel(job_id, "cancelled at the client's request")
        upstream = UPSTREAMS[job.provider]
        if not upstream.can_cancel:
            raise InvalidArguments(
                f"The {upstream.label} cannot cancel tasks; task {job.upstream_id} keeps running upstream and it "
                "will finish on its own (get_job returns its result)."
            )
        provider = self.providers.get(job.provider)
        live = self._live.get(job_id)
        if live is not None and live.submitting:  # the request may be upstream already: learn its id first
            await live.submitted.wait()
            job = await self._require(job_id)
            if job.finished:
                return job
        if job.upstream_id is not None and isinstance(provider, Cancels) and isinstance(provider, QueuedProvider):
            if live is not None:
                live.cancelling = True
            try:
                accepted = await provider.cancel(job.endpoint, _stored_handle(provider.handle_type, job))
            finally:
                if live is not None:
                    live.cancelling = False
            if not accepted:
                # It finished upstream before the cancel arrived: let the follower collect it.
                return await self.wait(job_id, timeout=30)
        if live is not None:
            live.scope.cancel()  # a one-shot request is dropped here
        return await self._store.cancel(job_id, "cancelled at the client's request")

    async def _require(self, job_id: str) -> Job:
        job = await self._store.get_job(job_id)
        if job is None:
            raise JobNotFound(not_found_message(job_id))
        return job


# Ends the message of a job whose outcome is unknown: how the user finds out, and what then.
_UNKNOWN_ADVICE = "To see whether it ran, check {where}; if it is not there, call the tool again."


def _stored_handle(handle_type: type[BaseModel], job: Job) -> BaseModel:
    try:
        return handle_type.model_validate(job.handle)
    except ValidationError as exc:
        raise McpAudioError(
            f"job {job.id}'s stored upstream handle is not valid ({exc.error_count()} problem(s)); it cannot be "
            f"followed. Upstream request id: {job.upstream_id}."
        ) from exc


def refused(exc: UpstreamError) -> bool:
    """The upstream answered the request with a refusal (a 4xx such as fal's 422): it was not
    accepted, so it is not billed. Never true when it may have run (an 'unknown' outcome)."""
    return not exc.may_have_run and exc.status is not None and 400 <= exc.status < 500


def _cause(exc: BaseException) -> str:
    """A short, path-free description of a store or system error for messages and logs."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}".rstrip(": ")


def not_found_message(job_id: str) -> str:
    return f"No job with id '{job_id[:64]}'. List recent jobs with list_jobs or read jobs://recent."


def _has_room(stream: MemoryObjectSendStream[Any]) -> bool:
    stats = stream.statistics()
    return stats.current_buffer_used < stats.max_buffer_size and stats.open_receive_streams > 0
