"""The fal contract: the schema snapshot, fal-shaped input errors, sample outputs, and the manifests held to it."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import shutil
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mcp_audio.catalog import Capability, Catalog, load_catalog
from mcp_audio.catalog.load import FAMILIES_FILE
from mcp_audio.core.manifest import FamiliesFile, InputSpec, ManifestFile
from mcp_audio.sandbox import fal_contract
from mcp_audio.sandbox.fal_contract import (
    known,
    output_problems,
    resolve,
    sample_output,
    validate_input,
)

TTS = "fal-ai/elevenlabs/tts/multilingual-v2"


def make_file(kind: str, name: str) -> dict[str, Any]:
    ext = {"audio": "mp3", "video": "mp4", "file": "json"}[kind]
    types = {"audio": "audio/mpeg", "video": "video/mp4", "file": "application/json"}
    return {
        "url": f"http://127.0.0.1:1/files/{name}.{ext}",
        "content_type": types[kind],
        "file_name": f"{name}.{ext}",
        "file_size": 1234,
    }


def test_snapshot_records_where_each_endpoint_came_from() -> None:
    data = fal_contract.snapshot()
    assert data["generated_from"]["missing"] == []
    assert len(data["endpoints"]) >= 49
    for endpoint, entry in data["endpoints"].items():
        for src in (entry["source"], entry.get("output_source", entry["source"])):
            assert len(src["commit"]) == 40, endpoint
            assert src["date"][:2] == "20", endpoint
            assert src["kind"] in ("jsonschema", "zod", "typescript"), endpoint
            assert src["path"].startswith("libs/"), endpoint
        assert entry["input"].get("type") == "object", endpoint


def test_snapshot_is_deterministic_and_small() -> None:
    text = fal_contract.SNAPSHOT.read_text("utf-8")
    data = json.loads(text)
    assert list(data["endpoints"]) == sorted(data["endpoints"])
    assert len(text.encode()) < 1_500_000


def test_known_is_case_insensitive_and_unknown_is_unknown() -> None:
    assert known(TTS)
    assert known("CassetteAI/music-generator") and known("cassetteai/music-generator")
    assert not known("fal-ai/no-such-endpoint")
    with pytest.raises(KeyError):
        validate_input("fal-ai/no-such-endpoint", {})


def test_a_valid_body_passes() -> None:
    assert validate_input(TTS, {"text": "Hello", "voice": "Aria", "stability": 0.5, "speed": 1.1}) == []
    assert validate_input(TTS, {"text": "Hello", "language_code": None}) == []  # nullable field


def test_lax_values_pass_as_pydantic_converts_them() -> None:
    body = {"tags": "lofi", "number_of_steps": "27", "guidance_scale": "15.5", "seed": 7.0}
    assert validate_input("fal-ai/ace-step", body) == []
    assert validate_input(TTS, {"text": "Hi", "timestamps": "yes", "speed": "1.1"}) == []
    assert validate_input(TTS, {"text": "Hi", "speed": "3"}) == [
        {"loc": ["body", "speed"], "msg": "Input should be less than or equal to 1.2", "type": "less_than_equal"}
    ]
    assert validate_input(TTS, {"text": "Hi", "timestamps": "maybe"}) == [
        {
            "loc": ["body", "timestamps"],
            "msg": "Input should be a valid boolean, unable to interpret input",
            "type": "bool_parsing",
        }
    ]
    strict = validate_input("fal-ai/ace-step", {"tags": "lofi", "number_of_steps": "27"}, lax=False)
    assert [e["type"] for e in strict] == ["int_parsing"]
    assert validate_input(TTS, {"text": 5}) == [
        {"loc": ["body", "text"], "msg": "Input should be a valid string", "type": "string_type"}
    ]  # pydantic does not turn numbers into strings


def test_unknown_fields_are_ignored_as_fal_does() -> None:
    assert validate_input(TTS, {"text": "Hello", "not_a_field": 1}) == []


def test_bad_bodies_give_fal_shaped_errors_naming_the_field() -> None:
    errors = validate_input(
        TTS,
        {"text": "", "speed": 3, "stability": "high", "apply_text_normalization": "maybe", "language_code": 5},
    )
    assert errors == [
        {
            "loc": ["body", "apply_text_normalization"],
            "msg": "Input should be 'auto', 'on' or 'off'",
            "type": "literal_error",
        },
        {"loc": ["body", "language_code"], "msg": "Input should be a valid string", "type": "string_type"},
        {"loc": ["body", "speed"], "msg": "Input should be less than or equal to 1.2", "type": "less_than_equal"},
        {
            "loc": ["body", "stability"],
            "msg": "Input should be a valid number, unable to parse string as a number",
            "type": "float_parsing",
        },
        {"loc": ["body", "text"], "msg": "String should have at least 1 character", "type": "string_too_short"},
    ]


def test_missing_required_field() -> None:
    assert validate_input(TTS, {"speed": 1}) == [{"loc": ["body", "text"], "msg": "Field required", "type": "missing"}]


def test_body_must_be_an_object() -> None:
    assert validate_input(TTS, ["text"]) == [
        {"loc": ["body"], "msg": "Input should be a valid dictionary", "type": "dict_type"}
    ]


def test_minimum_integer_and_array_length_errors() -> None:
    errors = validate_input("fal-ai/ace-step", {"tags": "lofi", "number_of_steps": 2, "seed": 1.5})
    assert {
        "loc": ["body", "number_of_steps"],
        "msg": "Input should be greater than or equal to 3",
        "type": "greater_than_equal",
    } in errors
    assert {
        "loc": ["body", "seed"],
        "msg": "Input should be a valid integer, got a number with a fractional part",
        "type": "int_from_float",
    } in errors
    errors = validate_input("fal-ai/ffmpeg-api/merge-audios", {"audio_urls": ["https://a/1.mp3"]})
    assert errors == [
        {
            "loc": ["body", "audio_urls"],
            "msg": "List should have at least 2 items after validation, not 1",
            "type": "too_short",
        }
    ]


def test_nested_errors_carry_the_whole_path() -> None:
    body = {"inputs": [{"text": "Hi", "voice": "Aria"}, {"voice": "Roger"}]}
    errors = validate_input("fal-ai/elevenlabs/text-to-dialogue/eleven-v3", body)
    assert {"loc": ["body", "inputs", 1, "text"], "msg": "Field required", "type": "missing"} in errors


@pytest.mark.parametrize("endpoint", fal_contract.endpoints())
def test_every_schema_compiles_and_its_sample_output_validates(endpoint: str) -> None:
    output = sample_output(endpoint, make_file)
    assert output_problems(endpoint, output) == []
    schema = fal_contract.output_schema(endpoint)
    for name in schema.get("required", []):
        assert name in output, name


def test_sample_outputs_are_plausible() -> None:
    tts = sample_output(TTS, make_file)
    assert tts["audio"]["url"].endswith("audio.mp3") and tts["audio"]["content_type"] == "audio/mpeg"
    whisper = sample_output("fal-ai/whisper", make_file)
    assert whisper["text"] and whisper["chunks"][0]["text"] and len(whisper["chunks"][0]["timestamp"]) == 2
    stems = sample_output("fal-ai/demucs", make_file)
    assert stems["vocals"]["file_name"] == "vocals.mp3"
    dubbed = sample_output("fal-ai/elevenlabs/dubbing", make_file)
    assert dubbed["video"]["content_type"] == "video/mp4"
    embedding = sample_output("fal-ai/qwen-3-tts/clone-voice/1.7b", make_file)["speaker_embedding"]
    assert embedding["content_type"] == "application/json"  # kind "file": not audio
    assert sample_output("fal-ai/wizper", make_file)["chunks"][0]["timestamp"] == [0.0, 1.5]
    assert sample_output("fal-ai/speech-to-text/turbo/stream", make_file) == {}  # a stream: no result schema


def test_output_problems_name_the_path() -> None:
    problems = output_problems(TTS, {"audio": {"content_type": "audio/mpeg"}})
    assert problems == ["audio: 'url' is a required property"]
    assert output_problems(TTS, {}) == ["(root): 'audio' is a required property"]


# --- the manifests held to the snapshot ----------------------------------------------------------
#
# Every difference between a fal manifest and fal's published schema is listed, per tool and
# endpoint, in tests/data/fal_manifest_differences.json; the test fails on a new difference and on
# one that was fixed, so the file is always the current list. After fixing a manifest (or on
# purpose keeping a difference) rewrite it with: python -m tests.test_fal_contract --write

DIFFERENCES = Path(__file__).parent.parent / "data" / "fal_manifest_differences.json"
MANIFESTS = Path(__file__).parent.parent.parent / "manifests"
_TYPES = {"string", "integer", "number", "boolean", "array", "object", "null"}


def _branches(schema: dict[str, Any], root: dict[str, Any]) -> list[dict[str, Any]]:
    """The alternatives a field accepts (anyOf/oneOf flattened, $refs followed), `null` dropped."""
    schema = resolve(schema, root)
    if len(schema.get("allOf", [])) == 1:  # {"allOf": [{"$ref": ...}], "description": ...}: the one schema
        rest = {k: v for k, v in schema.items() if k != "allOf"}
        return _branches({**rest, **resolve(schema["allOf"][0], root)}, root)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            rest = {k: v for k, v in schema.items() if k != key}
            out: list[dict[str, Any]] = []
            for branch in schema[key]:
                out.extend(_branches({**rest, **resolve(branch, root)}, root))
            return out
    return [] if schema.get("type") == "null" else [schema]


def _types(branch: dict[str, Any]) -> set[str]:
    kind = branch.get("type")
    if isinstance(kind, list):
        return set(kind) - {"null"}
    if kind is not None:
        return {kind}
    if "enum" in branch or "const" in branch:
        values = branch.get("enum", [branch.get("const")])
        return {_json_type(v) for v in values}
    if "properties" in branch:
        return {"object"}
    return set(_TYPES)  # untyped: anything


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else "null"


def _same_value(ours: Any, theirs: Any) -> bool:
    """Equal as JSON values: 1 and 1.0 are the same number; True is not 1."""
    numbers = [isinstance(v, int | float) and not isinstance(v, bool) for v in (ours, theirs)]
    if all(numbers):
        return float(ours) == float(theirs)
    return bool(ours == theirs and type(ours) is type(theirs))


def _num(value: Any) -> Any:
    """A manifest bound (a float) as written: 0.0 -> 0, 1.2 stays."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _fmt(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


