"""MCP tasks: in protocol 2025-11-25, a task-augmented `tools/call` answers at once with a task,
which the client follows with tasks/get, tasks/result, tasks/list and tasks/cancel; in
2026-07-28, the tasks extension (`io.modelcontextprotocol/tasks`): a call of a client that
declares it, still unfinished after MCP_AUDIO_WAIT_S, answers with a task instead of a job
handle, followed with tasks/get (the result inline), tasks/update and tasks/cancel.

A task is a job: the task id is the job id, and its state is read from the job store, so a
task survives restarts and is followed by whichever process follows the job. The SDK keeps
tasks types-only, so this module adds them itself: SDK middleware advertises
`capabilities.tasks` on initialize, marks capability tools `execution.taskSupport: "optional"`
in tools/list, and answers a call that carries `task` with a CreateTaskResult (after the tool
started the job and returned without waiting); the tasks/* methods are request handlers.
The 2026 extension is the SDK's Extension, which intercepts tools/call. Other protocol
versions see none of it.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from anyio.abc import TaskGroup
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension
from mcp.server.lowlevel.server import Server
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    CallToolRequestParams,
    CallToolResult,
    CancelTaskRequestParams,
    GetTaskPayloadRequestParams,
    GetTaskRequestParams,
    PaginatedRequestParams,
    RequestParams,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcp_audio.core.errors import McpAudioError
from mcp_audio.core.redaction import redact
from mcp_audio.jobs import not_found_message
from mcp_audio.server.principal import current_principal
from mcp_audio.server.render import job_result
from mcp_audio.server.state import Runtime
from mcp_audio.store import Job, iso_time

log = logging.getLogger("mcp_audio.tasks")

VERSION = "2025-11-25"  # the protocol revision with tasks in its core
EXTENSION = "io.modelcontextprotocol/tasks"  # tasks from 2026-07-28 on
MISSING_CAPABILITY = -32021
RELATED_TASK = "io.modelcontextprotocol/related-task"
POLL_INTERVAL_MS = 2000
PAGE = 100  # tasks per tasks/list page
CAPABILITY: dict[str, Any] = {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}
# Job states as task statuses: an outcome we cannot know is a failure to the requestor.
STATUS = {
    "queued": "working",
    "running": "working",
    "completed": "completed",
    "failed": "failed",
    "unknown": "failed",
    "cancelled": "cancelled",
}


@dataclass
class _TaskCall:
    """A task-augmented tools/call in progress: the tool fills in the job it started."""

    job_id: str | None = None


_CALL: ContextVar[_TaskCall | None] = ContextVar("mcp_audio_task_call", default=None)


def started_as_task(job: Job) -> bool:
    """A capability tool calls this once its job exists: True when the call is task-augmented,
    and the tool returns at once (the client receives the task instead of its result)."""
    call = _CALL.get()
    if call is None:
        return False
    call.job_id = job.id
    return True


def task_of(job: Job, *, modern: bool = False) -> dict[str, Any]:
    """The job as a Task (ttl null: job rows are kept until removed by hand). In the 2026
    extension a tool result with isError is `completed` (`failed` is for JSON-RPC errors)."""
    status = STATUS[job.state]
    task: dict[str, Any] = {
        "taskId": job.id,
        "status": "completed" if modern and status == "failed" else status,
        "createdAt": iso_time(job.created_at),
        "lastUpdatedAt": iso_time(job.updated_at),
        "ttlMs" if modern else "ttl": None,
        "pollIntervalMs" if modern else "pollInterval": POLL_INTERVAL_MS,
    }
    message = job.error if job.finished else (job.logs[-1] if job.logs else None)
    if job.state == "queued" and job.queue_position is not None:
        message = f"In queue (position {job.queue_position})"
    if message:
        task["statusMessage"] = message[:500]
    return task


class Tasks:
    """The tasks of one server: middleware for initialize, tools/list and tools/call, and the
    tasks/* handlers. `task_tools` are the tools that may run as tasks (the capability tools)."""

    def __init__(self, runtime: Runtime, task_tools: Iterable[str], secrets: Callable[[], list[str]]) -> None:
        self._runtime = runtime
        self._tools = frozenset(task_tools)
        self._secrets = secrets
        self._group: TaskGroup | None = None  # the server's, for status notifications

    def attach(self, group: TaskGroup | None) -> None:
        self._group = group

    def extension(self) -> Extension:
        """The 2026-07-28 tasks extension, for MCPServer(extensions=...)."""
        return _TasksExtension(self)

    def install(self, server: Server[Any]) -> None:
        server.middleware.append(self)
        server.add_request_handler("tasks/get", GetTaskRequestParams, self._get)
        server.add_request_handler("tasks/result", GetTaskPayloadRequestParams, self._result)
        server.add_request_handler("tasks/list", PaginatedRequestParams, self._list)
        server.add_request_handler("tasks/cancel", CancelTaskRequestParams, self._cancel)
        server.add_request_handler("tasks/update", RequestParams, self._update)

    # --- middleware -------------------------------------------------------------------------

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "initialize":
            result = await call_next(ctx)
            if isinstance(result, dict) and result.get("protocolVersion") == VERSION:
                result["capabilities"]["tasks"] = CAPABILITY
            return result
        if ctx.protocol_version != VERSION:
            return await call_next(ctx)
        if ctx.method == "tools/list":
            result = await call_next(ctx)
            for tool in result.get("tools", []) if isinstance(result, dict) else []:
                if tool.get("name") in self._tools:
                    tool["execution"] = {"taskSupport": "optional"}
            return result
        params = ctx.params or {}
        if ctx.method != "tools/call" or params.get("task") is None:
            return await call_next(ctx)
        if params.get("name") not in self._tools:
            raise MCPError(METHOD_NOT_FOUND, f"Tool '{str(params.get('name'))[:64]}' does not run as a task")
        call = _TaskCall()
        token = _CALL.set(call)
        try:
            result = await call_next(ctx)
        finally:
            _CALL.reset(token)
        if call.job_id is None:  # refused before any job existed: the tool error, as a plain call gets it
            return result
        job = await self.job(call.job_id)
        self._notify_when_finished(ctx, job.id)
        return {"task": task_of(job)}

    # --- tasks/* ------------------------------------------------------------------------------

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: GetTaskRequestParams) -> dict[str, Any]:
        if self._require_version(ctx, modern_too=True):
            job = await self.job(params.task_id)
            task = task_of(job, modern=True)
            if job.finished and job.state != "cancelled":  # the DetailedTask: the result inline
                task["result"] = self._call_result(job)
            return task
        return task_of(await self.job(params.task_id))

    async def _update(self, ctx: ServerRequestContext[Any, Any], params: RequestParams) -> dict[str, Any]:
        """2026: our tasks never wait for input, so there is nothing to update; acknowledged."""
        self._require_version(ctx, modern_too=True, legacy=False)
        task_id = (ctx.params or {}).get("taskId")
        await self.job(str(task_id))
        return {}

    async def _result(self, ctx: ServerRequestContext[Any, Any], params: GetTaskPayloadRequestParams) -> dict[str, Any]:
        """Waits for the end, then answers what the tools/call would have (an error result too)."""
        self._require_version(ctx)
        state = self._runtime.get()
        job = await self.job(params.task_id)
        while not job.finished:
            job = await state.runner.wait(job.id, 600)
        body = self._call_result(job)
        body["_meta"] = {**body.get("_meta", {}), **_related(job.id)}
        return body

    def _call_result(self, job: Job) -> dict[str, Any]:
        """What the tools/call of a finished job answers, as JSON."""
        state = self._runtime.get()
        result = job_result(state.catalog, job, inline_max_kb=state.settings.inline_max_kb, remote=state.remote)
        body: dict[str, Any] = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        body.pop("resultType", None)  # the call's own envelope, not the task's
        return body

    async def _list(self, ctx: ServerRequestContext[Any, Any], params: PaginatedRequestParams) -> dict[str, Any]:
        """Newest first, PAGE a page; the cursor is the count already listed."""
        self._require_version(ctx)
        cursor = params.cursor or "0"
        if not cursor.isdigit() or len(cursor) > 9:
            raise MCPError(INVALID_PARAMS, f"Invalid cursor {cursor[:40]!r}: pass back a nextCursor of tasks/list")
        start = int(cursor)
        jobs = await self._runtime.get().store.list_jobs(limit=start + PAGE + 1, principal=current_principal())
        page: dict[str, Any] = {"tasks": [task_of(job) for job in jobs[start : start + PAGE]]}
        if len(jobs) > start + PAGE:
            page["nextCursor"] = str(start + PAGE)
        return page

    async def _cancel(self, ctx: ServerRequestContext[Any, Any], params: CancelTaskRequestParams) -> dict[str, Any]:
        modern = self._require_version(ctx, modern_too=True)
        job = await self.job(params.task_id)
        if job.finished and modern:  # 2026: an acknowledgement; the task stays as it ended
            return {}
        if job.finished:
            raise MCPError(INVALID_PARAMS, f"Cannot cancel task {job.id}: it is already {STATUS[job.state]}")
        try:
            job = await self._runtime.get().runner.cancel(job.id)
        except McpAudioError as exc:  # an upstream that cannot cancel: the task runs on
            raise MCPError(INVALID_PARAMS, redact(str(exc), self._secrets())) from exc
        return {} if modern else task_of(job)

    # --- helpers ------------------------------------------------------------------------------

    def _require_version(
        self, ctx: ServerRequestContext[Any, Any], *, modern_too: bool = False, legacy: bool = True
    ) -> bool:
        """True for a 2026 request (which must declare the extension), False for a 2025-11-25
        one; any other version does not have the method."""
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS and modern_too:
            if not declares_extension(ctx):
                raise MCPError(
                    MISSING_CAPABILITY,
                    "Missing required client capability",
                    {"requiredCapabilities": {"extensions": {EXTENSION: {}}}},
                )
            return True
        if ctx.protocol_version != VERSION or not legacy:
            raise MCPError(METHOD_NOT_FOUND, "Method not found", ctx.method)
        return False

    def offers_task(self, ctx: ServerRequestContext[Any, Any], tool: str) -> bool:
        """Whether a 2026 call may be answered with a task."""
        return ctx.protocol_version in MODERN_PROTOCOL_VERSIONS and tool in self._tools and declares_extension(ctx)

    async def job(self, task_id: str) -> Job:
        """The caller's job of this id (-32602 when there is none)."""
        job = await self._runtime.get().store.get_job(task_id, current_principal())
        if job is None:  # another caller's job is as if there were none
            raise MCPError(INVALID_PARAMS, not_found_message(task_id).replace("No job", "No task", 1))
        return job

    def _notify_when_finished(self, ctx: ServerRequestContext[Any, Any], job_id: str) -> None:
        """Forwards the job's progress to the call's progressToken (valid for the task's life),
        and sends notifications/tasks/status when the task ends (the requestor may poll instead)."""
        if self._group is None:
            return
        # The SDK has no typed status notification (tasks are types-only there), and the call's
        # response is long sent: the connection's own channel carries these.
        outbound, runner = ctx.session._connection.outbound, self._runtime.get().runner
        token = (ctx.meta or {}).get("progress_token")
        counter = itertools.count(1)

        async def progress(job: Job, message: str) -> None:
            if token is not None:
                await outbound.notify(
                    "notifications/progress",
                    {"progressToken": token, "progress": next(counter), "message": message, "_meta": _related(job_id)},
                )

        async def watch() -> None:
            try:
                job = await runner.wait(job_id, 0)
                while not job.finished:
                    job = await runner.wait(job_id, 600, progress)
                await outbound.notify("notifications/tasks/status", task_of(job))
            except Exception as exc:  # the client went away: it polls when it comes back
                log.debug("task %s: notification not delivered (%s)", job_id, exc)

        self._group.start_soon(watch, name=f"task-status-{job_id}")


def _related(task_id: str) -> dict[str, Any]:
    return {RELATED_TASK: {"taskId": task_id}}


def declares_extension(ctx: ServerRequestContext[Any, Any]) -> bool:
    capabilities = ctx.session.client_capabilities
    return capabilities is not None and EXTENSION in (capabilities.extensions or {})


class _TasksExtension(Extension):
    """2026-07-28: a call still unfinished when the tool stops waiting becomes a task."""

    identifier = EXTENSION

    def __init__(self, tasks: Tasks) -> None:
        self._tasks = tasks

    async def intercept_tool_call(
        self, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        result = await call_next(ctx)
        if not isinstance(result, CallToolResult) or not self._tasks.offers_task(ctx, params.name):
            return result
        body = result.structured_content or {}
        if result.is_error or body.get("status") not in ("queued", "running"):
            return result
        job = await self._tasks.job(str(body["job_id"]))
        return {"resultType": "task", **task_of(job, modern=True)}
