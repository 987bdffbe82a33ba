"""The shapes a provider comes in, and the values that cross its boundary.

A provider turns a request into an upstream result; the job runner owns persistence and
progress, a provider only its wire protocol. Two shapes:

- queued (`QueuedProvider`): submit creates an upstream job whose handle is stored, so the job
  can be followed to its end, also by a later process after a restart;
- one-shot (`OneShotProvider`): one request answers with the output (a synchronous or
  streaming HTTP response); nothing upstream can be re-attached to later.

A provider may also make a local file readable by its upstream (`Uploads`) and cancel a
queued job (`Cancels`). The upstream table (`core/upstreams.py`) says which shapes each upstream offers;
the runner picks the one the tool's manifest names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel

from mcp_audio.core.job import LOCAL_PRINCIPAL

if TYPE_CHECKING:
    from mcp_audio.core.results import OutputFile
    from mcp_audio.core.upstreams import Upstream


@dataclass(frozen=True)
class Pacing:
    """How often providers poll, how patiently they and the runner retry, how long a job's
    lease lasts. Tests use short ones."""

    poll_initial_s: float = 0.5
    poll_max_s: float = 5.0
    retry_attempts: int = 5
    retry_initial_s: float = 0.5
    retry_max_s: float = 8.0
    stream_read_timeout_s: float = 60.0
    # A status stream that sends no status for this long gets one status request: a stream that
    # only sends keep-alives must not hide a finished job.
    stream_idle_check_s: float = 30.0
    # A status or result outage that outlasts the retries above is retried by the runner, with
    # back-off from retry_max_s up to this, until the upstream's retention window closes.
    outage_retry_max_s: float = 60.0
    # A process holds a lease on each job it follows, renewing it every quarter of this; a job
    # whose owner died is taken over once the lease runs out.
    lease_s: float = 20.0
    # A job submitted with a webhook holds no status stream: one status request this often
    # finishes it if its webhook never arrives.
    webhook_check_s: float = 60.0


@dataclass(frozen=True)
class FileBytes:
    """A file input's content, read once: a local file inside the allowed folders, a data: URI
    or a download. `source` is how the caller gave it, for messages and the job record."""

    name: str
    data: bytes = field(repr=False)
    content_type: str
    source: str

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def record(self) -> dict[str, Any]:
        """What the job row keeps of it (never the bytes)."""
        return {"file": self.source, "content_type": self.content_type, "bytes": len(self.data), "sha256": self.sha256}


@dataclass(frozen=True)
class LocalFile:
    """A file input of a tool run in this process (`sent_as = "path"`), ready to read.

    `source` is how the caller gave it (for messages); `temporary`: a download or data: URI
    written for this call, deleted by the provider when the call ends."""

    field: str  # the input it came from, e.g. "file" or "files[2]"
    path: Path
    source: str
    temporary: bool = False


@dataclass(frozen=True)
class UpstreamRequest:
    """One validated call, ready for its upstream.

    body: the JSON fields the upstream receives (file inputs as URLs).
    parts: file inputs the upstream takes as multipart parts, by field name.
    options: arguments only the server uses (an endpoint choice, a voice name to save).
    returns: what a one-shot answer holds ("json", or the "audio" bytes themselves).
    partial_path: in streaming one-shot runs, the event field with the partial text.
    local: for tools run in this process, what the server looked up for them (by input name:
        a LocalFile, a list of them, or a finished job's result output); not kept on the row.
    principal: who called (local renders are shared out per caller).
    """

    endpoint: str
    body: dict[str, Any]
    parts: dict[str, FileBytes] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    returns: Literal["json", "audio"] = "json"
    partial_path: str | None = None
    local: dict[str, Any] = field(default_factory=dict)
    principal: str = LOCAL_PRINCIPAL

    def local_files(self) -> list[LocalFile]:
        """The local file inputs, in argument order (a list input's files in its order)."""
        found: list[LocalFile] = []
        for value in self.local.values():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, LocalFile):
                    found.append(item)
        return found


@dataclass(frozen=True)
class Submitted:
    """What the upstream answered to a submit: its job id and what following it needs."""

    upstream_id: str
    handle: BaseModel


@dataclass(frozen=True)
class Update:
    """A change in an upstream job's state, reported while following it."""

    state: Literal["queued", "running"]
    queue_position: int | None = None
    logs: list[str] = field(default_factory=list)  # new log lines only
    partial: str | None = None  # a partial result (e.g. the transcript so far) in streaming runs


Report = Callable[[Update], Awaitable[None]]
# Stores bytes an upstream returned directly (no URL) as an output file of the current job; a
# Path is a finished file moved there (local tools write their output to a temporary file).
# Blocking (it writes, hashes and parses the file): providers call it on a worker thread.
FileSink = Callable[[bytes | Path, str], "OutputFile"]


class Provider(Protocol):
    """What every provider has, whatever its shape."""

    upstream: Upstream
    max_upload_bytes: int  # the largest file input this upstream takes

    def check_configured(self) -> None:
        """Raise ConfigError naming the missing setting (e.g. the API key variable)."""
        ...

    async def health(self) -> str:
        """One line on reachability (and health endpoint where one exists); raise UpstreamError if down."""
        ...

    async def aclose(self) -> None:
        """Release connections the provider created itself."""
        ...


@runtime_checkable
class QueuedProvider(Provider, Protocol):
    handle_type: type[BaseModel]  # validates a stored handle before a job is resumed

    async def submit(self, request: UpstreamRequest) -> Submitted:
        """Create the upstream job. Never retried in a way that could create a second billed job."""
        ...

    async def follow(self, endpoint: str, handle: Any, report: Report, files: FileSink) -> dict[str, Any]:
        """Follow the job to its end, calling `report` on each change; return the output JSON."""
        ...


@runtime_checkable
class OneShotProvider(Provider, Protocol):
    async def run(self, request: UpstreamRequest, report: Report, files: FileSink) -> dict[str, Any]:
        """Send the request and return the output it answers with."""
        ...


@runtime_checkable
class Uploads(Protocol):
    """A provider that can make a local file usable where its upstream reads a URL."""

    upload_lifetime_s: float  # how long an upload stays usable upstream (0: never reused)

    async def upload(self, endpoint: str, file: FileBytes) -> str:
        """Store `file` upstream; return what the request sends instead (a URL, or an id)."""
        ...


@runtime_checkable
class Cancels(Protocol):
    async def cancel(self, endpoint: str, handle: Any) -> bool:
        """Ask the upstream to cancel; False when it had already finished."""
        ...


@runtime_checkable
class Hears(Protocol):
    """A queued provider whose upstream can announce a job's end with a webhook (see webhooks.py)."""

    def hears(self, handle: Any) -> bool:
        """True if this job was submitted with a webhook."""
        ...

    def webhook_output(self, delivery: dict[str, Any]) -> dict[str, Any] | None:
        """The job's output from a verified delivery; raises UpstreamJobFailed for a failed job;
        None when the delivery carries no output (then it is fetched)."""
        ...

    async def is_finished(self, endpoint: str, handle: Any) -> bool:
        """One status request: has the job finished (either way)?"""
        ...


@runtime_checkable
class VoiceCatalog(Protocol):
    """A provider whose upstream lists its voices (filtered upstream, cached here)."""

    async def list_models(
        self,
        *,
        title: str | None = None,
        language: str | None = None,
        tag: str | None = None,
        sort: str | None = None,
        refresh: bool = False,
    ) -> list[dict[str, Any]]: ...


@runtime_checkable
class VerifiesKey(Protocol):
    """A provider that can prove its key is accepted with a request that costs nothing."""

    async def verify_key(self) -> str:
        """A line saying how the key was accepted; raise AuthenticationFailed when it is rejected."""
        ...
