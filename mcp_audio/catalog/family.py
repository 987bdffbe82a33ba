"""A family tool: one listed tool over several capabilities that do one task (transcribe, make
music, make a sound effect...), its `model` argument picking the capability. Each capability
keeps its own validation, price, voices, upstream and job; the family only routes a call, and
states in one schema what each choice takes and where the choices differ: tools/list is sent
into every conversation, and nine transcription tools that each repeat `audio_url` and their
envelope cost far more than one that says where they differ."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mcp_audio.catalog.capability import Capability
from mcp_audio.catalog.messages import short
from mcp_audio.catalog.schema import ADVANCED, advanced_line, bound_words, json_property, model_rules
from mcp_audio.core.errors import InvalidArguments
from mcp_audio.core.manifest import FamilySpec, InputSpec

__all__ = ["CHOOSER", "Family", "Member", "build_family", "listings"]

CHOOSER = "model"  # the argument that picks a family's capability


@dataclass(frozen=True)
class Member:
    """One choice of a family's `model`: a capability, and the endpoint choice of its own it fixes."""

    choice: str
    capability: Capability
    fixed: str | None = None  # e.g. elevenlabs_transcribe with its `model` fixed to scribe-v1

    def inputs(self) -> list[InputSpec]:
        """The capability's inputs this choice takes (with a fixed endpoint choice: that choice's)."""
        spec = self.capability.spec
        if self.fixed is None:
            return list(spec.inputs)
        fixed = self.fixed
        return [s for s in spec.inputs if s.name != spec.endpoint_input and (s.models is None or fixed in s.models)]

    def required(self, spec: InputSpec) -> bool:
        rule = (spec.per_model or {}).get(self.fixed or "")
        return spec.required or (rule is not None and rule.required)

    def argument_names(self) -> set[str]:
        """The names a call of this choice may give (old names of renamed inputs included)."""
        inputs = self.inputs()
        names = {name for s in inputs if not s.advanced for name in (s.name, *s.old_names)}
        return names | ({ADVANCED} if any(s.advanced for s in inputs) else set())


