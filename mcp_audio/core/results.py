"""The values a finished job hands back (output files, the job result), and how an upstream output
becomes one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["Credentials", "JobResult", "OutputFile", "extract_result", "value_at"]


class Credentials(BaseModel):
    """The C2PA Content Credentials this server wrote for a saved file (files/marking.py)."""

    model_config = ConfigDict(extra="forbid")

    embedded: bool = False  # in the file itself
    sidecar: str | None = None  # else the `<file>.c2pa` holding them: its name (also an output file of the job)
    disclosure: str | None = None  # the plain AI-disclosure tag written into the file
    ai_generated: bool = False
    models: list[str] = []  # the models it names, its inputs' included
    signer: str | None = None  # whose certificate signed; "development certificate (untrusted)" by default
    error: str | None = None  # why none were written (the file is saved all the same)


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
    credentials: Credentials | None = None  # Content Credentials written for the local copy

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


def extract_result(file_paths: Sequence[str], output: dict[str, Any]) -> JobResult:
    """Split an upstream output into output files (at the manifest's `files` paths) and the other fields.

    A file object gives its URL, type, name and size: anything else it says (inline bytes,
    a local path) is not taken, so an upstream cannot point this server at a file of its own.
    """
    files: list[OutputFile] = []
    for path in file_paths:
        for item in _at_path(output, path):
            if isinstance(item, OutputFile):  # bytes the provider stored through the job's FileSink
                files.append(item)
            elif isinstance(item, dict) and isinstance(item.get("url"), str) and item["url"]:
                files.append(_upstream_file(item))
    file_roots = {path.split(".")[0].removesuffix("[]") for path in file_paths}
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
