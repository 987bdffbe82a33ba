"""The values a finished job hands back (output files, the job result), how an upstream output
becomes one, and the tool result an agent reads: files, model fields, a short text."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcp_types import AudioContent, CallToolResult, ResourceLink, TextContent
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from mcp_audio.catalog import Capability, Catalog
    from mcp_audio.store import Job


class OutputFile(BaseModel):
    """One output file: what the upstream said of it, and its local copy when one was saved."""

    model_config = ConfigDict(extra="forbid")

    url: str
    content_type: str | None = None
    file_name: str | None = None
    file_size: int | None = None
    # The local copy (absent when not saved):
    path: str | None = None
    file_uri: str | None = None
    resource: str | None = None  # files://{job_id}/{name}, served by this server
    sha256: str | None = None
    duration_s: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    download_error: str | None = None  # why there is no local copy

    @property
    def saved(self) -> bool:
        return self.path is not None

    def entry(self) -> dict[str, Any]:
        """As tool results show it."""
        return self.model_dump(exclude_none=True)


class JobResult(BaseModel):
    """What a completed job produced."""

    model_config = ConfigDict(extra="forbid")

    files: list[OutputFile]
    output: dict[str, Any]
    saved_voice: str | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"files": [item.entry() for item in self.files], "output": self.output}
        if self.saved_voice is not None:
            body["saved_voice"] = self.saved_voice
        return body


def extract_result(capability: Capability, output: dict[str, Any]) -> JobResult:
    """Split an upstream output into output files (per the manifest) and the other fields.

    A file object gives its URL, type, name and size: anything else it says (inline bytes,
    a local path) is not taken, so an upstream cannot point this server at a file of its own.
    """
    files: list[OutputFile] = []
    for path in capability.spec.files:
        for item in _at_path(output, path):
            if isinstance(item, OutputFile):  # bytes the provider stored through the job's FileSink
                files.append(item)
            elif isinstance(item, dict) and isinstance(item.get("url"), str) and item["url"]:
                files.append(_upstream_file(item))
    file_roots = {path.split(".")[0].removesuffix("[]") for path in capability.spec.files}
    fields = {key: value for key, value in output.items() if key not in file_roots}
    return JobResult(files=files, output=fields)


def _upstream_file(item: dict[str, Any]) -> OutputFile:
    size = item.get("file_size")
    return OutputFile(
        url=item["url"],
        content_type=item["content_type"] if isinstance(item.get("content_type"), str) else None,
        file_name=item["file_name"] if isinstance(item.get("file_name"), str) else None,
        file_size=size if isinstance(size, int) and not isinstance(size, bool) else None,
    )


def _at_path(data: Any, path: str) -> list[Any]:
    """Values at a dot path; a segment ending in [] fans out over a list."""
    values = [data]
    for segment in path.split("."):
        is_list = segment.endswith("[]")
        key = segment.removesuffix("[]")
        next_values: list[Any] = []
        for value in values:
            child = value.get(key) if isinstance(value, dict) else None
            if is_list and isinstance(child, list):
                next_values.extend(child)
            elif child is not None:
                next_values.append(child)
        values = next_values
    return values


def value_at(data: Any, path: str) -> Any:
    found = _at_path(data, path)
    return found[0] if found else None


def summary_text(capability: Capability, job_id: str, result: JobResult) -> str:
    """A few lines for the model: what was made, where, and the transcript when there is one."""
    lines = [f"{capability.name} finished (job {job_id})."]
    for item in result.files:
        duration = f"{item.duration_s:g} s" if item.duration_s else None
        parts = (item.content_type, _size(item.file_size), duration)
        details = ", ".join(str(part) for part in parts if part)
        lines.append(f"- {item.path or item.url}" + (f" ({details})" if details else ""))
        if item.saved:
            lines.append(f"  from {item.url}")
        elif item.download_error:
            lines.append(f"  (not saved locally: {item.download_error})")
    if capability.spec.kind == "post":  # what the finishing tools measured, for clients that show only text
        facts = [
            f"{key} {value:g}" if isinstance(value, float) else f"{key} {value}"
            for key, value in result.output.items()
            if isinstance(value, int | float | str) and key != capability.spec.result_text
        ]
        if facts:
            lines.append("Measured: " + ", ".join(facts))
    if capability.spec.result_text:
        text = value_at(result.output, capability.spec.result_text)
        if isinstance(text, str):
            lines.append(f"Transcript:\n{text}")
    if result.saved_voice:
        lines.append(f"Saved as voice '{result.saved_voice}': pass it as `voice` to the matching text-to-speech tool.")
    return "\n".join(lines)


def _size(size: Any) -> str | None:
    if not isinstance(size, int | float):
        return None
    return f"{size / 1024:.1f} kB" if size < 1024 * 1024 else f"{size / 1024 / 1024:.1f} MB"


def job_result(
    catalog: Catalog, job: Job, *, inline_max_kb: int | None = None, note: str | None = None
) -> CallToolResult:
    """The tool result for a job in any state; `note` says why an unfinished job may not move."""
    body = job.summary()
    content: list[Any] = []
    if job.state == "completed" and job.result is not None:
        body.update(job.result.body())
        capability = catalog.get(job.tool)
        text = summary_text(capability, job.id, job.result) if capability else f"{job.tool} finished (job {job.id})."
        content.append(TextContent(type="text", text=text))
        for item in job.result.files:
            # A saved file is linked through this server (files://), which any client can read.
            content.append(
                ResourceLink(
                    type="resource_link",
                    uri=item.resource or item.url,
                    name=item.file_name or item.url.rsplit("/", 1)[-1],
                    mime_type=item.content_type,
                    size=item.file_size,
                )
            )
            inline = _inline_audio(item, inline_max_kb)
            if inline is not None:
                content.append(inline)
        return CallToolResult(content=content, structured_content=body)
    if job.state in ("failed", "unknown"):
        what = "failed" if job.state == "failed" else "has an unknown outcome"
        text = f"{job.tool} {what} (job {job.id}): {job.error}"
        return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=body, is_error=True)
    if job.state == "cancelled":
        return CallToolResult(
            content=[TextContent(type="text", text=f"{job.tool} job {job.id} was cancelled.")], structured_content=body
        )
    body["resource"] = f"jobs://{job.id}"
    where = f"in queue (position {job.queue_position})" if job.queue_position is not None else job.state
    text = (
        f"{job.tool} is still {where} (job {job.id}). It keeps running: call get_job with "
        f'job_id="{job.id}" and wait_s=60 to wait for the result, or cancel_job to stop it.'
    )
    if note:
        body["note"] = note
        text += " " + note
    return CallToolResult(
        content=[
            TextContent(type="text", text=text),
            ResourceLink(
                type="resource_link", uri=f"jobs://{job.id}", name=f"job {job.id}", mime_type="application/json"
            ),
        ],
        structured_content=body,
    )


def _inline_audio(item: OutputFile, inline_max_kb: int | None) -> AudioContent | None:
    """Audio content for clients that play it directly, when the saved file is small enough."""
    content_type = item.content_type or ""
    if inline_max_kb is None or item.path is None or not content_type.startswith("audio/"):
        return None
    if not Path(item.path).is_file():  # kept in an output bucket (s3://): its URL is in the result
        return None
    if (item.file_size or 0) > inline_max_kb * 1024:
        return None
    data = base64.b64encode(Path(item.path).read_bytes()).decode()
    return AudioContent(type="audio", data=data, mime_type=content_type)