@dataclass(frozen=True)
class Family:
    """A listed tool whose `model` picks one of its members."""

    spec: FamilySpec
    members: dict[str, Member]  # by choice, the default first
    input_schema: dict[str, Any] = field(repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def default(self) -> str:
        return next(iter(self.members))

    def member_of(self, tool: str) -> list[str]:
        """The choices that run `tool` (one, or one per endpoint choice it fixes)."""
        return [choice for choice, member in self.members.items() if member.capability.name == tool]

    def route(self, arguments: dict[str, Any]) -> tuple[Capability, dict[str, Any]]:
        """The capability a call picks, and the call's arguments as that capability's tool takes them."""
        arguments = dict(arguments)
        choice = arguments.pop(CHOOSER, self.default)
        member = self.members.get(choice) if isinstance(choice, str) else None
        if member is None:
            raise InvalidArguments(f"`{CHOOSER}`: got {short(repr(choice))}; allowed: {', '.join(self.members)}.")
        taken = member.argument_names()
        for name in arguments:
            if name in taken:
                continue
            others = [c for c, m in self.members.items() if name in m.argument_names()]
            where = f"only {CHOOSER}={'|'.join(others)}" if others else f"no model of {self.name}"
            raise InvalidArguments(
                f"`{short(name)}`: {CHOOSER} '{choice}' does not take it ({where} does); "
                f"it takes {', '.join(sorted(taken))}."
            )
        spec = member.capability.spec
        if member.fixed is not None and spec.endpoint_input is not None:
            arguments[spec.endpoint_input] = member.fixed
        return member.capability, arguments

    def limited_to(self, tools: Iterable[str]) -> Family | None:
        """This family over the given capabilities only (toolsets may hide some); None if none is left."""
        kept = set(tools)
        members = [member for member in self.members.values() if member.capability.name in kept]
        if len(members) == len(self.members):
            return self
        return build_family(self.spec, members) if members else None


def listings(families: Iterable[Family]) -> dict[str, list[tuple[Family, Member]]]:
    """Capability name -> each family that lists it, with the first of its choices there (in
    families.toml's order): where tools/list shows a capability that is not listed by its name."""
    found: dict[str, list[tuple[Family, Member]]] = {}
    for family in families:
        for member in family.members.values():
            options = found.setdefault(member.capability.name, [])
            if all(listed is not family for listed, _ in options):
                options.append((family, member))
    return found


def build_family(spec: FamilySpec, members: list[Member]) -> Family:
    by_choice = {member.choice: member for member in members}
    return Family(spec=spec, members=by_choice, input_schema=_schema(by_choice))


def _schema(members: dict[str, Member]) -> dict[str, Any]:
    """The family's input schema: `model`, then every argument some choice takes (stated once when
    all agree, with each choice's bounds in words where they differ), the `advanced` groups, and
    in the schema's description the rules that depend on the choice, worded like a capability's."""
    choices = list(members)
    properties: dict[str, Any] = {CHOOSER: {"enum": choices, "default": choices[0]}}
    variants: dict[str, dict[str, InputSpec]] = {}
    advanced: dict[str, list[str]] = {}  # an advanced line -> the choices it is for
    rules: dict[str, list[str]] = {}  # a rule -> the arguments it is about
    required: list[str] = []
    for choice, member in members.items():
        inputs = member.inputs()
        for s in inputs:
            if not s.advanced:
                variants.setdefault(s.name, {})[choice] = s
            rule = (s.per_model or {}).get(member.fixed or "")
            if rule is not None and rule.max_length is not None:
                name = f"{ADVANCED}.{s.name}" if s.advanced else s.name
                rules.setdefault(f"At most {rule.max_length} chars with {CHOOSER}={choice}", []).append(name)
        line = advanced_line([s for s in inputs if s.advanced])
        if line:
            advanced.setdefault(line, []).append(choice)
        spec = member.capability.spec
        if member.fixed is None and spec.endpoint_input is not None and model_rules(spec):
            rules.setdefault(f"With {CHOOSER}={choice}: {model_rules(spec).rstrip('.')}", [])
    for name, by_choice in variants.items():
        properties[name] = _merged(by_choice)
        takers = list(by_choice)
        if len(takers) < len(choices):
            rules.setdefault(_only(takers, choices), []).append(name)
        needing = [c for c, s in by_choice.items() if members[c].required(s)]
        if len(needing) == len(choices):
            required.append(name)
        elif needing:
            rules.setdefault(_required(needing, choices), []).append(name)
    if advanced:  # each group names its choices: the others take no `advanced`
        properties[ADVANCED] = {"type": "object", "description": _per_choice(advanced, len(choices))}
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    schema["additionalProperties"] = False
    if rules:
        schema["description"] = " ".join(
            f"{rule}: {', '.join(names)}." if names else f"{rule}." for rule, names in rules.items()
        )
    return schema


def _only(takers: list[str], choices: list[str]) -> str:
    """ "Only model=a|b", or "Not model=c" when that is shorter."""
    others = [c for c in choices if c not in takers]
    return f"Not {CHOOSER}={'|'.join(others)}" if len(others) < len(takers) else f"Only {CHOOSER}={'|'.join(takers)}"


def _required(needing: list[str], choices: list[str]) -> str:
    others = [c for c in choices if c not in needing]
    if len(others) < len(needing):
        return f"Required except with {CHOOSER}={'|'.join(others)}"
    return f"Required with {CHOOSER}={'|'.join(needing)}"


def _merged(by_choice: dict[str, InputSpec]) -> dict[str, Any]:
    """One argument's schema across the choices that take it: as it is where they agree; where
    they differ, what they share, and each choice's type and bounds in words."""
    schemas = {choice: json_property(s) for choice, s in by_choice.items()}
    first = next(iter(schemas.values()))
    if all(schema == first for schema in schemas.values()):
        return first
    # The description most choices share is said once; a choice with another says its own.
    described = Counter(s.description for s in by_choice.values() if s.description).most_common(1)
    base = described[0][0] if described and described[0][1] * 2 > len(by_choice) else ""
    shared = {
        key: value
        for key, value in first.items()
        if key != "description" and all(schema.get(key) == value for schema in schemas.values())
    }
    types = {s.type for s in by_choice.values()}
    if "type" not in shared and "enum" not in shared and len(types) == 1:
        shared = {"type": types.pop()} | shared
    bounds: dict[str, list[str]] = {}
    for choice, s in by_choice.items():  # a choice's own description where it is not the one said for all
        words = bound_words(s) if s.description in ("", base) else f"{s.description}: {bound_words(s)}"
        bounds.setdefault(words, []).append(choice)
    if len(bounds) > 1:  # not only the words differ: say each choice's bounds
        base = f"{base}; {_per_choice(bounds, 0)}" if base else _per_choice(bounds, 0)
    return shared | ({"description": base} if base else {})


def _per_choice(groups: dict[str, list[str]], everyone: int) -> str:
    """ "[whisper, wizper] <text> [cohere] <text>"; a text for every choice goes without names."""
    if len(groups) == 1 and len(next(iter(groups.values()))) == everyone:
        return next(iter(groups))
    return " ".join(f"[{', '.join(choices)}] {text}" for text, choices in groups.items())
