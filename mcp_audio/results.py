"""Turn an upstream output into the result an agent reads: files, model fields, a short text."""

from __future__ import annotations

from typing import Any

from mcp_audio.catalog import Capability

# Everything a file object may say, but inline bytes: those stay out of the job store.
DROPPED_FILE_KEYS = ("file_data",)


def extract_result(capability: Capability, output: dict[str, Any]) -> dict[str, Any]:
    """Split an upstream output into output files (per the manifest) and the other fields."""
    files: list[dict[str, Any]] = []
    for path in capability.spec.files:
        for item in _at_path(output, path):
            if isinstance(item, dict) and item.get("url"):
                files.append({k: v for k, v in item.items() if k not in DROPPED_FILE_KEYS and v is not None})
    file_roots = {path.split(".")[0].removesuffix("[]") for path in capability.spec.files}
    fields = {key: value for key, value in output.items() if key not in file_roots}
    return {"files": files, "output": fields}


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


def summary_text(capability: Capability, job_id: str, result: dict[str, Any], saved_voice: str | None) -> str:
    """A few lines for the model: what was made, where, and the transcript when there is one."""
    lines = [f"{capability.name} finished (job {job_id})."]
    for item in result["files"]:
        duration = f"{item['duration_s']:g} s" if item.get("duration_s") else None
        parts = (item.get("content_type"), _size(item.get("file_size")), duration)
        details = ", ".join(str(part) for part in parts if part)
        lines.append(f"- {item.get('path') or item['url']}" + (f" ({details})" if details else ""))
        if item.get("path"):
            lines.append(f"  from {item['url']}")
        elif item.get("download_error"):
            lines.append(f"  (not saved locally: {item['download_error']})")
    if capability.spec.result_text:
        text = value_at(result["output"], capability.spec.result_text)
        if isinstance(text, str):
            lines.append(f"Transcript:\n{text}")
    if saved_voice:
        lines.append(f"Saved as voice '{saved_voice}': pass it as `voice` to the matching text-to-speech tool.")
    return "\n".join(lines)


def _size(size: Any) -> str | None:
    if not isinstance(size, int | float):
        return None
    return f"{size / 1024:.1f} kB" if size < 1024 * 1024 else f"{size / 1024 / 1024:.1f} MB"
