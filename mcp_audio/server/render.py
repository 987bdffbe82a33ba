"""A job as the agent reads it: the tool result (files, model fields, a short text) and the summary."""

from __future__ import annotations

import base64
import json
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from mcp_types import AudioContent, CallToolResult, ResourceLink, TextContent

from mcp_audio.core.job import Job, iso_time
from mcp_audio.core.results import JobResult, OutputFile, value_at

if TYPE_CHECKING:
    from mcp_audio.catalog import Capability, Catalog

__all__ = ["job_result", "job_summary", "summary_text"]


def job_summary(job: Job) -> dict[str, Any]:
    """The job as an agent sees it (no request body: it may be long and the agent sent it)."""
    out: dict[str, Any] = {
        "job_id": job.id,
        "tool": job.tool,
        "status": job.state,
        "endpoint": job.endpoint,
        "created_at": iso_time(job.created_at),
    }
    if job.queue_position is not None and job.state == "queued":
        out["queue_position"] = job.queue_position
    if job.estimated_cost_usd is not None:
        out["estimated_cost_usd"] = job.estimated_cost_usd
    if job.finished_at is not None:
        out["finished_at"] = iso_time(job.finished_at)
        out["duration_s"] = round(job.finished_at - job.created_at, 2)
    if job.error:
        out["error"] = job.error
    if job.logs and not job.finished:
        out["logs"] = job.logs[-5:]
    if isinstance(job.handle.get("progress"), dict) and not job.finished:  # a production: parts done
        out["progress"] = job.handle["progress"]
    return out


def summary_text(
    capability: Capability, job_id: str, result: JobResult, catalog: Catalog | None = None, *, remote: bool = False
) -> str:
    """A few lines for the model: what was made, where, and the transcript when there is one.
    `remote`: a caller on another machine, shown the files:// resource instead of this one's path."""
    lines = [f"{capability.name} finished (job {job_id})."]
    for item in result.files:
        duration = f"{item.duration_s:g} s" if item.duration_s else None
        parts = (item.content_type, _size(item.file_size), duration)
        details = ", ".join(str(part) for part in parts if part)
        where = (item.resource if remote else item.path) or item.url
        lines.append(f"- {where}" + (f" ({details})" if details else ""))
        if item.saved:
            lines.append(f"  from {item.url}")
        elif item.download_error:
            lines.append(f"  (not saved locally: {item.download_error})")
        if (marked := item.credentials) is not None:  # what the file now says of itself
            # A sidecar by its file name only: a remote caller is never shown this server's paths.
            sidecar = f"in {PurePath(marked.sidecar).name}" if marked.sidecar else None
            how = "embedded" if marked.embedded else sidecar or marked.error or "none"
            tagged = f"; tagged: {marked.disclosure}" if marked.disclosure else ""
            lines.append(f"  Content Credentials: {how}{tagged}")
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
        lines.append(f"Saved as voice '{result.saved_voice}'{_voice_use(capability, result.saved_voice, catalog)}.")
    return "\n".join(lines)


def _voice_use(capability: Capability, name: str, catalog: Catalog | None) -> str:
    """Which tools take a voice this clone saved, and in which argument (from their manifests)."""
    saves = capability.spec.saves_voice
    if saves is None or catalog is None:
        return ""
    uses = []
    for other in catalog.capabilities.values():
        voice = other.spec.voice
        if voice is None or voice.family != saves.family:
            continue
        value = json.dumps([name] if other.inputs[voice.input].type == "array" else name)
        uses.append(f"with {other.name} as `{voice.input}`: {value}")
    return ": use it " + ", or ".join(uses) if uses else ""


def _size(size: Any) -> str | None:
    if not isinstance(size, int | float):
        return None
    return f"{size / 1024:.1f} kB" if size < 1024 * 1024 else f"{size / 1024 / 1024:.1f} MB"


def job_result(
    catalog: Catalog, job: Job, *, inline_max_kb: int | None = None, note: str | None = None, remote: bool = False
) -> CallToolResult:
    """The tool result for a job in any state; `note` says why an unfinished job may not move.
    `remote` (over HTTP): the server's own paths are left out; the files:// resource stands for them."""
    body = job_summary(job)
    content: list[Any] = []
    if job.state == "completed" and job.result is not None:
        body.update(job.result.body())
        if remote:
            body["files"] = [_without_local_paths(entry) for entry in body["files"]]
        capability = catalog.get(job.tool)
        if capability is None and isinstance(body["output"], dict):
            body["output"] = {k: v for k, v in body["output"].items() if k != "summary"}
        summary = job.result.output.get("summary")  # a production words its own
        text = (
            summary_text(capability, job.id, job.result, catalog, remote=remote)
            if capability
            else summary
            if isinstance(summary, str)
            else f"{job.tool} finished (job {job.id})."
        )
        content.append(TextContent(type="text", text=text))
        # A production's files beyond its main one are in structuredContent (each link costs context).
        for item in job.result.files if capability else job.result.files[:1]:
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


def _without_local_paths(entry: dict[str, Any]) -> dict[str, Any]:
    """A file entry without this machine's path (a bucket's `s3://` address is not one)."""
    local = not str(entry.get("path", "")).startswith("s3://")
    return {key: value for key, value in entry.items() if not (local and key in ("path", "file_uri"))}


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
