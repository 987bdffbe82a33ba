"""Family tools (manifests/families.toml): a `model` argument routes a call to one capability,
whose own validation then applies; one schema states what each model takes and where they differ;
a families file that names what is not there is refused at load, each problem named."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from mcp_audio.catalog import load_catalog, manifests_dir
from mcp_audio.core.errors import InvalidArguments, ManifestError
from tests.helpers import CATALOG

TRANSCRIBE = CATALOG.families["transcribe"]
SPEAK = CATALOG.families["speak"]


def test_the_model_picks_the_capability_and_the_default_is_the_first() -> None:
    capability, arguments = TRANSCRIBE.route({"audio_url": "a.mp3"})
    assert (capability.name, arguments) == ("whisper_transcribe", {"audio_url": "a.mp3"})
    capability, arguments = TRANSCRIBE.route({"model": "wizper", "audio_url": "a.mp3", "task": "translate"})
    assert (capability.name, arguments) == ("wizper_transcribe", {"audio_url": "a.mp3", "task": "translate"})


def test_a_fixed_choice_sets_the_capabilitys_own_endpoint_choice() -> None:
    capability, arguments = TRANSCRIBE.route({"model": "scribe-v1", "audio_url": "a.mp3"})
    assert capability.name == "elevenlabs_transcribe" and arguments == {"audio_url": "a.mp3", "model": "scribe-v1"}
    prepared = capability.prepare(arguments, lambda name: None)
    assert prepared.endpoint == "fal-ai/elevenlabs/speech-to-text" and prepared.body == {"audio_url": "a.mp3"}


def test_an_unknown_model_is_refused_with_the_allowed_ones() -> None:
    with pytest.raises(InvalidArguments) as caught:
        SPEAK.route({"model": "nope", "text": "Hi"})
    assert str(caught.value).startswith("`model`: got 'nope'; allowed: kokoro, elevenlabs, elevenlabs-turbo,")


def test_an_argument_the_model_does_not_take_names_the_models_that_do() -> None:
    with pytest.raises(InvalidArguments) as caught:
        TRANSCRIBE.route({"model": "scribe-v1", "audio_url": "a.mp3", "keyterms": ["fal"]})
    assert str(caught.value) == (
        "`keyterms`: model 'scribe-v1' does not take it (only model=scribe-v2 does); "
        "it takes audio_url, diarize, language_code, tag_audio_events."
    )
    with pytest.raises(
        InvalidArguments, match=re.escape("`colour`: model 'whisper' does not take it (no model of transcribe does)")
    ):
        TRANSCRIBE.route({"audio_url": "a.mp3", "colour": "red"})
    # The capability's own endpoint input is the family's to set: a fixed choice refuses it.
    with pytest.raises(InvalidArguments, match="`mode`: model 'ace-step' does not take it"):
        CATALOG.families["extend_audio"].route({"model": "ace-step", "mode": "remix", "audio_url": "a.mp3"})


def test_the_capability_still_validates_what_the_family_passes() -> None:
    capability, arguments = SPEAK.route({"model": "elevenlabs-v3", "text": "a" * 5001})
    with pytest.raises(InvalidArguments, match="`text`: 5001 characters; model 'eleven-v3' takes at most 5000"):
        capability.prepare(arguments, lambda name: None)


def test_the_schema_states_once_what_the_models_agree_on_and_each_ones_bounds_where_they_differ() -> None:
    schema = TRANSCRIBE.input_schema
    properties = schema["properties"]
    assert properties["model"] == {"enum": list(TRANSCRIBE.members), "default": "whisper"}
    assert properties["audio_url"] == CATALOG.capabilities["whisper_transcribe"].input_schema["properties"]["audio_url"]
    assert schema["required"] == ["audio_url"] and schema["additionalProperties"] is False
    language = properties["language"]["description"]
    assert "[cohere] en|fr|de|it|es|pt|el|nl|pl|zh|ja|ko|vi|ar" in language
    # The models' descriptions differ (wizper's default is English): each says its own.
    assert "[whisper] Code, e.g. en; omit to detect: text (matching ^(haw|[a-z]{2})$)" in language
    assert "[wizper] Code, default en; auto: detect: text" in language
    assert "Only model=scribe-v2: keyterms." in schema["description"]
    assert "Not model=scribe-v2|scribe-v1|turbo: language." in schema["description"]
    assert "[cohere] max_new_tokens int 1-1024" in properties["advanced"]["description"]
    music = CATALOG.families["make_music"].input_schema
    assert "Required with model=cassetteai: duration." in music["description"]
    assert "[cassetteai] Seconds: int 10-180" in music["properties"]["duration"]["description"]
    assert "With model=ace-step: Only mode=song: tags, lyrics." in music["description"]
    assert "At most 5000 chars with model=elevenlabs-v3: text." in SPEAK.input_schema["description"]


def test_every_member_choice_reaches_a_real_endpoint_of_its_capability() -> None:
    for family in CATALOG.families.values():
        for choice, member in family.members.items():
            capability, arguments = family.route({"model": choice})
            assert capability is member.capability
            if member.fixed is not None:
                assert member.fixed in (capability.spec.endpoints or {})
                assert arguments[capability.spec.endpoint_input or ""] == member.fixed


def _manifests_with(tmp_path: Path, families: str) -> Path:
    directory = tmp_path / "manifests"
    shutil.copytree(manifests_dir(), directory, ignore=shutil.ignore_patterns("__pycache__"))
    (directory / "families.toml").write_text(families)
    return directory


def test_a_families_file_naming_what_is_not_there_is_refused_with_each_problem(tmp_path: Path) -> None:
    bad = """