_BOUNDS = [  # (InputSpec attribute, JSON Schema keyword)
    ("minimum", "minimum"),
    ("maximum", "maximum"),
    ("exclusive_minimum", "exclusiveMinimum"),
    ("min_length", "minLength"),
    ("max_length", "maxLength"),
    ("min_items", "minItems"),
    ("max_items", "maxItems"),
]


def _enum_text(values: list[Any]) -> str:
    if len(values) <= 12:
        return _fmt(values)
    return f"{len(values)} values ({', '.join(_fmt(v) for v in values[:4])}, …)"


@dataclass
class _Context:
    root: dict[str, Any]
    ranges: bool  # False: the source has no ranges (TypeScript types), so a bound only here is no difference
    presets: dict[str, list[str]]  # input name -> the voice presets that act as its enum


def _input_differences(spec: InputSpec, prop: dict[str, Any], ctx: _Context, where: str) -> list[str]:
    root = ctx.root
    out: list[str] = []
    schema = resolve(prop, root)
    branches = _branches(schema, root)
    accepted = set().union(*(_types(b) for b in branches)) if branches else set(_TYPES)
    sent_as = "string" if spec.encode == "json" else spec.type
    if sent_as not in accepted and not (sent_as == "integer" and "number" in accepted):
        out.append(f"{where}: type {sent_as}, fal takes {' or '.join(sorted(accepted))}")
    typed = [b for b in branches if sent_as in _types(b) or (sent_as == "integer" and "number" in _types(b))]
    branch = typed[0] if typed else (branches[0] if branches else {})
    fal_enum = branch.get("enum", [branch["const"]] if "const" in branch else None)
    ours_enum, label = spec.enum, "enum"
    if ours_enum is None and where.removeprefix("input.") in ctx.presets:
        ours_enum, label = ctx.presets[where.removeprefix("input.")], "voice presets"
    if ours_enum is not None and fal_enum is not None:
        extra = [v for v in ours_enum if v not in fal_enum]
        if extra:
            out.append(f"{where}: {label} values fal refuses: {_fmt(extra)}")
        missing = [v for v in fal_enum if v not in ours_enum]
        if missing:
            out.append(f"{where}: fal also accepts {_enum_text(missing)}")
    elif ours_enum is None and fal_enum is not None and not (len(fal_enum) == 1 and spec.default == fal_enum[0]):
        if spec.pattern is not None:
            matched = all(isinstance(v, str) and re.fullmatch(spec.pattern, v) for v in fal_enum)
            how = "matches them all" if matched else "does not match them all"
            out.append(f"{where}: fal takes only {_enum_text(fal_enum)}; here a pattern {spec.pattern} that {how}")
        else:
            out.append(f"{where}: fal takes only {_enum_text(fal_enum)}; the tool has no enum")
    elif spec.enum is not None and fal_enum is None:
        out.append(f"{where}: the tool's enum {_enum_text(spec.enum)} is not fal's (fal has none)")
    for attr, keyword in _BOUNDS:
        ours, theirs = getattr(spec, attr), branch.get(keyword)
        if ours is not None and theirs is not None and float(ours) == float(theirs):
            continue
        if theirs is None and not ctx.ranges:
            continue
        if ours is not None or theirs is not None:
            out.append(f"{where}: {keyword} {_fmt(_num(ours))} here, fal {_fmt(theirs)}")
    fal_pattern = branch.get("pattern")
    if fal_pattern is not None and fal_pattern != spec.pattern:
        out.append(f"{where}: pattern {_fmt(spec.pattern)} here, fal {_fmt(fal_pattern)}")
    fal_default = schema.get("default", branch.get("default"))
    if spec.default is None and fal_default in ("", [], {}):
        fal_default = None  # an empty default is "not given": nothing for the tool to document
    if spec.default is None and spec.fields is not None and isinstance(fal_default, dict):
        fal_default = None  # an object's default is its members' defaults, compared one by one
    if not _same_value(spec.default, fal_default):
        out.append(f"{where}: default {_fmt(spec.default)} here, fal {_fmt(fal_default)}")
    if spec.type == "array" and spec.items is not None:
        items = branch.get("items")
        if isinstance(items, dict):
            kinds = set().union(*(_types(b) for b in _branches(items, root))) or set(_TYPES)
            if spec.items not in kinds and not (spec.items == "integer" and "number" in kinds):
                out.append(f"{where}[]: items {spec.items}, fal takes {' or '.join(sorted(kinds))}")
    if spec.type == "array" and spec.fields is not None:
        items = resolve(branch.get("items", {}), root)
        elements = next((b for b in _branches(items, root) if "properties" in b), None)
        if elements is None:
            out.append(f"{where}[]: objects here, fal declares no fields")
        else:
            out.extend(_fields_differences(spec.fields, elements, ctx, f"{where}[]"))
    if spec.type == "object" and spec.fields is not None:
        members = next((b for b in branches if "properties" in b), None)
        if members is None:
            out.append(f"{where}: an object here, fal declares no fields")
        else:
            out.extend(_fields_differences(spec.fields, members, ctx, where))
    return out


