"""Every input has a limit, the schema states it, and a refusal names the field and the limit."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
from mcp import Client

from mcp_audio.catalog import DEFAULT_MAX_ITEMS, DEFAULT_MAX_TEXT_CHARS, item_limit, text_limit
from mcp_audio.sandbox.fal_queue import FakeFal
from tests.helpers import (
    CATALOG,
    FAMILY_MEMBERS,
    own_words,
    per_choice,
    stated_advanced,
    stated_advanced_of,
    stated_rules,
    text_of,
)

pytestmark = pytest.mark.anyio


# Bounds stated as JSON Schema keywords: the InputSpec attribute each one states.
_KEYWORDS = {
    "minimum": "minimum",
    "maximum": "maximum",
    "exclusiveMinimum": "exclusive_minimum",
    "enum": "enum",
    "minLength": "min_length",
    "minItems": "min_items",
    "pattern": "pattern",
}


@dataclass(frozen=True)
class View:
    """How tools/list shows one capability: its own listed schema, or its family's schema as it
    states one `model` choice (with the endpoint choice of its own that choice fixes)."""

    capability: Any
    schema: dict[str, Any]
    choices: tuple[str, ...] = ()  # the family's `model` values; () for a tool listed under its own name
    choice: str | None = None
    fixed: str | None = None

    @property
    def where(self) -> str:
        return self.capability.name if self.choice is None else f"{self.capability.name} as model={self.choice}"

    def inputs(self) -> list[Any]:
        """What this view takes: with a fixed endpoint choice, not the endpoint input, nor an input of
        another choice (the manifest's `models`)."""
        spec = self.capability.spec
        if self.fixed is None:
            return list(spec.inputs)
        return [
            s for s in spec.inputs if s.name != spec.endpoint_input and (s.models is None or self.fixed in s.models)
        ]

    def requires(self, s: Any) -> bool:
        rule = (s.per_model or {}).get(self.fixed or "")
        return bool(s.required or (rule is not None and rule.required))


def _views(listed: dict[str, Any]) -> list[View]:
    views = []
    for capability in CATALOG.capabilities.values():
        if capability.name not in FAMILY_MEMBERS:
            views.append(View(capability, listed[capability.name].input_schema))
    for family in CATALOG.families.values():
        schema = listed[family.name].input_schema
        choices = tuple(schema["properties"]["model"]["enum"])  # what a model reads
        assert choices == tuple(family.members) and schema["properties"]["model"]["default"] == choices[0]
        for choice, member in family.members.items():
            views.append(View(member.capability, schema, choices, choice, member.fixed))
    return views


def _json_unstated(spec: Any, prop: dict[str, Any], where: str) -> list[str]:
    """The bounds of `spec` its JSON schema `prop` leaves out or states otherwise (nested ones too)."""
    missing = [f"{where}: {kw}" for kw, attr in _KEYWORDS.items() if prop.get(kw) != getattr(spec, attr)]
    # No text or list goes uncapped: its own cap is in the schema, the default one in the
    # server's instructions (said once, not on every property).
    text = spec.type == "string" and spec.file is None and spec.enum is None
    if spec.type == "string":  # a file's or an enum's: its own cap only (a URL's length)
        cap = prop.get("maxLength", DEFAULT_MAX_TEXT_CHARS if text else None)
        if cap != text_limit(spec) or (text and cap is None):
            missing.append(f"{where}: maxLength")
    if spec.type == "array" and not prop.get("maxItems", DEFAULT_MAX_ITEMS) == item_limit(spec) is not None:
        missing.append(f"{where}: maxItems")
    if spec.type == "integer" and "enum" not in prop and prop.get("type") != "integer":
        missing.append(f"{where}: type integer")
    if spec.fields is not None:  # an object, or a list of objects
        members = prop["items"] if spec.type == "array" else prop
        for member in spec.fields:
            if member.name not in members.get("properties", {}):
                missing.append(f"{where}.{member.name}: not stated")
                continue
            missing += _json_unstated(member, members["properties"][member.name], f"{where}.{member.name}")
            if member.required and member.name not in members.get("required", []):
                missing.append(f"{where}.{member.name}: required")
    return missing


def _words_unstated(spec: Any, prop: dict[str, Any], words: str, where: str) -> list[str]:
    """The bounds of `spec` one choice's words leave out; a JSON keyword the property states (for
    every choice) must hold for it too."""
    missing = [f"{where}: {b}" for b in _unstated(spec, words)]
    missing += [
        f"{where}: {kw} for all" for kw, attr in _KEYWORDS.items() if kw in prop and prop[kw] != getattr(spec, attr)
    ]
    if "maxLength" in prop and prop["maxLength"] != text_limit(spec):
        missing.append(f"{where}: maxLength for all")
    if "maxItems" in prop and prop["maxItems"] != item_limit(spec):
        missing.append(f"{where}: maxItems for all")
    if spec.fields is not None:
        inner = words.removeprefix("list of ")
        stated = stated_advanced({"properties": {"advanced": {"description": inner[1:-1]}}})
        for member in spec.fields:
            said = stated.get(member.name, "")
            missing += (
                [f"{where}.{member.name}: {b}" for b in _unstated(member, said)]
                if said
                else [f"{where}.{member.name}: not stated"]
            )
    return missing


def _advanced(view: View) -> list[tuple[str, str, Any]]:
    """Each advanced member (nested ones too) with the words its group's line states of it."""
    if view.choice is None:
        stated = stated_advanced(view.schema)
    else:
        stated = stated_advanced_of(view.schema, view.choices, view.choice)
    taken = [spec for spec in view.inputs() if spec.advanced]
    assert {name for name in stated if "." not in name} == {spec.name for spec in taken}, view.where
    out = []
    for spec in taken:
        out.append((spec.name, stated.get(spec.name, ""), spec))
        out += [(f"{spec.name}.{m.name}", stated.get(f"{spec.name}.{m.name}", ""), m) for m in spec.fields or []]
    return out


def _unstated(spec: Any, words: str) -> list[str]:
    """The bounds of `spec` that `words` leave out (a range reads lo-hi, or lo..hi below 0)."""
    missing = []
    num = lambda value: str(int(value) if float(value).is_integer() else value)  # noqa: E731
    low, high = spec.minimum, spec.maximum
    if low is not None and high is not None:
        if not re.search(rf"(^| ){re.escape(num(low))}(-|\.\.){re.escape(num(high))}( |$)", words):
            missing.append(f"range {num(low)}..{num(high)}")
    elif low is not None and f">={num(low)}" not in words:
        missing.append(f">={num(low)}")
    elif high is not None and f"<={num(high)}" not in words:
        missing.append(f"<={num(high)}")
    if spec.exclusive_minimum is not None and f">{num(spec.exclusive_minimum)}" not in words:
        missing.append(f">{num(spec.exclusive_minimum)}")
    if spec.enum is not None and [v.strip('"') for v in words.split("|")] != [str(v) for v in spec.enum]:
        missing.append(f"enum {spec.enum}")
    if spec.type == "integer" and spec.enum is None and "int" not in words.split():
        missing.append("int")
    if spec.type == "string" and spec.file is None and spec.enum is None:  # the default cap: in the instructions
        cap = text_limit(spec)
        said = f"<={cap} chars" in words or f"-{cap} chars" in words
        if not said and (cap != DEFAULT_MAX_TEXT_CHARS or "chars" in words or "text" not in words.split()):
            missing.append(f"at most {cap} chars")
    if spec.file is not None and "file" not in words:
        missing.append("a file")
    cap = spec.max_length if spec.file is not None and spec.type == "string" else None  # a URL's length
    if cap is not None and f"<={cap} chars" not in words and f"-{cap} chars" not in words:
        missing.append(f"at most {cap} chars")
    if spec.pattern is not None and f"({spec.pattern_message or 'matching ' + spec.pattern})" not in words:
        missing.append(f"pattern {spec.pattern}")
    low = spec.min_length if spec.type == "string" else spec.min_items
    if low and not re.search(rf"(^| ){low}-\d+ (chars|items)( |$)", words):
        missing.append(f"at least {low}")
    return missing


def _rules_unstated(view: View, spec: Any, taken: set[str]) -> list[str]:
    """What the schema's description leaves out of the rules the manifest's `models`/`per_model`
    make for this view: per endpoint choice, or, in a family, for the view's own `model` choice."""
    missing: list[str] = []
    text = view.schema.get("description", "")
    if view.choice is not None:
        rules = stated_rules(text, "model", view.choice)
        assert rules.unread == [], (view.where, rules.unread)
        listed_required = set(view.schema.get("required", []))
        names = {(f"advanced.{s.name}" if s.advanced else s.name): s for s in view.inputs()}
        for name, s in names.items():
            if name in rules.not_taken:
                missing.append(f"{name}: stated as not taken")
            if not s.advanced and view.requires(s) != (name in listed_required | rules.required):
                missing.append(f"{name}: required is {view.requires(s)}")
            cap = ((s.per_model or {}).get(view.fixed or "") or None) and s.per_model[view.fixed].max_length
            if rules.max_chars.get(name) != cap:
                missing.append(f"{name}: at most {cap} chars")
        # (`advanced` names its choices in its own description: _advanced checks what it states.)
        others = set(view.schema["properties"]) - taken - {"model", "advanced"}
        if others - rules.not_taken:
            missing.append(f"stated as taken: {sorted(others - rules.not_taken)}")
        text = rules.own
    chooser = spec.endpoint_input
    if view.fixed is not None or chooser is None:
        if view.choice is not None and text:
            missing.append(f"rules of its own: {text!r}")
        return missing
    for endpoint in spec.endpoints:  # the view's own endpoint choice: each one's rules
        rules = stated_rules(text, chooser, endpoint)
        assert rules.unread == [], (view.where, rules.unread)
        for s in spec.inputs:
            name = f"advanced.{s.name}" if s.advanced else s.name
            rule = (s.per_model or {}).get(endpoint)
            if (s.models is not None and endpoint not in s.models) != (name in rules.not_taken):
                missing.append(f"{name} with {chooser}={endpoint}: taken is stated wrong")
            if bool(rule and rule.required) != (name in rules.required):
                missing.append(f"{name} with {chooser}={endpoint}: required is stated wrong")
            if (rule.max_length if rule else None) != rules.max_chars.get(name):
                missing.append(f"{name} with {chooser}={endpoint}: at most chars is stated wrong")
    return missing


async def test_the_schema_states_every_enforced_bound(client: Client) -> None:
    """For every capability as tools/list shows it (under its own name, or as a family's `model`
    choice): every bound its validation enforces is stated, in JSON where the schema states the
    property for every choice, else in the choice's words; the advanced members' in the choice's
    line; the rules of `models`/`per_model` in the schema's description."""
    listed = {tool.name: tool for tool in (await client.list_tools()).tools}
    checked = advanced = words = rules = 0
    problems: list[str] = []  # all of them at once: a family's wording is fixed once for every member
    for view in _views(listed):
        properties = view.schema["properties"]
        taken = {s.name for s in view.inputs() if not s.advanced}
        taken |= {"advanced"} if any(s.advanced for s in view.inputs()) else set()
        for spec in view.inputs():
            if spec.advanced:
                continue
            if spec.name not in properties:
                problems.append(f"{view.where}: {spec.name} is not stated")
                continue
            prop = properties[spec.name]
            said: dict[str, str] = {}
            if view.choice is not None:
                _, said = per_choice(prop.get("description", ""), view.choices)
            if said:  # the choices differ: each one's bounds in words
                if view.choice not in said:
                    problems.append(f"{view.where}: {spec.name} states other choices' bounds only")
                    continue
                _, bounds = own_words(said[view.choice])
                problems += [f"{view.where}: {p}" for p in _words_unstated(spec, prop, bounds, spec.name)]
                words += 1
            else:
                problems += [f"{view.where}: {p}" for p in _json_unstated(spec, prop, spec.name)]
            checked += spec.type == "string" and spec.file is None and spec.enum is None
        # The advanced group states its members in words: every bound, in the one line.
        assert properties.get("advanced", {}).get("type", "object") == "object"
        for where, stated, spec in _advanced(view):
            if not stated:
                problems.append(f"{view.where}: advanced.{where} is not stated")
            problems += [f"{view.where}: advanced.{where}: {p} in {stated!r}" for p in _unstated(spec, stated)]
            advanced += 1
        problems += [f"{view.where}: {p}" for p in _rules_unstated(view, view.capability.spec, taken)]
        rules += view.choice is not None or view.capability.spec.endpoint_input is not None
    assert problems == []
    assert checked > 30 and advanced > 100 and words > 20 and rules > 50
    assert (
        f"A text takes at most {DEFAULT_MAX_TEXT_CHARS} characters and a list {DEFAULT_MAX_ITEMS} items, "
        "unless its schema says less." in (client.instructions or "")
    )


async def test_an_unknown_advanced_member_is_refused_with_the_members_and_their_bounds(
    client: Client, fake_fal: FakeFal
) -> None:
    result = await client.call_tool("elevenlabs_tts", {"text": "Hi", "advanced": {"pace": 1.1, "speed": 3}})
    assert result.is_error
    message = text_of(result)
    assert "`advanced.pace`: unknown argument. Allowed in `advanced`: speed 0.7-1.2; " in message
    assert "stability, similarity_boost, style 0-1; apply_text_normalization auto|on|off." in message
    assert "`advanced.speed`: got 3; input should be less than or equal to 1.2. Allowed: number, >= 0.7, <= 1.2." in (
        message
    )
    nested = await client.call_tool("minimax_tts", {"text": "Hi", "advanced": {"voice_setting": {"voice_id": "x"}}})
    assert (
        "`advanced.voice_setting.voice_id`: unknown argument. Allowed in `advanced.voice_setting`: speed 0.5-2; "
        in (text_of(nested))
    )
    assert fake_fal.requests_of("submit") == []


async def test_an_over_long_text_is_refused_naming_the_field_and_the_limit(client: Client, fake_fal: FakeFal) -> None:
    too_long = "a" * (DEFAULT_MAX_TEXT_CHARS + 1)
    result = await client.call_tool("lyria2_music", {"prompt": "calm", "negative_prompt": too_long})
    assert result.is_error
    assert (
        "`negative_prompt`: got 'aaaa" in text_of(result)
        and f"string should have at most {DEFAULT_MAX_TEXT_CHARS} characters. Allowed: string, at most "
        f"{DEFAULT_MAX_TEXT_CHARS} characters."
        in text_of(result)
    )
    assert fake_fal.requests_of("submit") == []


BLANK_CASES = [
    ("qwen3_tts", "text"),
    ("kokoro_tts", "text"),
    ("elevenlabs_sound_effect", "prompt"),
    ("cassetteai_music", "prompt"),
]


@pytest.mark.parametrize(("tool", "field"), BLANK_CASES)
async def test_blank_required_text_is_refused_naming_the_field(
    client: Client, fake_fal: FakeFal, tool: str, field: str
) -> None:
    spec = CATALOG.capabilities[tool]
    others = {s.name: s.default or 10 for s in spec.spec.inputs if s.required and s.name != field}
    for blank in ("", "   \n\t"):
        result = await client.call_tool(tool, others | {field: blank})
        assert result.is_error, (tool, blank)
        assert f"`{field}`: got {blank!r}; must contain text, not only whitespace" in text_of(result)
    assert fake_fal.requests_of("submit") == []  # no job, nothing sent


def test_every_required_text_input_refuses_blank_text() -> None:
    checked = 0
    for capability in CATALOG.capabilities.values():
        for spec in capability.spec.inputs:
            if spec.required and spec.type == "string" and spec.file is None and spec.enum is None:
                model = capability.input_model
                arguments = {spec.name: " "}
                errors = []
                try:
                    model.model_validate(arguments)
                except Exception as exc:  # pydantic's ValidationError: which fields it names
                    errors = [err for err in exc.errors() if err["loc"] == (spec.name,)]  # type: ignore[attr-defined]
                assert errors, (capability.name, spec.name)  # refused, naming the field
                if spec.pattern is None and (spec.min_length or 0) <= 1:  # not refused as too short first
                    assert errors[0]["type"] == "blank_text", (capability.name, spec.name)
                checked += 1
    assert checked > 40


async def test_a_text_over_the_chosen_models_limit_is_refused(client: Client, fake_fal: FakeFal) -> None:
    # fal's eleven-v3 takes at most 5,000 characters; the other ElevenLabs models take more.
    too_long = "word " * 1000 + "x"
    result = await client.call_tool("elevenlabs_tts", {"text": too_long, "model": "eleven-v3"})
    assert result.is_error
    assert "`text`: 5001 characters; model 'eleven-v3' takes at most 5000." in text_of(result)
    assert fake_fal.requests_of("submit") == []
    fits = await client.call_tool("elevenlabs_tts", {"text": too_long[:5000], "model": "eleven-v3"})
    assert not fits.is_error, text_of(fits)
    other = await client.call_tool("elevenlabs_tts", {"text": too_long, "model": "multilingual-v2"})
    assert not other.is_error, text_of(other)
