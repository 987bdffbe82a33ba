"""One tool's argument rules, twice from the same InputSpec list: the JSON schema the agent reads
and the pydantic model that checks a call. Derived together, they cannot drift apart."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model
from pydantic_core import PydanticCustomError

from mcp_audio.core.manifest import ADVANCED_GROUP, InputSpec, ToolSpec

__all__ = [
    "ADVANCED",
    "DEFAULT_MAX_ITEMS",
    "DEFAULT_MAX_TEXT_CHARS",
    "advanced_line",
    "advanced_schema",
    "bound_words",
    "input_model",
    "item_limit",
    "json_property",
    "json_schema",
    "model_rules",
    "text_limit",
]

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


def input_model(spec: ToolSpec) -> type[BaseModel]:
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


def _not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank_text", "must contain text, not only whitespace")
    return value


# A required text (what to say, what to make) that is empty would become a paid job of nothing.
# Not in the JSON schema (it is sent into every conversation); the refusal names the field.
_REQUIRED_TEXT = AfterValidator(_not_blank)


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
        if spec.type == "string" and spec.file is None and spec.enum is None:
            py_type = Annotated[py_type, _REQUIRED_TEXT]
        return (py_type, Field(..., **_constraints(spec)))
    # Optional inputs default to None without allowing an explicit null: the upstream never sees
    # a key the caller did not give, and null is not a value any upstream field accepts.
    return (py_type, Field(default=spec.default, **_constraints(spec)))


def json_schema(spec: ToolSpec) -> dict[str, Any]:
    """A compact JSON schema (no titles, no $defs): it is sent into every conversation."""
    properties = {s.name: json_property(s) for s in spec.inputs if not s.advanced}
    advanced = [s for s in spec.inputs if s.advanced]
    if advanced:
        # Its members and their bounds in one line of words, to save context (validation is as
        # strict: another member is refused by name, with this line; audio://catalog has their schema).
        properties[ADVANCED] = {"type": "object", "description": advanced_line(advanced)}
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    required = [s.name for s in spec.inputs if s.required]
    if required:
        schema["required"] = required
    schema["additionalProperties"] = False
    rules = model_rules(spec)
    if rules:  # bounds of one endpoint choice: JSON Schema cannot say them compactly, so in words
        schema["description"] = rules
    return schema


def advanced_schema(spec: ToolSpec) -> dict[str, Any] | None:
    """The `advanced` group as a JSON schema, member by member (audio://catalog gives it; tools/list
    states it in words). None when the tool has no advanced inputs."""
    members = {s.name: json_property(s) for s in spec.inputs if s.advanced}
    if not members:
        return None
    return {"type": "object", "properties": members, "additionalProperties": False}


def advanced_line(specs: list[InputSpec]) -> str:
    """Advanced inputs in words, every bound validation enforces stated: "seed int; steps int 3-60;
    temperature, top_p 0-1; scheduler euler|heun". Members alike share their statement."""
    grouped: dict[str, list[str]] = {}
    for s in specs:
        grouped.setdefault(bound_words(s), []).append(s.name)
    return "; ".join(f"{', '.join(names)} {words}" for words, names in grouped.items())


def bound_words(s: InputSpec) -> str:
    """What one input takes, in a few words: its type and every bound (enum values joined by |)."""
    if s.fields is not None:
        inner = advanced_line(list(s.fields))
        return f"list of {{{inner}}}" if s.type == "array" else f"{{{inner}}}"
    if s.enum is not None:
        return "|".join(_enum_word(value) for value in s.enum)
    if s.file is not None:  # a path or URL: its length bounds, if any, are enforced too
        words = f"{s.file} file" + ("s" if s.type == "array" else "")
        shortest, longest = (s.min_length, s.max_length) if s.type == "string" else (None, None)
        if shortest and longest:
            return f"{words} {shortest}-{longest} chars"
        return f"{words} <={longest} chars" if longest else words
    words = {"string": "text", "integer": "int", "number": "number", "boolean": "bool"}.get(s.type, s.type)
    if s.type == "array":
        words = f"list of {bound_words(s.model_copy(update={'type': s.items, 'items': None}))}"
    low, high = s.minimum, s.maximum
    if low is not None and high is not None:
        sep = "-" if low >= 0 else ".."
        bound = f"{_num(low)}{sep}{_num(high)}"
        words = bound if s.type == "number" else f"{words} {bound}"
    elif low is not None:
        words += f" >={_num(low)}"
    elif high is not None:
        words += f" <={_num(high)}"
    if s.exclusive_minimum is not None:
        words += f" >{_num(s.exclusive_minimum)}"
    if s.type == "string":  # the default cap goes unsaid, as in the schema
        low, cap = s.min_length, _unless_default(text_limit(s), DEFAULT_MAX_TEXT_CHARS)
        words += f" {low}-{cap or DEFAULT_MAX_TEXT_CHARS} chars" if low else (f" <={cap} chars" if cap else "")
    if s.type == "array":
        low, cap = s.min_items, _unless_default(item_limit(s), DEFAULT_MAX_ITEMS)
        words += f" {low}-{cap or DEFAULT_MAX_ITEMS} items" if low else (f" <={cap} items" if cap else "")
    if s.pattern:
        words += f" ({s.pattern_message or 'matching ' + s.pattern})"
    return words


