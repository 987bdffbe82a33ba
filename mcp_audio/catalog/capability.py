"""A capability: one tool generated from a manifest, and how a call's arguments become the upstream
request (validation, deprecated names, endpoint choice, voices, nesting)."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ValidationError

from mcp_audio.catalog.messages import describe_validation_error, short
from mcp_audio.catalog.schema import ADVANCED, input_model
from mcp_audio.core.errors import InvalidArguments
from mcp_audio.core.manifest import REPLACE_INPUT, InputSpec, ToolSpec, VoiceFamily
from mcp_audio.core.pricing import estimate_cost
from mcp_audio.core.upstreams import Shape, Upstream
from mcp_audio.core.voices import SavedVoice

__all__ = ["Capability", "NameLookup", "PreparedCall", "VoiceLookup"]

log = logging.getLogger("mcp_audio.catalog")


@dataclass(frozen=True)
class PreparedCall:
    """A validated tool call: the endpoint, the upstream body (file inputs as the caller gave
    them), and the arguments only the server uses (`options`: an endpoint choice, a voice name
    to save)."""

    endpoint: str
    body: dict[str, Any]
    options: dict[str, Any]
    # From the validated arguments, by the tool's own argument names (the body is keyed by the
    # upstream's, which a rename or a nested field would hide from the price's `quantity_input`).
    estimated_cost_usd: float | None = None


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
        return input_model(self.spec)

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
            raise InvalidArguments(describe_validation_error(self.spec, exc)) from exc
        given = model.model_dump(exclude_unset=True)
        advanced = given.pop(ADVANCED, None) or {}
        cost = estimate_cost(self.spec.price, given | advanced)
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
        if self.spec.saves_voice is not None:
            self._check_saved_name(options, find_voice)
        return PreparedCall(endpoint=endpoint, body=body, options=options, estimated_cost_usd=cost)

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
        """Refuse an input the chosen endpoint does not take (manifest `models`), and apply the
        choice's own rules (manifest `per_model`: required, a shorter text)."""
        if self.spec.endpoint_input is None:
            return
        chooser = self.spec.endpoint_input
        choice = options.get(chooser, self.inputs[chooser].default)
        for name in body:
            models = self.inputs[name].models
            if models is not None and choice not in models:
                raise InvalidArguments(f"`{name}`: {chooser} '{choice}' does not take it (only {', '.join(models)}).")
        for spec in self.spec.inputs:
            rule = (spec.per_model or {}).get(choice)
            if rule is None:
                continue
            if rule.required and spec.name not in body and spec.name not in options:
                raise InvalidArguments(f"`{spec.name}`: required with {chooser} '{choice}'.")
            value = body.get(spec.name)
            if rule.max_length is not None and isinstance(value, str) and len(value) > rule.max_length:
                raise InvalidArguments(
                    f"`{spec.name}`: {len(value)} characters; {chooser} '{choice}' takes at most {rule.max_length}."
                )

    def _check_saved_name(self, options: dict[str, Any], find_voice: VoiceLookup) -> None:
        """A clone's name: not blank, and not one already saved unless `replace` says so."""
        assert self.spec.saves_voice is not None
        field = self.spec.saves_voice.name_input
        name = options.get(field)
        if name is None:
            return
        if not name.strip():
            raise InvalidArguments(f"`{field}`: must not be blank when given.")
        existing = find_voice(name)
        if existing is not None and not options.get(REPLACE_INPUT["name"]):
            raise InvalidArguments(
                f"`{field}`: a saved voice is already named {name!r} (a {existing.family} voice). Pick another "
                f"name, or pass `{REPLACE_INPUT['name']}: true` to replace it with this clone."
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
            f"`{voice_spec.input}`: unknown voice '{short(str(wanted))}'{where}. Allowed: {', or '.join(options)}."
        )