def _fields_differences(specs: list[InputSpec], schema: dict[str, Any], ctx: _Context, where: str) -> list[str]:
    out: list[str] = []
    properties = schema.get("properties", {})
    for spec in specs:
        if spec.name not in properties:
            out.append(f"{where}.{spec.name}: not a field of fal's {where}")
            continue
        out.extend(_input_differences(spec, properties[spec.name], ctx, f"{where}.{spec.name}"))
    given = {s.name: s for s in specs}
    for name in schema.get("required", []):
        if name not in given:
            out.append(f"{where}.{name}: fal requires it; the tool has no such field")
        elif not given[name].required:
            out.append(f"{where}.{name}: fal requires it; optional here")
    return out


def _nested_differences(spec: InputSpec, root: dict[str, Any], ctx: _Context) -> list[str]:
    """An input sent at a dot path (`upstream_name`) held to the field at that path."""
    assert spec.upstream_name is not None
    *parents, leaf = spec.upstream_name.split(".")
    node: dict[str, Any] = root
    for part in parents:
        objects = [b for b in _branches(node, root) if "properties" in b]
        if not objects or part not in objects[0]["properties"]:
            return [f"input.{spec.upstream_name}: not a field of fal's input"]
        node = objects[0]["properties"][part]
    objects = [b for b in _branches(node, root) if "properties" in b]
    if not objects or leaf not in objects[0]["properties"]:
        return [f"input.{spec.upstream_name}: not a field of fal's input"]
    return _input_differences(spec, objects[0]["properties"][leaf], ctx, f"input.{spec.upstream_name}")


