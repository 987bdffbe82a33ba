"""References to what this server made earlier, so an agent chains steps without paths:
`files://{job_id}/{name}` (one output file of a job), `jobs://{job_id}` (that job's first audio
output), and a job id whose finished result a tool reads (a transcript's timings, or a speech
job's text).

Each lookup names the field and says what to do when the job is unknown, unfinished, failed,
or has no such output.
"""

from __future__ import annotations

import mimetypes
from typing import TYPE_CHECKING, Any

from mcp_audio.core.errors import InvalidArguments
from mcp_audio.core.results import value_at

if TYPE_CHECKING:
    from mcp_audio.catalog import Capability, Catalog
    from mcp_audio.core.results import OutputFile
    from mcp_audio.store import Job, JobStore

FILES, JOBS = "files://", "jobs://"
TIMINGS = ("words", "chunks", "segments")  # the transcript shapes subtitles are made from


def is_reference(value: str) -> bool:
    return value.startswith((FILES, JOBS))


async def finished_job(store: JobStore, field: str, value: str, principal: str) -> Job:
    """The completed job of `principal`'s that `value` names (its id, or `jobs://{id}`);
    another's job is answered as if it did not exist."""
    job_id = value.removeprefix(JOBS).strip().rstrip("/")
    job = await store.get_job(job_id, principal) if job_id else None
    if job is None:
        raise InvalidArguments(f"`{field}`: no job with id '{job_id[:64]}'. List recent jobs with list_jobs.")
    if not job.finished:
        raise InvalidArguments(
            f"`{field}`: job {job_id} ({job.tool}) is still {job.state}; wait for it with get_job "
            f'(job_id="{job_id}", wait_s=60), then call again.'
        )
    if job.state != "completed" or job.result is None:
        why = f": {job.error}" if job.error else ""
        raise InvalidArguments(f"`{field}`: job {job_id} ({job.tool}) {job.state}{why}; it has no result to use.")
    return job


async def referenced_output(store: JobStore, field: str, value: str, principal: str) -> OutputFile:
    """The output file a `files://` or `jobs://` reference names."""
    return (await _referenced(store, field, value, principal))[1]


async def upstream_copy(
    store: JobStore, field: str, value: str, principal: str, upstream: str, now: float
) -> str | None:
    """The URL at `upstream` of the output a reference names, when that upstream made it and still
    keeps it (`Uploads.upload_lifetime_s` after the job finished): sending that URL spares a
    download and an upload of the same bytes. None when the file must be sent again."""
    job, item = await _referenced(store, field, value, principal)
    if job.provider != upstream or job.finished_at is None or not item.url.startswith(("https://", "http://")):
        return None
    return item.url if now - job.finished_at < _UPSTREAM_KEEPS_S.get(upstream, 0.0) else None


# How long an upstream keeps the files it made, at the least (fal: for days; re-sent after one).
_UPSTREAM_KEEPS_S = {"fal": 24 * 3600.0}


async def _referenced(store: JobStore, field: str, value: str, principal: str) -> tuple[Job, OutputFile]:
    if value.startswith(FILES):
        job_id, slash, name = value.removeprefix(FILES).partition("/")
        if not slash or not name or not job_id:
            raise InvalidArguments(f"`{field}`: '{value[:100]}' is not a file reference (files://{{job_id}}/{{name}}).")
    else:
        job_id, name = value.removeprefix(JOBS), ""
    job = await finished_job(store, field, job_id, principal)
    assert job.result is not None  # finished_job checked it
    files = job.result.files
    if not name:
        item = next((f for f in files if _is_audio(f)), None)
        if item is None:
            raise InvalidArguments(f"`{field}`: job {job.id} ({job.tool}) has no audio output.")
        return job, item
    found = next((f for f in files if f.file_name == name), None)
    if found is None:
        names = ", ".join(f.file_name for f in files if f.file_name) or "none"
        raise InvalidArguments(
            f"`{field}`: job {job.id} ({job.tool}) has no output file '{name[:100]}'; its files: {names}."
        )
    return job, found


def _is_audio(item: OutputFile) -> bool:
    """By its declared type, or (an upstream that declared none) by its name."""
    content_type = item.content_type or mimetypes.guess_type(item.file_name or item.url)[0] or ""
    return content_type.startswith("audio/")


async def transcript_of(
    store: JobStore, field: str, value: str, principal: str, catalog: Catalog | None = None
) -> dict[str, Any]:
    """The result output of a finished transcription job with segment or word timings; or, for a
    speech job of ours, the text it was sent (`spoken_text`) and its audio (`spoken_audio`), to
    time across the audio's duration: no paid transcription of what we already know."""
    job = await finished_job(store, field, value, principal)
    assert job.result is not None
    output = job.result.output
    if any(isinstance(output.get(key), list) and output[key] for key in TIMINGS):
        return output
    capability = catalog.get(job.tool) if catalog is not None else None
    text = _spoken_text(capability, job) if capability is not None and capability.spec.kind == "tts" else None
    audio = next((item for item in job.result.files if _is_audio(item)), None)
    if text is not None and audio is not None:
        return {"spoken_text": text, "spoken_audio": audio.model_dump(exclude_none=True)}
    raise InvalidArguments(
        f"`{field}`: job {job.id} ({job.tool}) has no segment or word timings (no non-empty "
        f"{', '.join(TIMINGS)}); use the job of a transcription tool that returns timestamps, or of a "
        "text-to-speech tool."
    )


def _spoken_text(capability: Capability, job: Job) -> str | None:
    """The text a speech job was sent: its first required text input, as stored in its request."""
    for spec in capability.spec.inputs:
        if spec.required and spec.type == "string" and spec.file is None and spec.enum is None:
            text = value_at(job.body, spec.sent_name)
            return text if isinstance(text, str) and text.strip() else None
    return None
