"""The fal contract: the schema snapshot, fal-shaped input errors, sample outputs, and the manifests held to it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mcp_audio.sandbox import fal_contract
from mcp_audio.sandbox.fal_contract import (
    known,
    output_problems,
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
        {"loc": ["body", "stability"], "msg": "Input should be a valid number", "type": "float_type"},
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
    assert {"loc": ["body", "seed"], "msg": "Input should be a valid integer", "type": "int_type"} in errors
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
    assert sample_output("fal-ai/speech-to-text/turbo/stream", make_file) == {}  # a stream: no result schema


def test_output_problems_name_the_path() -> None:
    problems = output_problems(TTS, {"audio": {"content_type": "audio/mpeg"}})
    assert problems == ["audio: 'url' is a required property"]
    assert output_problems(TTS, {}) == ["(root): 'audio' is a required property"]
