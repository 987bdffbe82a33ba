"""The `outputSchema` of every tool: what its structured result holds, in one compact shape.

A tool result is a job in some state (a handle while queued or running, an error when failed,
unknown or cancelled, files and output fields when completed), so every schema requires only
`job_id` and `status` and types the rest where present. The shape is shared and carries no
descriptions: each byte of tools/list is sent into every conversation. Extra keys stay allowed
(`endpoint`, `created_at`, `logs`...), as the schema lists what a client plans on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, get_args

from mcp_audio.core.results import OutputFile
from mcp_audio.store import JobState

if TYPE_CHECKING:
    from mcp_audio.catalog import Capability, Family

_STRING = {"type": "string"}
STATUS = {"enum": list(get_args(JobState))}
# An output file: its URL always; the local copy (path, files:// resource) when it was saved.
_FILE = {"required": [name for name, field in OutputFile.model_fields.items() if field.is_required()]}


def job_schema(
    output_fields: dict[str, Any] | None = None, *, files: bool = True, saves_voice: bool = False, typed: bool = False
) -> dict[str, Any]:
    """A job's structured result: `files` when it makes files, the named members of `output`,
    a clone tool's `saved_voice`. `typed` also types `job_id` and lists the statuses (on the
    three job tools; the many capability tools leave the job envelope to the README, to stay short)."""
    properties: dict[str, Any] = {"job_id": _STRING, "status": STATUS} if typed else {}
    if files:  # every capability tool's files have the one shape the README gives
        properties["files"] = {"type": "array", "items": _FILE} if typed else {}
    if output_fields:
        properties["output"] = {"properties": output_fields}
    if saves_voice:
        properties["saved_voice"] = _STRING if typed else {}
    schema: dict[str, Any] = {"type": "object", "required": ["job_id", "status"]} if typed else {"type": "object"}
    if properties:
        schema["properties"] = properties
    return schema


def capability_schema(capability: Capability) -> dict[str, Any]:
    """From the manifest: files, each upstream output field by name, a clone tool's saved voice
    name; each untyped (`{}`): the README gives the job's shape and the upstream types its fields,
    and every byte here is sent into every conversation."""
    spec = capability.spec
    fields: dict[str, Any] = {name: {} for name in spec.outputs}
    text = spec.result_text
    if text and "." not in text:
        fields[text] = {}
    return job_schema(fields, files=bool(spec.files), saves_voice=spec.saves_voice is not None)


def family_schema(family: Family) -> dict[str, Any]:
    """A family tool's: what any of its models' results hold (each result is one model's)."""
    capabilities = [member.capability for member in family.members.values()]
    fields: dict[str, Any] = {}
    for capability in capabilities:
        fields |= capability_schema(capability).get("properties", {}).get("output", {}).get("properties", {})
    return job_schema(
        fields,
        files=any(cap.spec.files for cap in capabilities),
        saves_voice=any(cap.spec.saves_voice for cap in capabilities),
    )


def job_list_schema() -> dict[str, Any]:
    """list_jobs: one summary per job."""
    summary = {"type": "object", "properties": {"job_id": _STRING, "status": STATUS}, "required": ["job_id", "status"]}
    return {"type": "object", "properties": {"jobs": {"type": "array", "items": summary}}, "required": ["jobs"]}
