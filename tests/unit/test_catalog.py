"""Manifests: every shipped file validates, bad ones fail loudly with file and field."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest

from mcp_audio.catalog import Capability, load_catalog
from mcp_audio.catalog.schema import json_schema
from mcp_audio.core.errors import InvalidArguments, ManifestError
from mcp_audio.core.manifest import ToolSpec
from tests.helpers import CORE_TOOLS, stated_advanced

CATALOG = load_catalog()


def test_core_capabilities_are_shipped() -> None:
    assert set(CATALOG.capabilities) >= CORE_TOOLS
    assert CATALOG.get("qwen3_tts").spec.all_endpoints == [  # type: ignore[union-attr]
        "fal-ai/qwen-3-tts/text-to-speech/1.7b",
        "fal-ai/qwen-3-tts/text-to-speech/0.6b",
    ]


def test_every_capability_has_a_price_or_says_none_is_published() -> None:
    unmarked = [c.name for c in CATALOG.capabilities.values() if c.spec.price is None and not c.spec.no_published_price]
    assert unmarked == []
    both = {"usd": 0.1, "unit": "request"}
    spec = CATALOG.capabilities["kokoro_tts"].spec.model_dump(exclude_none=True) | {"price": both}
    with pytest.raises(ValueError, match="not both"):
        ToolSpec.model_validate(spec)


def test_every_seed_example_validates_against_both_schema_and_model() -> None:
    assert len(CATALOG.examples) >= 6
    for example in CATALOG.examples:
        capability = CATALOG.get(example.tool)
        assert capability is not None
        arguments = capability.tool_arguments(example.request) | example.arguments
        jsonschema.validate(arguments, capability.input_schema)
        prepared = capability.prepare(arguments, lambda name: None)
        assert prepared.endpoint == example.endpoint
        assert prepared.body == example.request


def test_schemas_forbid_unknown_arguments_and_have_no_titles() -> None:
    for capability in CATALOG.capabilities.values():
        schema = capability.input_schema
        assert schema["additionalProperties"] is False
        assert "title" not in str(list(schema["properties"].values()))
        jsonschema.Draft202012Validator.check_schema(schema)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"not_an_input": 1}, schema)


def test_every_validating_model_builds_and_matches_its_schema() -> None:
    """The models are built on a tool's first call, so a shipped manifest must not break there."""
    for name, capability in CATALOG.capabilities.items():
        model = capability.input_model
        schema = capability.input_schema
        assert set(model.model_fields) == set(schema["properties"]), name
        required = {field for field, info in model.model_fields.items() if info.is_required()}
        assert required == set(schema.get("required", [])), name


def test_prepare_sends_only_given_arguments() -> None:
    lyria = CATALOG.get("lyria2_music")
    assert lyria is not None
    prepared = lyria.prepare({"prompt": "calm piano"}, lambda name: None)
    assert prepared.body == {"prompt": "calm piano"}  # no defaults invented on the way


def test_advanced_settings_are_flattened_into_the_upstream_body() -> None:
    tts = CATALOG.get("qwen3_tts")
    assert tts is not None
    assert "temperature" not in tts.input_schema["properties"]
    # Advanced inputs are stated in one line of words, with every bound the server enforces (a
    # range says the type: number; an integer says int).
    stated = stated_advanced(tts.input_schema)
    assert stated["temperature"] == "0-1" and stated["top_k"] == "int >=0"
    prepared = tts.prepare({"text": "hi", "advanced": {"temperature": 0.5, "subtalker_top_k": 20}}, lambda name: None)
    assert prepared.body == {"text": "hi", "temperature": 0.5, "subtalker_top_k": 20}


def test_endpoint_choice_is_not_sent_upstream() -> None:
    tts = CATALOG.get("qwen3_tts")
    assert tts is not None
    prepared = tts.prepare({"text": "hi", "voice": "Vivian", "model_size": "0.6b"}, lambda name: None)
    assert prepared.endpoint == "fal-ai/qwen-3-tts/text-to-speech/0.6b"
    assert prepared.body == {"text": "hi", "voice": "Vivian"}
    assert prepared.options == {"model_size": "0.6b"}


def test_invalid_arguments_name_field_value_and_allowed() -> None:
    sfx = CATALOG.get("elevenlabs_sound_effect")
    assert sfx is not None
    with pytest.raises(InvalidArguments) as caught:
        sfx.prepare({"text": "door slam", "duration_seconds": 40, "colour": "red"}, lambda name: None)
    message = str(caught.value)
    assert "`duration_seconds`: got 40" in message
    assert "<= 22" in message
    assert "`colour`: unknown argument" in message
    assert "Allowed arguments: prompt, duration_seconds, prompt_influence" in message