def _output_path_problem(path: str, root: dict[str, Any], want_file: bool) -> str | None:
    """Why `path` ("audio", "clips[]", "speaker_embedding.url") is not in the output schema, or None."""
    node: dict[str, Any] = root
    for part in path.split("."):
        many = part.endswith("[]")
        name = part[:-2] if many else part
        objects = [b for b in _branches(node, root) if "properties" in b]
        if not objects or name not in objects[0]["properties"]:
            return f"not in fal's output (no field {name!r})"
        node = objects[0]["properties"][name]
        if many:
            arrays = [b for b in _branches(node, root) if b.get("type") == "array"]
            if not arrays:
                return f"{name} is not an array in fal's output"
            node = arrays[0].get("items", {})
    leaf = _branches(node, root)
    if want_file and not any(fal_contract.is_file_schema(b) for b in leaf):
        return "not a File object in fal's output"
    return None


def manifest_differences(directory: Path | None = None) -> dict[str, dict[str, list[str]]]:
    """{tool: {endpoint: [difference, ...]}} for every fal tool of manifests/*.toml (or `directory`)."""
    catalog = load_catalog(directory)
    found: dict[str, dict[str, list[str]]] = {}
    for name, capability in sorted(catalog.capabilities.items()):
        if capability.provider != "fal":
            continue
        spec = capability.spec
        for endpoint in spec.all_endpoints:
            diffs = _tool_differences(capability, endpoint, catalog)
            if diffs:
                found.setdefault(name, {})[endpoint] = sorted(set(diffs))
    return found


