"""The one protocol every upstream implements, and the values that cross it.

A provider turns an endpoint id and a request body into an upstream job and follows that job
to its output. The job runner owns persistence and progress; a provider owns only its wire
protocol. Handles are plain JSON so a job can be resumed after a restart from its stored row.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol


@dataclass(frozen=True)
class Submitted:
    """What the upstream answered to a submit: its job id and what following it needs."""

    upstream_id: str
    handle: dict[str, Any]


@dataclass(frozen=True)
class Update:
    """A change in an upstream job's state, reported while following it."""

    state: Literal["queued", "running"]
    queue_position: int | None = None
    logs: list[str] = field(default_factory=list)  # new log lines only
    progress: float | None = None  # 0-100 where the upstream reports it
    partial: str | None = None  # a partial result (e.g. the transcript so far) in streaming runs


Report = Callable[[Update], Awaitable[None]]


# Stores bytes an upstream returned directly (no URL) as an output file of the current job:
# (data, content_type) -> a file entry {url (file://), path, file_name, content_type, ...}.
FileSink = Callable[[bytes, str], dict[str, Any]]


class Provider(Protocol):
    """One upstream API (fal queue, Voice API tasks, Eigen generate)."""

    name: str
    max_upload_bytes: int
    # True: the upstream reads files as multipart parts, so a local file input reaches the
    # provider as a `file://` URI for it to send; False: the provider uploads it and gets a URL.
    takes_file_bytes: bool
    upload_lifetime_s: float  # how long an uploaded file stays readable upstream

    def check_configured(self) -> None:
        """Raise ConfigError naming the missing setting (e.g. the API key variable)."""
        ...

    async def health(self) -> str:
        """One line on reachability (and health endpoint where one exists); raise ProviderError if down."""
        ...

    async def submit(self, endpoint: str, payload: dict[str, Any]) -> Submitted:
        """Create the upstream job. Never retried in a way that could create a second billed job."""
        ...

    async def follow(self, endpoint: str, handle: dict[str, Any], report: Report, files: FileSink) -> dict[str, Any]:
        """Follow the job to its end, calling `report` on each change; return the output JSON.

        Raises UpstreamJobFailed when the job itself failed, another ProviderError when the
        upstream could not be reached.
        """
        ...

    async def stream(
        self, endpoint: str, payload: dict[str, Any], report: Report, partial_path: str | None, files: FileSink
    ) -> dict[str, Any]:
        """Run an endpoint in one (streaming or synchronous) request; return the output.

        Nothing upstream can be re-attached to later, so such jobs do not survive a restart.
        """
        ...

    async def upload(self, data: bytes, content_type: str, file_name: str) -> str:
        """Make a local file readable by the upstream; return the URL to pass as the input."""
        ...

    async def cancel(self, endpoint: str, handle: dict[str, Any]) -> bool:
        """Ask the upstream to cancel; False when it had already finished."""
        ...

    async def aclose(self) -> None:
        """Release connections the provider created itself."""
        ...