def test_bad_manifest_reports_every_problem_with_file_and_field(tmp_path: Path) -> None:
    (tmp_path / "broken.toml").write_text(
        'provider = "fal"\nfamily = "x"\n[[tools]]\nname = "Bad Name"\ntitle = "t"\nkind = "tts"\n'
        'description = "short"\nendpoint = "fal-ai/x"\ninputs = []\ncolour = "red"\n'
    )
    (tmp_path / "syntax.toml").write_text("provider = \n")
    with pytest.raises(ManifestError) as caught:
        load_catalog(tmp_path)
    problems = "\n".join(caught.value.problems)
    assert "broken.toml: tools.0.name: String should match pattern" in problems
    assert "broken.toml: tools.0.description: String should have at least 40 characters" in problems
    assert "broken.toml: tools.0.colour: Extra inputs are not permitted" in problems
    assert "syntax.toml: not valid TOML" in problems


def test_empty_manifest_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no manifest files"):
        load_catalog(tmp_path)


def test_lists_and_objects_sent_as_json_text_are_accepted() -> None:
    tts = CATALOG.get("qwen3_tts")
    assert tts is not None
    prepared = tts.prepare({"text": "hi", "advanced": '{"top_k": 10}'}, lambda name: None)
    assert prepared.body == {"text": "hi", "top_k": 10}
    with pytest.raises(InvalidArguments, match="`advanced`: got 'not json'"):
        tts.prepare({"text": "hi", "advanced": "not json"}, lambda name: None)


def test_every_url_input_is_a_file_input() -> None:
    """Local paths are accepted only where the manifest says an input is a file."""
    for capability in CATALOG.capabilities.values():
        for spec in capability.spec.inputs:
            if spec.name.endswith("_url"):
                assert spec.file is not None, f"{capability.name}.{spec.name} needs `file = ...`"


def test_object_inputs_are_typed_and_can_be_sent_as_json_text(tmp_path: Path) -> None:
    (tmp_path / "form.toml").write_text(
        """provider = "eigen"
family = "form"
[[tools]]
name = "form_tts"
title = "Form TTS"
kind = "tts"
description = "A test tool whose settings object is sent as a JSON string form field."
endpoint = "tts"
[[tools.inputs]]
name = "text"
type = "string"
description = "Text"
required = true
[[tools.inputs]]
name = "voice_settings"
type = "object"
encode = "json"
description = "Voice settings"
[[tools.inputs.fields]]
name = "speed"
type = "number"
description = "Speed"
minimum = 0.5
maximum = 2
"""
    )
    capability = load_catalog(tmp_path).get("form_tts")
    assert capability is not None
    assert capability.input_schema["properties"]["voice_settings"]["properties"]["speed"]["maximum"] == 2
    prepared = capability.prepare({"text": "hi", "voice_settings": {"speed": 1.5}}, lambda name: None)
    assert prepared.body == {"text": "hi", "voice_settings": '{"speed":1.5}'}
    with pytest.raises(InvalidArguments, match=r"`voice_settings.speed`: got 3"):
        capability.prepare({"text": "hi", "voice_settings": {"speed": 3}}, lambda name: None)
    with pytest.raises(InvalidArguments, match=r"`voice_settings.pitch`: unknown argument. Allowed arguments: speed."):
        capability.prepare({"text": "hi", "voice_settings": {"pitch": 3}}, lambda name: None)


def _tool(provider: str, body: str) -> str:
    return (
        f'provider = "{provider}"\nfamily = "x"\n[[tools]]\nname = "a_tool"\ntitle = "t"\nkind = "tts"\n'
        'description = "A tool that exists only to be refused by the catalog at load time."\n' + body
    )