def _for_choice(spec: InputSpec, choice: str | None) -> InputSpec:
    """An input as one endpoint choice takes it (manifest `per_model`: required, a shorter text)."""
    rule = (spec.per_model or {}).get(choice or "")
    if rule is None:
        return spec
    return spec.model_copy(
        update={"required": spec.required or rule.required, "max_length": rule.max_length or spec.max_length}
    )


def _tool_differences(capability: Capability, endpoint: str, catalog: Catalog) -> list[str]:
    spec = capability.spec
    if not known(endpoint):
        return ["endpoint: not in the fal schema snapshot"]
    root = fal_contract.input_schema(endpoint)
    out: list[str] = []
    choice = next((k for k, v in (spec.endpoints or {}).items() if v == endpoint), None)
    upstream = [_for_choice(s, choice) for s in spec.inputs if s.upstream and (s.models is None or choice in s.models)]
    cloned = set(spec.voice.cloned) if spec.voice else set()
    presets: dict[str, list[str]] = {}
    if spec.voice is not None and spec.voice.family in catalog.voice_families:
        presets[spec.voice.input] = [p.name for p in catalog.voice_families[spec.voice.family].presets]
    ranges = fal_contract.source(endpoint)["kind"] != "typescript"
    ctx = _Context(root, ranges, presets)
    flat = [s for s in upstream if s.upstream_name is None]
    out.extend(_fields_differences(flat, root, ctx, "input"))
    for nested in (s for s in upstream if s.upstream_name is not None):
        out.extend(_nested_differences(nested, root, ctx))
    properties = resolve(root, root).get("properties", {})
    renamed = {s.name: s.upstream_name for s in upstream if s.upstream_name is not None}
    for field_name in sorted(cloned):
        if field_name in renamed:
            continue  # checked with its input, at its upstream path
        if field_name not in properties:
            out.append(f"voice.cloned: {field_name} is not a field of fal's input")
    # A field fal requires may be filled by an input of another name (`upstream_name`, e.g. `text` sent as `prompt`).
    for renamed_input in upstream:
        missing = f"input.{renamed_input.upstream_name}: fal requires it; the tool has no such field"
        if missing in out:
            out.remove(missing)
            if not renamed_input.required:
                out.append(f"input.{renamed_input.upstream_name}: fal requires it; optional here")
    # A field fal requires may come from a saved voice instead of an input.
    out = [d for d in out if not any(d.startswith(f"input.{f}: fal requires it; the tool has") for f in cloned)]
    oroot = fal_contract.output_schema(endpoint)
    if oroot:
        for path in spec.files:
            problem = _output_path_problem(path, oroot, want_file=True)
            if problem:
                out.append(f"files {path}: {problem}")
        for label, text_path in (("result_text", spec.result_text), ("partial_text", spec.partial_text)):
            if text_path and spec.shape != "one_shot":
                problem = _output_path_problem(text_path, oroot, want_file=False)
                if problem:
                    out.append(f"{label} {text_path}: {problem}")
    if spec.saves_voice:
        for key, ref in sorted(spec.saves_voice.fields.items()):
            part, _, path = ref.partition(".")
            schema = oroot if part == "output" else root
            if part == "input" and path in {s.name for s in spec.inputs if not s.upstream}:
                continue
            problem = _output_path_problem(path, schema, want_file=False) if schema else None
            if problem:
                out.append(f"saves_voice.{key} {ref}: {problem.replace('output', part)}")
    for n, example in enumerate(catalog.examples):
        if example.tool != spec.name or example.endpoint.lower() != endpoint.lower():
            continue
        for err in validate_input(endpoint, example.request):
            where = ".".join(str(p) for p in err["loc"][1:])
            out.append(f"example {n}: request {where}: {err['msg']}")
        if example.output is not None and oroot:
            out.extend(f"example {n}: output {p}" for p in output_problems(endpoint, example.output))
    return out