def _enum_word(value: Any) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return json.dumps(text) if any(ch in text for ch in " ;,|{}") else text


def _num(value: float | int | None) -> str:
    return str(int(value) if isinstance(value, float) and value.is_integer() else value)


def model_rules(spec: ToolSpec) -> str:
    """The inputs' rules that depend on the endpoint choice (manifest `models`, `per_model`), in
    words grouped by rule: "Only mode=inpaint: start_time, end_time. Required with mode=remix:
    original_tags." Empty when there are none."""
    chooser = spec.endpoint_input
    groups: dict[str, list[str]] = {}
    for s in spec.inputs:
        name = f"{ADVANCED}.{s.name}" if s.advanced else s.name
        if s.models is not None:
            groups.setdefault(f"Only {chooser}={'|'.join(s.models)}", []).append(name)
        for choice, rule in (s.per_model or {}).items():
            if rule.required:
                groups.setdefault(f"Required with {chooser}={choice}", []).append(name)
            if rule.max_length is not None:
                groups.setdefault(f"At most {rule.max_length} chars with {chooser}={choice}", []).append(name)
    return " ".join(f"{rule}: {', '.join(names)}." for rule, names in groups.items())


def json_property(s: InputSpec) -> dict[str, Any]:
    """An input's schema: every bound validation enforces, in few bytes (tools/list is sent into
    every conversation). A type another keyword implies goes unsaid (an enum's values, a string's
    length, a number's range, an array's items); an integer keeps its type. Defaults are stated
    only for the server's own choices (e.g. a model): the upstream applies the rest."""
    prop: dict[str, Any] = {}
    if s.type == "array":
        prop["items"] = {"type": s.items}  # a text item's cap is the default one, said once (INSTRUCTIONS)
    if s.fields is not None:
        members = prop["items"] if s.type == "array" else prop
        members["properties"] = {member.name: json_property(member) for member in s.fields}
        required = [member.name for member in s.fields if member.required]
        if required:
            members["required"] = required
        members["additionalProperties"] = False
    if s.enum is not None:
        prop["enum"] = s.enum
    for key, value in (
        ("minimum", s.minimum),
        ("maximum", s.maximum),
        ("exclusiveMinimum", s.exclusive_minimum),
        ("minLength", s.min_length),
        ("maxLength", _unless_default(text_limit(s), DEFAULT_MAX_TEXT_CHARS)),
        ("minItems", s.min_items),
        ("maxItems", _unless_default(item_limit(s), DEFAULT_MAX_ITEMS)),
        ("pattern", s.pattern),
        ("default", None if s.upstream or s.default is False else s.default),
    ):
        if value is not None:
            prop[key] = int(value) if isinstance(value, float) and value.is_integer() else value
    if not _type_implied(s, prop):
        prop = {"type": s.type} | prop
    if s.description:
        prop["description"] = s.description
    return prop


def _unless_default(limit: int | None, default: int) -> int | None:
    """A cap, unless it is the server's default for every text or list: the server's instructions
    state that once (and a refusal names it), instead of every property in tools/list."""
    return None if limit == default else limit


_IMPLIES = {
    "string": ("minLength", "maxLength", "pattern"),
    "number": ("minimum", "maximum", "exclusiveMinimum"),
    "array": ("items",),
    "object": ("properties",),
}


def _type_implied(s: InputSpec, prop: dict[str, Any]) -> bool:
    """True when the schema's other keywords say the input's type (validation checks it anyway)."""
    return s.enum is not None or any(key in prop for key in _IMPLIES.get(s.type, ()))