[[families]]
name = "kokoro_tts"
title = "Clash"
kind = "tts"
description = "A family named like a tool: refused, with every other problem of the file."
models = {a = "kokoro_tts", b = "xai_tts"}

[[families]]
name = "speak_more"
title = "Speak"
kind = "tts"
description = "Members that are not there, or not right: each one named with its choice."
models = {a = "no_such_tts", b = "elevenlabs_tts", c = "elevenlabs_tts/eleven-v9", d = "xai_tts", e = "xai_tts"}
"""
    with pytest.raises(ManifestError) as caught:
        load_catalog(_manifests_with(tmp_path, bad))
    assert caught.value.problems == [
        "families.toml: families.0.name: 'kokoro_tts' is already the name of a tool",
        "families.toml: families.1.models.a: no tool named 'no_such_tts'",
        "families.toml: families.1.models.b: elevenlabs_tts has its own `model`: name elevenlabs_tts/<choice>",
        "families.toml: families.1.models.c: 'eleven-v9' is not an endpoint choice of elevenlabs_tts",
        "families.toml: families.1.models.e: xai_tts is already in family speak_more",
    ]


def test_a_model_choice_is_a_plain_lowercase_word(tmp_path: Path) -> None:
    bad = '[[families]]\nname = "speak_two"\ntitle = "T"\nkind = "tts"\ndescription = "' + "x" * 40 + '"\n'
    bad += 'models = {"Kokoro TTS" = "kokoro_tts", b = "xai_tts"}\n'
    with pytest.raises(
        ManifestError, match=re.escape("families.toml: families.0: Value error, model choice 'Kokoro TTS'")
    ):
        load_catalog(_manifests_with(tmp_path, bad))


def test_the_finder_names_the_family_call_whose_words_the_request_uses() -> None:
    from mcp_audio.catalog.finder import find_tools

    capabilities, families = list(CATALOG.capabilities.values()), list(CATALOG.families.values())
    # ace_step_edit is listed by extend_audio, inpaint_audio and restyle_audio (in that order):
    # the family named is the one whose words the request uses.
    for request, family in [
        ("extend this song by 30 seconds", "extend_audio"),
        ("inpaint a region of this song", "inpaint_audio"),
        ("remix this song with new lyrics", "restyle_audio"),
        ("regenerate a region of this song", "inpaint_audio"),
        ("restyle this song into jazz", "restyle_audio"),
    ]:
        [best, *_] = find_tools(capabilities, request, families=families)
        assert (best.tool, best.arguments["model"]) == (family, "'ace-step'"), request
        assert "mode" not in best.arguments  # the family fixes ace_step_edit's own mode
    [stems, *_] = find_tools(capabilities, "separate vocals from this song", families=families)
    assert (stems.tool, stems.arguments["model"]) == ("separate_audio", "'demucs'")
    [alone, *_] = find_tools(capabilities, "separate vocals from this song")  # no families: the tool itself
    assert alone.tool == "demucs_stems" and "model" not in alone.arguments