def test_manifests_agree_with_fal_schemas() -> None:
    recorded = json.loads(DIFFERENCES.read_text("utf-8"))
    found = manifest_differences()
    new = {
        t: {e: [d for d in ds if d not in recorded.get(t, {}).get(e, [])] for e, ds in es.items()}
        for t, es in found.items()
    }
    fixed = {
        t: {e: [d for d in ds if d not in found.get(t, {}).get(e, [])] for e, ds in es.items()}
        for t, es in recorded.items()
    }
    new = {t: {e: ds for e, ds in es.items() if ds} for t, es in new.items()}
    fixed = {t: {e: ds for e, ds in es.items() if ds} for t, es in fixed.items()}
    assert not {t: es for t, es in new.items() if es}, (
        "new differences from fal's schemas (fix the manifest, or record them)"
    )
    assert not {t: es for t, es in fixed.items() if es}, (
        "recorded differences now fixed: remove them from " + DIFFERENCES.name
    )


def test_each_recorded_difference_is_listed_in_its_manifest_with_a_reason() -> None:
    recorded = json.loads(DIFFERENCES.read_text("utf-8"))
    listed: dict[str, dict[str, list[str]]] = {}
    for path in sorted(MANIFESTS.glob("*.toml")):
        parsed = tomllib.loads(path.read_text("utf-8"))
        if path.name == FAMILIES_FILE:  # the family tools: no endpoints, so no differences (extra keys refused)
            FamiliesFile.model_validate(parsed)
            continue
        manifest = ManifestFile.model_validate(parsed)
        tools = {t.name for t in manifest.tools}
        for item in manifest.differences:
            assert item.tool in tools, f"{path.name}: differences name {item.tool!r}, not a tool of this file"
            listed.setdefault(item.tool, {}).setdefault(item.endpoint, []).append(item.difference)
    assert {t: {e: sorted(ds) for e, ds in es.items()} for t, es in listed.items()} == recorded