def test_a_tool_that_does_not_fit_its_upstream_fails_at_load(tmp_path: Path) -> None:
    text_input = '[[tools.inputs]]\nname = "text"\ntype = "string"\ndescription = "Text"\n'
    file_part = (
        '[[tools.inputs]]\nname = "audio_url"\ntype = "string"\nfile = "audio"\nsent_as = "part"\ndescription = "A"\n'
    )
    (tmp_path / "queued_eigen.toml").write_text(
        _tool("eigen", 'endpoint = "higgs2p5"\nshape = "queued"\n' + text_input)
    )
    (tmp_path / "voice_kind.toml").write_text(
        _tool("voice_api", 'endpoint = "sing"\n' + text_input).replace("a_tool", "b_tool")
    )
    (tmp_path / "fal_part.toml").write_text(
        _tool("fal", 'endpoint = "fal-ai/x"\n' + file_part).replace("a_tool", "c_tool")
    )
    (tmp_path / "voice_url.toml").write_text(
        _tool("voice_api", 'endpoint = "stt"\n' + file_part.replace('sent_as = "part"\n', "")).replace(
            "a_tool", "d_tool"
        )
    )
    (tmp_path / "audio_queued.toml").write_text(
        _tool("fal", 'endpoint = "fal-ai/y"\nreturns = "audio"\n' + text_input).replace("a_tool", "e_tool")
    )
    (tmp_path / "acme.toml").write_text(_tool("acme", 'endpoint = "z"\n' + text_input).replace("a_tool", "f_tool"))
    with pytest.raises(ManifestError) as caught:
        load_catalog(tmp_path)
    assert sorted(caught.value.problems) == [
        "acme.toml: provider: unknown upstream 'acme'; known: fal, voice_api, eigen, local",
        "audio_queued.toml: tools.0.returns: only one-shot tools answer with the audio itself",
        "fal_part.toml: tools.0.inputs.0.sent_as: fal takes no multipart file parts",
        "queued_eigen.toml: tools.0.shape: eigen offers 'one_shot', not 'queued'",
        "voice_kind.toml: tools.0.endpoint: Voice API has no endpoint 'sing'; it has tts, stt, clone",
        'voice_url.toml: tools.0.inputs.0.sent_as: Voice API cannot upload local files; use sent_as = "part"',
    ]


def test_each_tool_runs_in_a_shape_its_upstream_offers() -> None:
    for capability in CATALOG.capabilities.values():
        assert capability.shape in capability.upstream.shapes, capability.name
    assert CATALOG.get("turbo_transcribe_stream").shape == "one_shot"  # type: ignore[union-attr]
    assert CATALOG.get("lyria2_music").shape == "queued"  # type: ignore[union-attr]
    assert CATALOG.get("eigen_higgs_tts").spec.returns == "audio"  # type: ignore[union-attr]


def test_per_model_rules_are_enforced_and_stated_in_the_schema() -> None:
    """A merged tool: an input required by one mode only, refused by the others, said in words."""
    edit = CATALOG.get("ace_step_edit")
    assert edit is not None
    rules = edit.input_schema["description"]
    assert "Required with mode=remix: original_tags." in rules
    assert "Only mode=inpaint: start_time, end_time, advanced.start_time_relative_to" in rules
    base = {"audio_url": "https://a/b.mp3", "tags": "lofi"}
    with pytest.raises(InvalidArguments, match="`original_tags`: required with mode 'remix'"):
        edit.prepare(base | {"mode": "remix"}, lambda name: None)
    with pytest.raises(InvalidArguments, match="`start_time`: mode 'outpaint' does not take it"):
        edit.prepare(base | {"mode": "outpaint", "start_time": 3}, lambda name: None)
    prepared = edit.prepare(base | {"mode": "remix", "original_tags": "rock"}, lambda name: None)
    assert prepared.endpoint == "fal-ai/ace-step/audio-to-audio" and prepared.body == base | {"original_tags": "rock"}


def test_a_per_model_text_limit_is_enforced_and_stated(tmp_path: Path) -> None:
    tool = CATALOG.capabilities["elevenlabs_tts"].spec.model_dump(exclude_none=True)
    for item in tool["inputs"]:
        if item["name"] == "text":
            item.pop("required")
            item["per_model"] = {"eleven-v3": {"max_length": 5, "required": True}}
    spec = ToolSpec.model_validate(tool)
    assert "At most 5 chars with model=eleven-v3: text." in json_schema(spec)["description"]
    capability = Capability(spec, CATALOG.capabilities["elevenlabs_tts"].upstream, None, json_schema(spec))
    with pytest.raises(InvalidArguments, match="`text`: 6 characters; model 'eleven-v3' takes at most 5"):
        capability.prepare({"text": "Hello!", "model": "eleven-v3"}, lambda name: None)
    with pytest.raises(InvalidArguments, match="`text`: required with model 'eleven-v3'"):
        capability.prepare({"model": "eleven-v3"}, lambda name: None)
    assert capability.prepare({"text": "Hello!"}, lambda name: None).body["text"] == "Hello!"
    with pytest.raises(ValueError, match="per_model keys"):
        ToolSpec.model_validate(tool | {"inputs": [i | {"per_model": {"v9": {}}} for i in tool["inputs"]]})
