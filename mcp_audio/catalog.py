"""Load manifests into Capabilities: a validating input model, a compact JSON schema, and the
translation of a tool call's arguments into an upstream request.

Both the JSON schema (what the agent reads) and the pydantic model (what checks the call) are
derived from the same InputSpec list, so they cannot drift apart.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from mcp_audio.errors import InvalidArguments, ManifestError
from mcp_audio.manifest import ADVANCED_GROUP, Example, InputSpec, ManifestFile, ToolSpec, VoiceFamily
from mcp_audio.providers.registry import UPSTREAMS, Shape, Upstream

log = logging.getLogger("mcp_audio.catalog")

ADVANCED = ADVANCED_GROUP
# Unknown arguments are refused, and so are "Infinity" and "NaN": no upstream field takes them.
_ARGUMENTS_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False)

# Limits for inputs whose manifest names none (manifests give the upstream's documented limit
# where there is one): without them nothing caps a call (a 20 MB text would be sent and billed).
DEFAULT_MAX_TEXT_CHARS = 10_000
DEFAULT_MAX_ITEMS = 100


def text_limit(spec: InputSpec) -> int | None:
    """The most characters a string input takes. File inputs are limited when they are resolved
    (a path, URL or data: URI, by the upstream's file size), enums by their values."""
    if spec.type != "string" or spec.file is not None or spec.enum is not None:
        return spec.max_length
    return spec.max_length if spec.max_length is not None else DEFAULT_MAX_TEXT_CHARS


def item_limit(spec: InputSpec) -> int | None:
    """The most items an array input takes."""
    if spec.type != "array":
        return None
    return spec.max_items if spec.max_items is not None else DEFAULT_MAX_ITEMS


_PY_TYPES: dict[str, type] = {"string": str, "integer": int, "number": float, "boolean": bool}


def manifests_dir() -> Path:
    """Manifests ship inside the wheel (mcp_audio/manifests); a checkout keeps them at the top."""
    packaged = Path(__file__).parent / "manifests"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "manifests"


@dataclass(frozen=True)
class SavedVoice:
    """A cloned voice saved by name, with the upstream values that select it."""

    name: str
    family: str
    provider: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class PreparedCall:
    """A validated tool call: the endpoint, the upstream body (file inputs as the caller gave
    them), and the arguments only the server uses (`options`: an endpoint choice, a voice name
    to save)."""

    endpoint: str
    body: dict[str, Any]
    options: dict[str, Any]


VoiceLookup = Callable[[str], SavedVoice | None]
NameLookup = Callable[[str], list[str]]  # a voice family -> the names of its saved voices


def _no_saved_names(family: str) -> list[str]:
    return []


@dataclass(frozen=True)
class Capability:
    """One tool generated from a manifest."""

    spec: ToolSpec
    upstream: Upstream
    voice_family: VoiceFamily | None
    input_schema: dict[str, Any] = field(repr=False)

    @cached_property
    def input_model(self) -> type[BaseModel]:
        """The validating model, built on the tool's first call: 30 of them would slow start-up."""
        return _input_model(self.spec)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def provider(self) -> str:
        """The upstream's name (the manifest's `provider`)."""
        return self.upstream.name

    @property
    def shape(self) -> Shape:
        return self.spec.shape or self.upstream.shapes[0]

    @property
    def file_inputs(self) -> list[InputSpec]:
        return [spec for spec in self.spec.inputs if spec.file is not None]

    @property
    def inputs(self) -> dict[str, InputSpec]:
        return {spec.name: spec for spec in self.spec.inputs}

    def prepare(
        self, arguments: dict[str, Any], find_voice: VoiceLookup, saved_names: NameLookup = _no_saved_names
    ) -> PreparedCall:
        """Validate the arguments and build the upstream request.

        Only the arguments the caller gave are sent: the upstream applies its own defaults, so
        a documented request body passes through unchanged.
        """
        arguments = self._renamed(arguments)
        try:
            model = self.input_model.model_validate(self._unquote_json(arguments))
        except ValidationError as exc:
            raise InvalidArguments(describe_validation_error(self, exc)) from exc
        given = model.model_dump(exclude_unset=True)
        advanced = given.pop(ADVANCED, None) or {}
        body = {k: v for k, v in given.items() if self.inputs[k].upstream} | advanced
        for name, value in body.items():
            if self.inputs[name].encode == "json":  # form-field APIs take objects as JSON text
                body[name] = json.dumps(value, separators=(",", ":"))
        options = {k: v for k, v in given.items() if not self.inputs[k].upstream}
        endpoint = self._endpoint(options)
        self._check_models(body, options)
        for name, value in body.items():
            if value is not None and value == self.inputs[name].null_value:
                body[name] = None
        if self.spec.voice is not None and self.spec.voice.input in body:
            self._resolve_voice(body, find_voice, saved_names)
        self._nest(body)
        if self.spec.saves_voice is not None and not options.get(self.spec.saves_voice.name_input, "x").strip():
            raise InvalidArguments(f"`{self.spec.saves_voice.name_input}`: must not be blank when given.")
        return PreparedCall(endpoint=endpoint, body=body, options=options)

    def tool_arguments(self, request: dict[str, Any]) -> dict[str, Any]:
        """Reshape an upstream request body into this tool's arguments (advanced settings nested)."""
        request = {k: self.inputs[k].null_value if v is None and k in self.inputs else v for k, v in request.items()}
        for spec in self.spec.inputs:  # the reverse of _nest
            if spec.upstream_name is not None:
                *parents, leaf = spec.upstream_name.split(".")
                node: Any = request
                for part in parents:
                    node = node.get(part) if isinstance(node, dict) else None
                if isinstance(node, dict) and leaf in node:
                    request = json.loads(json.dumps(request))  # a copy: the nested dicts change
                    holder = request
                    for part in parents:
                        holder = holder[part]
                    request[spec.name] = holder.pop(leaf)
        advanced = {k: v for k, v in request.items() if k in self.inputs and self.inputs[k].advanced}
        shaped = {k: v for k, v in request.items() if k not in advanced}
        return shaped | ({ADVANCED: advanced} if advanced else {})

    def _renamed(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Deprecated argument names (manifest `old_names`) as their new names, for one release."""
        out = dict(arguments)
        for spec in self.spec.inputs:
            for old in spec.old_names:
                if old not in out:
                    continue
                if spec.name in out:
                    raise InvalidArguments(
                        f"`{old}` and `{spec.name}`: the same argument twice (`{old}` is its old name); "
                        f"give only `{spec.name}`."
                    )
                log.info("%s: deprecated argument name `%s` used; it is now `%s`", self.name, old, spec.name)
                out[spec.name] = out.pop(old)
        return out

    def _unquote_json(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Some clients send lists and objects as JSON text; accept them as what they encode."""
        out = dict(arguments)
        for key, value in arguments.items():
            spec = self.inputs.get(key)
            if isinstance(value, str) and (key == ADVANCED or (spec is not None and spec.type in ("array", "object"))):
                # Not JSON: left as is, and validation names the field and what it expects.
                with contextlib.suppress(ValueError):
                    out[key] = json.loads(value)
        return out

    def _nest(self, body: dict[str, Any]) -> None:
        """Move inputs with an `upstream_name` path into their object (voice -> voice_setting.voice_id)."""
        for spec in self.spec.inputs:
            if spec.upstream_name is None or spec.name not in body:
                continue
            *parents, leaf = spec.upstream_name.split(".")
            node = body
            for part in parents:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise InvalidArguments(f"`{spec.name}`: cannot be sent with `{part}` given as a non-object.")
            if leaf in node:
                raise InvalidArguments(f"`{spec.name}`: give it or `{spec.upstream_name}`, not both.")
            node[leaf] = body.pop(spec.name)

    def _check_models(self, body: dict[str, Any], options: dict[str, Any]) -> None:
        """Refuse an input the chosen endpoint does not take (manifest `models`)."""
        if self.spec.endpoint_input is None:
            return
        choice = options.get(self.spec.endpoint_input, self.inputs[self.spec.endpoint_input].default)
        for name in body:
            models = self.inputs[name].models
            if models is not None and choice not in models:
                raise InvalidArguments(
                    f"`{name}`: {self.spec.endpoint_input} '{choice}' does not take it (only {', '.join(models)})."
                )

    def _endpoint(self, options: dict[str, Any]) -> str:
        if self.spec.endpoint is not None:
            return self.spec.endpoint
        assert self.spec.endpoints is not None and self.spec.endpoint_input is not None  # manifest-validated
        choice = options.get(self.spec.endpoint_input, self.inputs[self.spec.endpoint_input].default)
        return self.spec.endpoints[choice]

    def _resolve_voice(self, payload: dict[str, Any], find_voice: VoiceLookup, saved_names: NameLookup) -> None:
        """Presets pass as they are; saved cloned voices become their upstream fields.

        A list input (several speakers) resolves each element to the saved voice's value for
        that same field.
        """
        voice_spec = self.spec.voice
        assert voice_spec is not None
        wanted = payload[voice_spec.input]
        if isinstance(wanted, list):
            payload[voice_spec.input] = [self._voice_value(item, find_voice, saved_names) for item in wanted]
            return
        presets = [p.name for p in self.voice_family.presets] if self.voice_family else []
        saved = find_voice(wanted) if wanted not in presets else None
        if saved is not None and saved.family == voice_spec.family and voice_spec.cloned:
            del payload[voice_spec.input]
            for upstream_field, key in voice_spec.cloned.items():
                # An explicit argument (e.g. a corrected reference_text) wins over the saved value.
                if upstream_field not in payload and saved.fields.get(key) is not None:
                    payload[upstream_field] = saved.fields[key]
        elif wanted not in presets and (not voice_spec.any_id or saved is not None):
            # With `any_id`, a saved voice of another family is still refused: its name is no id.
            raise self._unknown_voice(wanted, saved, saved_names)

    def _voice_value(self, wanted: Any, find_voice: VoiceLookup, saved_names: NameLookup) -> Any:
        voice_spec = self.spec.voice
        assert voice_spec is not None
        presets = [p.name for p in self.voice_family.presets] if self.voice_family else []
        if wanted in presets:
            return wanted
        saved = find_voice(str(wanted))
        key = voice_spec.cloned.get(voice_spec.input)
        if saved is not None and saved.family == voice_spec.family and key and saved.fields.get(key) is not None:
            return saved.fields[key]
        if voice_spec.any_id and saved is None:
            return wanted
        raise self._unknown_voice(wanted, saved, saved_names)

    def _unknown_voice(self, wanted: Any, saved: SavedVoice | None, saved_names: NameLookup) -> InvalidArguments:
        voice_spec = self.spec.voice
        assert voice_spec is not None
        presets = [p.name for p in self.voice_family.presets] if self.voice_family else []
        usable = saved_names(voice_spec.family)
        where = f"; '{wanted}' is a saved {saved.family} voice, which this tool cannot use" if saved else ""
        options = [f"one of {', '.join(presets)}"] if presets else []
        options.append(
            f"a saved {voice_spec.family} voice ({', '.join(usable)})"
            if usable
            else f"a voice saved by a {voice_spec.family} clone tool (none saved yet)"
        )
        if voice_spec.any_id:
            options.append(f"a {voice_spec.family} voice id")
        return InvalidArguments(
            f"`{voice_spec.input}`: unknown voice '{_short(str(wanted))}'{where}. Allowed: {', or '.join(options)}."
        )


@dataclass(frozen=True)
class Catalog:
    """Every capability, voice family and documented example, keyed by name."""

    capabilities: dict[str, Capability]
    voice_families: dict[str, VoiceFamily]
    examples: list[Example]

    def get(self, name: str) -> Capability | None:
        return self.capabilities.get(name)


def load_catalog(directory: Path | None = None) -> Catalog:
    """Read and validate every manifest; report all problems at once, each with file and field."""
    directory = directory or manifests_dir()
    problems: list[str] = []
    files: list[tuple[str, ManifestFile]] = []
    for path in sorted(directory.glob("*.toml")):
        try:
            manifest = ManifestFile.model_validate(tomllib.loads(path.read_text("utf-8")))
        except tomllib.TOMLDecodeError as exc:
            problems.append(f"{path.name}: not valid TOML: {exc}")
            continue
        except ValidationError as exc:
            problems.extend(f"{path.name}: {_loc(err['loc'])}: {err['msg']}" for err in exc.errors())
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
    if problems:
        raise ManifestError(problems)
    return Catalog(capabilities=capabilities, voice_families=voice_families, examples=examples)


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
        input_schema=_json_schema(spec),
    )


def _input_model(spec: ToolSpec) -> type[BaseModel]:
    strict_config = _ARGUMENTS_CONFIG
    fields: dict[str, Any] = {s.name: _pydantic_field(s) for s in spec.inputs if not s.advanced}
    advanced = {s.name: _pydantic_field(s) for s in spec.inputs if s.advanced}
    if advanced:
        group = create_model(f"{spec.name}_advanced", __config__=strict_config, **advanced)  # type: ignore[call-overload]
        fields[ADVANCED] = (group, Field(default=None))
    model: type[BaseModel] = create_model(f"{spec.name}_arguments", __config__=strict_config, **fields)
    return model


def _python_type(spec: InputSpec) -> Any:
    if spec.fields is not None:
        members: dict[str, Any] = {member.name: _pydantic_field(member) for member in spec.fields}
        model = create_model(f"{spec.name}_fields", __config__=_ARGUMENTS_CONFIG, **members)
        return list[model] if spec.type == "array" else model
    if spec.enum is not None:
        return Literal[tuple(spec.enum)]
    if spec.type == "array":
        element: Any = _PY_TYPES[spec.items or "string"]
        if element is str and spec.file is None:  # each text item is capped like a text input
            element = Annotated[str, Field(max_length=DEFAULT_MAX_TEXT_CHARS)]
        return list[element]
    return _PY_TYPES[spec.type]


def _constraints(spec: InputSpec) -> dict[str, Any]:
    pairs = {
        "ge": spec.minimum,
        "le": spec.maximum,
        "gt": spec.exclusive_minimum,
        "min_length": spec.min_length if spec.type == "string" else spec.min_items,
        "max_length": text_limit(spec) if spec.type == "string" else item_limit(spec),
        "pattern": spec.pattern,
    }
    return {k: v for k, v in pairs.items() if v is not None}


def _pydantic_field(spec: InputSpec) -> tuple[Any, Any]:
    py_type = _python_type(spec)
    if spec.required:
        return (py_type, Field(..., **_constraints(spec)))
    # Optional inputs default to None without allowing an explicit null: the upstream never sees
    # a key the caller did not give, and null is not a value any upstream field accepts.
    return (py_type, Field(default=spec.default, **_constraints(spec)))


def _json_schema(spec: ToolSpec) -> dict[str, Any]:
    """A compact JSON schema (no titles, no $defs): it is sent into every conversation."""
    properties = {s.name: _json_property(s) for s in spec.inputs if not s.advanced}
    advanced = {s.name: _json_property(s, bare=True) for s in spec.inputs if s.advanced}
    if advanced:
        # Bare, to save context: no description (its name says it), and no additionalProperties
        # (its members are listed; another is refused by name, with the allowed ones).
        properties[ADVANCED] = {"properties": advanced}  # an object by its properties: no type, to save bytes
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    required = [s.name for s in spec.inputs if s.required]
    if required:
        schema["required"] = required
    schema["additionalProperties"] = False
    return schema


def _json_property(s: InputSpec, *, bare: bool = False) -> dict[str, Any]:
    """An input's schema: every bound validation enforces; `bare` (advanced inputs, grouped to
    save context, and their members) without descriptions and defaults."""
    # An enum's values say its type.
    prop: dict[str, Any] = {} if s.enum is not None else {"type": s.type}
    if s.type == "array":
        prop["items"] = {"type": s.items}
        if s.items == "string" and s.file is None:
            prop["items"]["maxLength"] = DEFAULT_MAX_TEXT_CHARS
    if s.fields is not None:
        members = prop["items"] if s.type == "array" else prop
        members["properties"] = {member.name: _json_property(member, bare=bare) for member in s.fields}
        required = [member.name for member in s.fields if member.required]
        if required:
            members["required"] = required
        if not bare:
            members["additionalProperties"] = False
    if s.enum is not None:
        prop["enum"] = s.enum
    for key, value in (
        ("minimum", s.minimum),
        ("maximum", s.maximum),
        ("exclusiveMinimum", s.exclusive_minimum),
        ("minLength", s.min_length),
        ("maxLength", text_limit(s)),
        ("minItems", s.min_items),
        ("maxItems", item_limit(s)),
        ("pattern", s.pattern),
        ("default", None if bare or s.default is False else s.default),  # a flag left out is off
    ):
        if value is not None:
            prop[key] = int(value) if isinstance(value, float) and value.is_integer() else value
    if not bare and s.description:
        prop["description"] = s.description
    return prop


# --- error messages an agent can act on ---------------------------------------------------


def describe_validation_error(capability: Capability, exc: ValidationError) -> str:
    """One line per problem: the field, what was given, what is allowed."""
    lines = []
    top_level = [s.name for s in capability.spec.inputs if not s.advanced]
    advanced = [s.name for s in capability.spec.inputs if s.advanced]
    for err in exc.errors():
        name = str(err["loc"][-1]) if err["loc"] else ""
        spec = _spec_at(capability, err["loc"])
        if err["type"] == "extra_forbidden" and len(err["loc"]) == 1 and name in advanced:
            lines.append(f'`{name}`: belongs inside `advanced`, e.g. {{"advanced": {{"{name}": ...}}}}.')
        elif err["type"] == "extra_forbidden":
            parent = capability.inputs.get(str(err["loc"][0])) if len(err["loc"]) > 1 else None
            if parent is not None and parent.fields is not None:
                allowed_names = [member.name for member in parent.fields]
            elif len(err["loc"]) > 1:
                allowed_names = advanced
            else:
                allowed_names = top_level + ([ADVANCED] if advanced else [])
            lines.append(f"`{_loc(err['loc'])}`: unknown argument. Allowed arguments: {', '.join(allowed_names)}.")
        elif err["type"] == "missing":
            lines.append(f"`{name}`: required but missing ({spec.description if spec else ''}).".replace(" ()", ""))
        else:
            given = _short(repr(err.get("input")))
            allowed = _allowed(spec) if spec else err["msg"]
            reason = err["msg"][:1].lower() + err["msg"][1:]  # keep enum values' case
            lines.append(f"`{_loc(err['loc'])}`: got {given}; {reason}. Allowed: {allowed}.")
    return f"Invalid arguments for {capability.name}:\n" + "\n".join(f"- {line}" for line in lines)


def _spec_at(capability: Capability, loc: Iterable[Any]) -> InputSpec | None:
    """The input (or object member) an error location names; `advanced` is only a group."""
    names = [str(part) for part in loc if part != ADVANCED and not isinstance(part, int)]  # ints: list positions
    spec = capability.inputs.get(names[0]) if names else None
    for member in names[1:]:
        spec = next((f for f in spec.fields or [] if f.name == member), None) if spec is not None else None
    return spec


def _allowed(spec: InputSpec) -> str:
    if spec.enum is not None:
        return "one of " + ", ".join(repr(v) for v in spec.enum)
    parts = [spec.type if spec.type != "array" else f"a list of {spec.items}"]
    if spec.minimum is not None:
        parts.append(f">= {spec.minimum:g}")
    if spec.exclusive_minimum is not None:
        parts.append(f"> {spec.exclusive_minimum:g}")
    if spec.maximum is not None:
        parts.append(f"<= {spec.maximum:g}")
    unit = "items" if spec.type == "array" else "characters"
    low = spec.min_length if spec.type != "array" else spec.min_items
    high = text_limit(spec) if spec.type != "array" else item_limit(spec)
    if low is not None:
        parts.append(f"at least {low} {unit}")
    if high is not None:
        parts.append(f"at most {high} {unit}")
    if spec.pattern:
        parts.append(spec.pattern_message or f"matching {spec.pattern}")
    return ", ".join(parts)


def _loc(loc: Iterable[Any]) -> str:
    return ".".join(str(part) for part in loc)


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