def test_a_manifest_departing_from_fal_is_caught(tmp_path: Path) -> None:
    fixed = (MANIFESTS / "lyria2.toml").read_text("utf-8")
    assert manifest_differences(_write(tmp_path, fixed)) == {}
    unbounded = fixed.replace("min_length = 1\nmax_length = 2000\n", "", 1)
    assert manifest_differences(_write(tmp_path, unbounded)) == {
        "lyria2_music": {
            "fal-ai/lyria2": ["input.prompt: maxLength null here, fal 2000", "input.prompt: minLength null here, fal 1"]
        }
    }
    wrong = fixed.replace('name = "seed"\ntype = "integer"', 'name = "seed"\ntype = "number"\nminimum = 0')
    wrong = wrong.replace('default = "low quality"', 'default = "blurry"\nenum = ["blurry", "noisy"]')
    wrong = wrong.replace('files = ["audio"]', 'files = ["audio", "waveform"]\nresult_text = "audio.url"')
    wrong += '\n[[tools.inputs]]\nname = "tempo"\ntype = "integer"\ndescription = "Beats per minute"\n'
    assert manifest_differences(_write(tmp_path, wrong)) == {
        "lyria2_music": {
            "fal-ai/lyria2": [
                "files waveform: not in fal's output (no field 'waveform')",
                'input.negative_prompt: default "blurry" here, fal "low quality"',
                'input.negative_prompt: the tool\'s enum ["blurry", "noisy"] is not fal\'s (fal has none)',
                "input.seed: minimum 0 here, fal null",
                "input.seed: type number, fal takes integer",
                "input.tempo: not a field of fal's input",
            ]
        }
    }
    missing = fixed.replace('name = "prompt"', 'name = "mood"')
    assert manifest_differences(_write(tmp_path, missing))["lyria2_music"]["fal-ai/lyria2"] == [
        "input.mood: not a field of fal's input",
        "input.prompt: fal requires it; the tool has no such field",
    ]
    refused = fixed.replace('negative_prompt = "vocals, slow tempo"', "negative_prompt = 3")
    assert manifest_differences(_write(tmp_path, refused))["lyria2_music"]["fal-ai/lyria2"] == [
        "example 0: request negative_prompt: Input should be a valid string"
    ]


def _write(directory: Path, text: str) -> Path:
    (directory / "lyria2.toml").write_text(text, "utf-8")
    return directory


def test_every_fal_endpoint_of_the_manifests_is_in_the_snapshot() -> None:
    catalog = load_catalog()
    endpoints = {e for c in catalog.capabilities.values() if c.provider == "fal" for e in c.spec.all_endpoints}
    assert endpoints and all(known(e) for e in endpoints), sorted(e for e in endpoints if not known(e))


