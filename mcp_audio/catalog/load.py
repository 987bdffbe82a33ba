"""Read every manifest, check it and its cross-references, and build the catalog of capabilities.
All problems are reported at once, each with its file and field."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mcp_audio.catalog.capability import Capability
from mcp_audio.catalog.family import CHOOSER, Family, Member, build_family, listings
from mcp_audio.catalog.messages import loc_text
from mcp_audio.catalog.parsed import parsed_manifests
from mcp_audio.catalog.schema import json_schema
from mcp_audio.core.errors import ManifestError
from mcp_audio.core.manifest import Example, FamiliesFile, ManifestFile, ToolSpec, VoiceFamily
from mcp_audio.core.upstreams import UPSTREAMS, Upstream

__all__ = ["FAMILIES_FILE", "Catalog", "load_catalog", "manifests_dir"]

FAMILIES_FILE = "families.toml"  # the family tools (FamiliesFile); every other file is a ManifestFile


def manifests_dir() -> Path:
    """Manifests ship inside the wheel (mcp_audio/manifests); a checkout keeps them at the top."""
    packaged = Path(__file__).parent.parent / "manifests"  # mcp_audio/manifests
    return packaged if packaged.is_dir() else Path(__file__).parent.parent.parent / "manifests"


@dataclass(frozen=True)
class Catalog:
    """Every capability, voice family and documented example, keyed by name, and the family
    tools that list several capabilities under one name."""

    capabilities: dict[str, Capability]
    voice_families: dict[str, VoiceFamily]
    examples: list[Example]
    families: dict[str, Family] = field(default_factory=dict)

    def get(self, name: str) -> Capability | None:
        return self.capabilities.get(name)

    def resolve(self, tool: Any, arguments: dict[str, Any]) -> tuple[Capability | None, dict[str, Any]]:
        """A tool as tools/list names it, with its arguments -> the capability that runs the call and
        its own arguments (a family's `model` picks the capability); None for an unknown tool.
        Raises InvalidArguments for a family call its `model` refuses."""
        family = self.families.get(tool) if isinstance(tool, str) else None
        if family is not None:
            return family.route(arguments)
        return (self.get(tool) if isinstance(tool, str) else None), arguments

    def listed_names(self, fits: Callable[[Capability], bool]) -> list[str]:
        """The tools/list names of the capabilities that fit, for messages: "speak (model kokoro|qwen3)",
        and each fitting capability no family lists."""
        names = []
        for family in self.families.values():
            choices = [c for c, member in family.members.items() if fits(member.capability)]
            if choices:
                names.append(f"{family.name} ({CHOOSER} {'|'.join(choices)})")
        listed = self._listings
        return names + sorted(name for name, cap in self.capabilities.items() if fits(cap) and name not in listed)

    def listed_as(self, tool: str) -> tuple[Family, str] | None:
        """The family tool that lists `tool`, and the (first) `model` choice that runs it."""
        options = self._listings.get(tool)
        return (options[0][0], options[0][1].choice) if options else None

    @cached_property
    def _listings(self) -> dict[str, list[tuple[Family, Member]]]:
        # Computed once: a catalog does not change, and every server built on it asks.
        return listings(self.families.values())


def load_catalog(directory: Path | None = None) -> Catalog:
    """Read and validate every manifest; report all problems at once, each with file and field."""
    directory = directory or manifests_dir()
    problems: list[str] = []
    files: list[tuple[str, ManifestFile]] = []
    families_file: FamiliesFile | None = None
    for path, parsed in parsed_manifests(sorted(directory.glob("*.toml"))):
        if isinstance(parsed, ValueError):  # tomllib.TOMLDecodeError
            problems.append(f"{path.name}: not valid TOML: {parsed}")
            continue
        if path.name == FAMILIES_FILE:
            try:
                families_file = FamiliesFile.model_validate(parsed)
            except ValidationError as exc:
                problems.extend(f"{path.name}: {loc_text(err['loc'])}: {err['msg']}" for err in exc.errors())
            continue
        try:
            manifest = ManifestFile.model_validate(parsed)
        except ValidationError as exc:
            problems.extend(f"{path.name}: {loc_text(err['loc'])}: {err['msg']}" for err in exc.errors())
            continue
        if manifest.provider not in UPSTREAMS:
            problems.append(
                f"{path.name}: provider: unknown upstream {manifest.provider!r}; known: {', '.join(UPSTREAMS)}"
            )
            continue
        files.append((path.name, manifest))
    if not files and not problems:
        problems.append(f"{directory}: no manifest files (*.toml) found")
    capabilities: dict[str, Capability] = {}
    voice_families: dict[str, VoiceFamily] = {}
    examples: list[Example] = []
    for file_name, manifest in files:
        voice_families.update(manifest.voices)
        examples.extend(manifest.examples)
        for spec in manifest.tools:
            if spec.name in capabilities:
                problems.append(f"{file_name}: tools.{spec.name}: tool name already used by another manifest")
                continue
            capabilities[spec.name] = _build_capability(spec, manifest)
    for file_name, manifest in files:
        problems.extend(_cross_check(file_name, manifest, capabilities, voice_families))
    families = _families(families_file, capabilities, problems) if families_file else {}
    if problems:
        raise ManifestError(problems)
    return Catalog(capabilities=capabilities, voice_families=voice_families, examples=examples, families=families)


def _families(file: FamiliesFile, capabilities: dict[str, Capability], problems: list[str]) -> dict[str, Family]:
    """The family tools, each member checked: a tool of the catalog (with one endpoint choice) in
    one family only, a fixed endpoint choice that tool has, and no endpoint input of its own
    named like the family's."""
    families: dict[str, Family] = {}
    listed: dict[tuple[str, str], str] = {}  # (capability, fixed choice) -> its family
    aliases = {alias for cap in capabilities.values() for alias in cap.spec.aliases}
    for i, spec in enumerate(file.families):
        where = f"{FAMILIES_FILE}: families.{i}"
        if spec.name in capabilities or spec.name in aliases or spec.name in families:
            problems.append(f"{where}.name: {spec.name!r} is already the name of a tool")
            continue
        members: list[Member] = []
        for choice, target in spec.models.items():
            tool, _, fixed = target.partition("/")
            capability = capabilities.get(tool)
            own = capability.spec.endpoint_input if capability else None
            if capability is None:
                problems.append(f"{where}.models.{choice}: no tool named {tool!r}")
            elif fixed and fixed not in (capability.spec.endpoints or {}):
                problems.append(f"{where}.models.{choice}: {fixed!r} is not an endpoint choice of {tool}")
            elif not fixed and own == CHOOSER:
                problems.append(f"{where}.models.{choice}: {tool} has its own `{CHOOSER}`: name {tool}/<choice>")
            elif (tool, fixed) in listed:
                problems.append(f"{where}.models.{choice}: {target} is already in family {listed[tool, fixed]}")
            else:
                listed[tool, fixed] = spec.name
                members.append(Member(choice, capability, fixed or None))
        families[spec.name] = build_family(spec, members)
    return families


def _cross_check(
    file_name: str, manifest: ManifestFile, capabilities: dict[str, Capability], families: dict[str, VoiceFamily]
) -> Iterable[str]:
    upstream = UPSTREAMS[manifest.provider]
    for i, spec in enumerate(manifest.tools):
        capability = capabilities.get(spec.name)
        if capability is None:
            continue
        where = f"{file_name}: tools.{i}"
        yield from (f"{where}.{problem}" for problem in upstream.check_tool(capability.shape, spec.all_endpoints))
        yield from _check_file_inputs(where, spec, upstream)
        if spec.returns != "json" and capability.shape != "one_shot":
            yield f"{where}.returns: only one-shot tools answer with the audio itself"
        if spec.partial_text is not None and capability.shape != "one_shot":
            yield f"{where}.partial_text: only one-shot tools stream partial results"
        if spec.voice is not None and spec.voice.family not in families:
            yield f"{file_name}: tools.{spec.name}.voice.family: no voice family {spec.voice.family!r} in any manifest"
    for i, example in enumerate(manifest.examples):
        capability = capabilities.get(example.tool)
        if capability is None:
            yield f"{file_name}: examples.{i}.tool: no tool named {example.tool!r}"
        elif example.endpoint not in capability.spec.all_endpoints:
            yield f"{file_name}: examples.{i}.endpoint: {example.endpoint!r} is not an endpoint of {example.tool}"


def _check_file_inputs(where: str, spec: ToolSpec, upstream: Upstream) -> Iterable[str]:
    names = [s.name for s in spec.inputs]
    for j, item in enumerate(spec.inputs):
        if item.sent_as == "part" and not upstream.takes_parts:
            yield f"{where}.inputs.{j}.sent_as: {upstream.label} takes no multipart file parts"
        if item.file is not None and item.sent_as == "url" and not upstream.uploads:
            yield f'{where}.inputs.{j}.sent_as: {upstream.label} cannot upload local files; use sent_as = "part"'
        if item.uploaded_as is not None and item.uploaded_as not in names:
            yield f"{where}.inputs.{j}.uploaded_as: {item.uploaded_as!r} is not one of the inputs"


def _build_capability(spec: ToolSpec, manifest: ManifestFile) -> Capability:
    family = manifest.voices.get(spec.voice.family) if spec.voice else None
    return Capability(
        spec=spec,
        upstream=UPSTREAMS[manifest.provider],
        voice_family=family,
        input_schema=json_schema(spec),
    )
