"""fal's published input/output schemas, as a contract the fakes and the manifests are held to.

The data is `fal_schemas.json` next to this module, a snapshot written by
scripts/refresh_fal_schemas.py from fal-ai/fal-js (each endpoint records the commit, date and
file it came from). Offered here:

- `known(endpoint)`: whether the snapshot has the endpoint;
- `validate_input(endpoint, body)`: what fal would refuse, in the shape of its 422 `detail`
  (FastAPI/pydantic): `[{"loc": ["body", field, ...], "msg": ..., "type": ...}]`;
- `sample_output(endpoint, make_file)`: a result shaped by the output schema;
- `output_problems(endpoint, output)`: how an output departs from the output schema.

Like fal's pydantic (lax mode), "5" passes for an integer and "true" for a boolean (`lax=False`
refuses them), and unknown fields are accepted unless a schema says `additionalProperties: false`
(fal ignores them). Error messages and types are pydantic v2's; a union reports its likeliest
branch only. Needs `jsonschema`, imported when first used.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import Any, Literal

JSON = dict[str, Any]
FileKind = Literal["audio", "video", "file"]
MakeFile = Callable[[FileKind, str], JSON]

SNAPSHOT = Path(__file__).with_name("fal_schemas.json")
SAMPLE_TEXT = "Hello from the fal sandbox."


@cache
def snapshot() -> JSON:
    data: JSON = json.loads(SNAPSHOT.read_text("utf-8"))
    return data


@cache
def _index() -> dict[str, str]:
    return {name.lower(): name for name in snapshot()["endpoints"]}


def _entry(endpoint_id: str) -> JSON:
    name = _index().get(endpoint_id.lower())  # fal's ids are case-insensitive (CassetteAI/cassetteai)
    if name is None:
        raise KeyError(f"{endpoint_id!r} is not in the fal schema snapshot")
    entry: JSON = snapshot()["endpoints"][name]
    return entry


def known(endpoint_id: str) -> bool:
    return endpoint_id.lower() in _index()


def endpoints() -> list[str]:
    return sorted(snapshot()["endpoints"])


def input_schema(endpoint_id: str) -> JSON:
    schema: JSON = _entry(endpoint_id)["input"]
    return schema


def output_schema(endpoint_id: str) -> JSON:
    schema: JSON = _entry(endpoint_id)["output"]
    return schema


def source(endpoint_id: str) -> JSON:
    """Where the endpoint's schemas came from: commit, date, path, kind and fal's own id."""
    src: JSON = _entry(endpoint_id)["source"]
    return src


def resolve(schema: JSON, root: JSON) -> JSON:
    """Follow a local `$ref` (`#/$defs/Name`) within `root`, keeping the referring keys."""
    seen = 0
    while "$ref" in schema and seen < 32:
        ref = schema["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise ValueError(f"unsupported $ref {ref!r}")
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        seen += 1
    return schema


# --- inputs --------------------------------------------------------------------------------------


@cache
def _validator(endpoint_id: str, which: Literal["input", "output"]) -> Any:
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped,unused-ignore]

    schema = _entry(endpoint_id)[which]
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def validate_input(endpoint_id: str, body: Any, *, lax: bool = True) -> list[JSON]:
    """fal's 422 `detail` for `body`, or [] when fal would accept it. KeyError: unknown endpoint.

    `lax` (the default) accepts what pydantic's lax mode converts, as fal does: "5" for an
    integer, "0.5" for a number, "true"/"off"/1 for a boolean. `lax=False` wants JSON's own types.
    """
    validator = _validator(endpoint_id, "input")
    if not isinstance(body, dict):
        return [{"loc": ["body"], "msg": "Input should be a valid dictionary", "type": "dict_type"}]
    if lax:
        body = coerce(body, input_schema(endpoint_id))
    found: dict[tuple[str, ...], JSON] = {}
    for error in validator.iter_errors(body):
        for item in _fal_errors(error):
            found.setdefault((*(str(part) for part in item["loc"]), item["type"]), item)
    return [found[key] for key in sorted(found)]


_INT = re.compile(r"\s*[+-]?\d+\s*")
_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}
_MISSING = object()


def coerce(value: Any, schema: JSON, root: JSON | None = None) -> Any:
    """`value` as pydantic's lax mode would read it for `schema`; what cannot be read stays as it is."""
    root = schema if root is None else root
    schema = resolve(schema, root)
    branches = schema.get("anyOf") or schema.get("oneOf")
    if branches:
        resolved = [resolve(b, root) for b in branches]
        if any(_matches_type(value, b) for b in resolved):
            return value
        for branch in resolved:
            converted = _convert(value, branch)
            if converted is not _MISSING:
                return coerce(converted, branch, root)
        return value
    if isinstance(value, dict) and "properties" in schema:
        props = schema["properties"]
        return {k: coerce(v, props[k], root) if k in props else v for k, v in value.items()}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [coerce(item, schema["items"], root) for item in value]
    converted = _convert(value, schema)
    return value if converted is _MISSING else converted