def write_differences() -> None:
    DIFFERENCES.parent.mkdir(exist_ok=True)
    DIFFERENCES.write_text(
        json.dumps(manifest_differences(), indent=2, sort_keys=True, ensure_ascii=False) + "\n", "utf-8"
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write_differences()
    else:
        print(json.dumps(manifest_differences(), indent=2, sort_keys=True, ensure_ascii=False))


# --- the refresh script, on made-up sources -------------------------------------------------------


@functools.cache
def _refresh_module() -> Any:
    path = Path(__file__).parent.parent.parent / "scripts" / "refresh_fal_schemas.py"
    spec = importlib.util.spec_from_file_location("refresh_fal_schemas", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


TS_SAMPLE = """
export type Clip = {
  /**
   * Where to fetch it.
   */
  url: string;
  content_type?: string;
};
export type SongInput = {
  /**
   * What to play. Default value: `"jazz"`
   */
  genre?: "jazz" | "rock";
  /**
   * Audio to extend.
   */
  audio_url: string | Blob | File;
  tags?: Array<string>;
  steps?: number;
  extra?: Record<string, any>;
};
export type SongOutput = { clips: Array<Clip>; seed: number };
export type SongProInput = SongInput;
export type EndpointTypeMap = {
  "acme/song": {
    input: SongInput;
    output: SongOutput;
  };
  "acme/song/pro": {
    input: SongProInput;
    output: SongOutput;
  };
};
"""


def test_refresh_reads_typescript_types() -> None:
    refresh = _refresh_module()
    types = refresh.TsTypes(TS_SAMPLE)
    assert types.endpoint_map == {
        "acme/song": ("SongInput", "SongOutput"),
        "acme/song/pro": ("SongProInput", "SongOutput"),
    }
    song = types.schema("SongProInput")
    assert song == {
        "type": "object",
        "properties": {
            "genre": {"type": "string", "enum": ["jazz", "rock"], "default": "jazz", "description": "What to play."},
            "audio_url": {"type": "string", "description": "Audio to extend."},
            "tags": {"type": "array", "items": {"type": "string"}},
            "steps": {"type": "number"},
            "extra": {"type": "object", "additionalProperties": {}},
        },
        "required": ["audio_url"],
        "$defs": song["$defs"],
    }
    out = types.schema("SongOutput")
    assert out["properties"]["clips"] == {"type": "array", "items": {"$ref": "#/$defs/Clip"}}
    assert out["$defs"]["Clip"]["required"] == ["url"]


def test_refresh_reduces_schemas() -> None:
    refresh = _refresh_module()
    raw = {
        "type": "object",
        "title": "X",
        "x-fal-order-properties": ["a"],
        "properties": {
            "title": {"type": "string", "examples": ["t"], "description": "A " * 200},
            "n": {"anyOf": [{"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}]}, {"type": "null"}]},
            "u": {"anyOf": [{"type": "string"}, {"type": "string"}], "default": "x"},
        },
        "$defs": {"Unused": {"type": "string"}},
    }
    reduced = refresh._used_defs(refresh.reduce_schema(raw))
    assert reduced["properties"]["title"]["description"].endswith("…")
    assert len(reduced["properties"]["title"]["description"]) <= refresh.DESCRIPTION_CHARS + 1
    assert "examples" not in reduced["properties"]["title"] and "title" not in reduced
    assert reduced["properties"]["n"] == {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}]}
    assert reduced["properties"]["u"] == {"type": "string", "default": "x"}
    assert "$defs" not in reduced


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_refresh_reads_generated_zod_and_object_literals() -> None:
    refresh = _refresh_module()
    zod = """import * as z from "zod";
export const zThing = z.object({
  name: z.string().min(1).max(9).register(z.globalRegistry, { description: "Its name" }),
  count: z.int().gte(1).lte(5).optional().default(2),
  mode: z.union([z.enum(["a", "b"]), z.unknown()]).optional(),
  tags: z.array(z.string()).max(3).optional(),
});
"""
    thing = refresh.node_eval(zod, ["zThing"], "zod.gen.ts")["zThing"]
    assert thing == {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 9, "description": "Its name"},
            "count": {"type": "integer", "minimum": 1, "maximum": 5, "default": 2},
            "mode": {"anyOf": [{"type": "string", "enum": ["a", "b"]}, {"type": "null"}]},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        },
        "required": ["name"],
    }
    literal = 'export const ThingSchema = {\n  type: "object",\n  properties: { a: { type: "string" } },\n} as const;\n'
    assert refresh.node_eval(literal, ["ThingSchema"], "schemas.gen.ts") == {
        "ThingSchema": {"type": "object", "properties": {"a": {"type": "string"}}}
    }


@pytest.mark.skipif(not os.environ.get("FAL_JS_GIT_DIR"), reason="set FAL_JS_GIT_DIR to a fal-js clone to check")
def test_refresh_reproduces_the_committed_snapshot(tmp_path: Path) -> None:
    """FAL_JS_GIT_DIR=/path/to/fal-js/.git pytest -k reproduces: the snapshot is what the script makes."""
    refresh = _refresh_module()
    text = refresh.dump(refresh.build(Path(os.environ["FAL_JS_GIT_DIR"])))
    assert text == fal_contract.SNAPSHOT.read_text("utf-8")


def test_every_fal_tool_names_each_output_field_fal_publishes() -> None:
    """A manifest's `outputs` (named in the tool's outputSchema) are fal's output fields besides files."""
    for capability in load_catalog().capabilities.values():
        if capability.provider != "fal":
            continue
        roots = {path.split(".")[0].removesuffix("[]") for path in capability.spec.files}
        published = {
            name
            for endpoint in capability.spec.all_endpoints
            for name in fal_contract.output_schema(endpoint).get("properties", {})
        }
        assert set(capability.spec.outputs) == published - roots, capability.name