def _matches_type(value: Any, schema: JSON) -> bool:
    kind = schema.get("type")
    if kind is None:
        return "properties" not in schema or isinstance(value, dict)
    kinds = kind if isinstance(kind, list) else [kind]
    return any(_is(value, k) for k in kinds)


def _is(value: Any, kind: str) -> bool:
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    python = {"string": str, "boolean": bool, "array": list, "object": dict, "null": type(None)}.get(kind)
    return python is not None and isinstance(value, python)


def _convert(value: Any, schema: JSON) -> Any:
    """The lax conversion of a scalar to the schema's type, or _MISSING."""
    kind = schema.get("type")
    if _matches_type(value, schema) or not isinstance(kind, str):
        return _MISSING
    if kind == "integer" and isinstance(value, str) and _INT.fullmatch(value):
        return int(value)
    if kind == "number" and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return _MISSING
    if kind == "boolean":
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
            return bool(value)
    return _MISSING


def _fal_errors(error: Any) -> Iterable[JSON]:
    loc: list[Any] = ["body", *error.absolute_path]
    kind = error.validator
    value = error.validator_value
    if kind == "required":
        instance = error.instance if isinstance(error.instance, dict) else {}
        for name in value:
            if name not in instance:
                yield {"loc": [*loc, name], "msg": "Field required", "type": "missing"}
        return
    if kind == "additionalProperties" and value is False:
        allowed = set(error.schema.get("properties", {}))
        for name in error.instance:
            if name not in allowed:
                yield {"loc": [*loc, name], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}
        return
    if kind in ("anyOf", "oneOf") and error.context:
        yield from _fal_errors(_best(error))
        return
    msg, typ = _message(kind, value, error.instance)
    yield {"loc": loc, "msg": msg, "type": typ}


def _best(error: Any) -> Any:
    """The branch of an anyOf worth reporting: not the `null` branch of an optional field."""
    from jsonschema.exceptions import best_match  # type: ignore[import-untyped,unused-ignore]

    context = [e for e in error.context if not (e.validator == "type" and e.validator_value == "null")]
    return best_match(context or error.context)


_TYPE_MESSAGES = {
    "string": ("Input should be a valid string", "string_type"),
    "integer": ("Input should be a valid integer", "int_type"),
    "number": ("Input should be a valid number", "float_type"),
    "boolean": ("Input should be a valid boolean", "bool_type"),
    "array": ("Input should be a valid list", "list_type"),
    "object": ("Input should be a valid dictionary", "dict_type"),
    "null": ("Input should be None", "none_required"),
}


def _literal(values: list[Any]) -> str:
    shown = [repr(v) if isinstance(v, str) else json.dumps(v) for v in values]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"


def _plural(n: Any, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _message(kind: str, value: Any, instance: Any) -> tuple[str, str]:
    """pydantic v2's message and error type for a failed JSON Schema keyword."""
    number = value  # as the schema writes it: pydantic prints the bound as declared
    if kind == "type":
        first = value[0] if isinstance(value, list) else value
        if first == "integer" and isinstance(instance, float):
            return "Input should be a valid integer, got a number with a fractional part", "int_from_float"
        if first == "integer" and isinstance(instance, str):
            return "Input should be a valid integer, unable to parse string as an integer", "int_parsing"
        if first == "number" and isinstance(instance, str):
            return "Input should be a valid number, unable to parse string as a number", "float_parsing"
        if first == "boolean" and isinstance(instance, str | int | float):
            return "Input should be a valid boolean, unable to interpret input", "bool_parsing"
        return _TYPE_MESSAGES.get(first, (f"Input should be of type {first}", f"{first}_type"))
    if kind == "enum":
        return f"Input should be {_literal(value)}", "literal_error"
    if kind == "const":
        return f"Input should be {_literal([value])}", "literal_error"
    if kind == "minimum":
        return f"Input should be greater than or equal to {number}", "greater_than_equal"
    if kind == "maximum":
        return f"Input should be less than or equal to {number}", "less_than_equal"
    if kind == "exclusiveMinimum":
        return f"Input should be greater than {number}", "greater_than"
    if kind == "exclusiveMaximum":
        return f"Input should be less than {number}", "less_than"
    if kind == "multipleOf":
        return f"Input should be a multiple of {number}", "multiple_of"
    if kind == "minLength":
        return f"String should have at least {_plural(value, 'character')}", "string_too_short"
    if kind == "maxLength":
        return f"String should have at most {_plural(value, 'character')}", "string_too_long"
    if kind == "pattern":
        return f"String should match pattern '{value}'", "string_pattern_mismatch"
    if kind == "minItems":
        got = len(instance) if isinstance(instance, list) else 0
        return f"List should have at least {_plural(value, 'item')} after validation, not {got}", "too_short"
    if kind == "maxItems":
        got = len(instance) if isinstance(instance, list) else 0
        return f"List should have at most {_plural(value, 'item')} after validation, not {got}", "too_long"
    return f"Input fails the {kind} constraint {value!r}", kind


# --- outputs -------------------------------------------------------------------------------------


def output_problems(endpoint_id: str, output: Any) -> list[str]:
    """Each way `output` departs from the endpoint's output schema, as "path: message"."""
    validator = _validator(endpoint_id, "output")
    problems = []
    for error in validator.iter_errors(output):
        path = ".".join(str(part) for part in error.absolute_path) or "(root)"
        problems.append(f"{path}: {error.message}")
    return sorted(problems)


def sample_output(endpoint_id: str, make_file: MakeFile) -> JSON:
    """An output of the endpoint's shape: every declared field present, with a plausible value.

    File objects (fal's `File`: an object with `url` and `content_type`/`file_name`) are made by
    `make_file(kind, name)`, kind "audio", "video" or "file" and name the field's name; it
    returns `{url, content_type, file_name, file_size}`. An empty output schema (a streaming
    endpoint) gives {}.
    """
    root = output_schema(endpoint_id)
    value = _Sampler(root, make_file).value(root, "output")
    return value if isinstance(value, dict) else {}


class _Sampler:
    def __init__(self, root: JSON, make_file: MakeFile) -> None:
        self.root = root
        self.make_file = make_file
        self.depth = 0

    def value(self, schema: JSON, name: str) -> Any:
        schema = resolve(schema, self.root)
        if self.depth > 12:
            return None
        self.depth += 1
        try:
            return self._value(schema, name)
        finally:
            self.depth -= 1

    def _value(self, schema: JSON, name: str) -> Any:
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            default = schema.get("default")
            if default in schema["enum"]:
                return default
            return "en" if "en" in schema["enum"] else schema["enum"][0]
        for key in ("anyOf", "oneOf"):
            if key in schema:
                branches = [resolve(b, self.root) for b in schema[key]]
                useful = [b for b in branches if b.get("type") != "null"] or branches
                return self.value({**_without(schema, key), **useful[0]}, name)
        if "allOf" in schema:
            merged: JSON = _without(schema, "allOf")
            for part in schema["allOf"]:
                merged.update(resolve(part, self.root))
            return self.value(merged, name)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind == "object" or (kind is None and "properties" in schema):
            return self._object(schema, name)
        if kind == "array":
            return self._array(schema, name)
        if kind == "string":
            return self._string(schema, name)
        if kind in ("integer", "number"):
            return self._number(schema, name, kind == "integer")
        if kind == "boolean":
            default = schema.get("default")
            return default if isinstance(default, bool) else False
        if kind == "null":
            return None
        return _untyped(name)

    def _object(self, schema: JSON, name: str) -> Any:
        properties: JSON = schema.get("properties", {})
        if _is_file(properties):
            made = dict(self.make_file(_file_kind(name, schema), name))
            out = {k: v for k, v in made.items() if k in properties or k == "url"}
            for key in schema.get("required", []):  # fal's newer media Files also require bitrate, codec, ...
                if key not in out and key in properties:
                    out[key] = self.value(properties[key], key)
            return out
        if not properties:
            extra = schema.get("additionalProperties")
            return {"sample": self.value(extra, "sample")} if isinstance(extra, dict) and extra else {}
        return {key: self.value(sub, key) for key, sub in properties.items()}

    def _array(self, schema: JSON, name: str) -> list[Any]:
        items = schema.get("items")
        if name == "timestamp" and (len(schema.get("prefixItems", [])) == 2 or not items):
            return [0.0, 1.5]  # [start, end] in seconds
        if "prefixItems" in schema:
            return [self.value(item, name) for item in schema["prefixItems"]]
        count = max(int(schema.get("minItems", 1)), 1)
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        if not isinstance(items, dict) or not items:
            return []  # elements of no declared shape: none
        singular = name[:-1] if name.endswith("s") else name
        return [self.value(items, singular) for _ in range(count)]

    def _string(self, schema: JSON, name: str) -> str:
        default = schema.get("default")
        text = default if isinstance(default, str) and default else _plausible_string(name)
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        if len(text) < low:
            text = text + "x" * (low - len(text))
        if high is not None:
            text = text[:high]
        return text

    def _number(self, schema: JSON, name: str, integer: bool) -> float | int:
        default = schema.get("default")
        if isinstance(default, int | float) and not isinstance(default, bool):
            value = float(default)
        else:
            known = {"seed": 42.0, "duration": 5.0, "start": 0.0, "end": 1.5}
            known |= {"sample_rate": 44100.0, "bitrate": 128000.0}
            value = known.get(name, 1.0)
            if name.endswith("_ms"):
                value = 5000.0
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        if low is not None and value < low:
            value = float(low) + (1 if "exclusiveMinimum" in schema and "minimum" not in schema else 0)
        if high is not None and value > high:
            value = float(high) - (1 if "exclusiveMaximum" in schema and "maximum" not in schema else 0)
        if integer:
            return math.ceil(value) if low is not None and value < 0 else int(value)
        return value


def _without(schema: JSON, key: str) -> JSON:
    return {k: v for k, v in schema.items() if k != key}


def _is_file(properties: JSON) -> bool:
    return "url" in properties and bool({"content_type", "file_name", "file_size"} & set(properties))


def is_file_schema(schema: JSON) -> bool:
    """Whether a (resolved) schema is fal's File object: `url` with `content_type`/`file_name`/`file_size`."""
    return _is_file(schema.get("properties", {}))


def _file_kind(name: str, schema: JSON) -> FileKind:
    words = f"{name} {schema.get('description', '')}".lower()
    if "video" in name.lower() or ("video" in words and "audio" not in words):
        return "video"
    if re.search(r"(srt|vtt|subtitle|caption|json|zip|transcript|text|embedding|safetensors)", name.lower()):
        return "file"
    return "audio"


def _plausible_string(name: str) -> str:
    low = name.lower()
    if low in ("text", "output", "transcript", "transcription", "result"):
        return SAMPLE_TEXT
    if "lyric" in low:
        return "[verse]\nHello from the sandbox"
    if low in ("language", "language_code", "detected_language", "lang") or low.endswith("_lang"):
        return "en"
    if low in ("speaker", "speaker_id"):
        return "speaker_0"
    if low.endswith("_id") or low == "id":
        return f"sandbox_{low}"
    if low in ("type",):
        return "word"
    if low in ("codec", "container"):
        return "mp3"
    return "sandbox"


def _untyped(name: str) -> Any:
    return SAMPLE_TEXT if name.lower() in ("text", "output") else "sandbox"
