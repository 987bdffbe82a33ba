"""Every input has a limit, the schema states it, and a refusal names the field and the limit."""

from __future__ import annotations

import re
from typing import Any

import pytest
from mcp import Client

from mcp_audio.catalog import DEFAULT_MAX_ITEMS, DEFAULT_MAX_TEXT_CHARS, item_limit, text_limit
from mcp_audio.sandbox.fal_queue import FakeFal
from tests.helpers import CATALOG, stated_advanced, text_of

pytestmark = pytest.mark.anyio


def _walk(props: dict[str, Any], inputs: dict[str, Any], where: str) -> list[tuple[str, dict[str, Any], Any]]:
    out = []
    for name, prop in props.items():
        spec = inputs.get(name)
        if spec is not None:
            out.append((where + name, prop, spec))
            if spec.fields is not None:  # an object, or a list of objects
                members = prop["items"] if spec.type == "array" else prop
                out += _walk(members["properties"], {m.name: m for m in spec.fields}, where + name + ".")
    return out


def _advanced(capability: Any) -> list[tuple[str, str, Any]]:
    """Each advanced member (nested ones too) with the words its group's line states of it."""
    stated = stated_advanced(capability.input_schema)
    out = []
    for spec in capability.spec.inputs:
        if spec.advanced:
            out.append((spec.name, stated.get(spec.name, ""), spec))
            out += [(f"{spec.name}.{m.name}", stated.get(f"{spec.name}.{m.name}", ""), m) for m in spec.fields or []]
    return out


def _unstated(spec: Any, words: str) -> list[str]:
    """The bounds of `spec` that `words` leaves out (a range reads lo-hi, or lo..hi below 0)."""
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
    return missing


async def test_the_schema_states_every_enforced_bound(client: Client) -> None:
    listed = {tool.name: tool for tool in (await client.list_tools()).tools}
    checked = advanced = 0
    for capability in CATALOG.capabilities.values():
        schema = listed[capability.name].input_schema
        for where, prop, spec in _walk(schema["properties"], capability.inputs, f"{capability.name}."):
            for attr, keyword in (("minimum", "minimum"), ("maximum", "maximum"), ("enum", "enum")):
                if getattr(spec, attr) is not None:
                    assert prop.get(keyword) == getattr(spec, attr), (where, keyword)
            # No text or list goes uncapped: its own cap is in the schema, the default one in the
            # server's instructions (said once, not on every property).
            if spec.type == "string" and spec.file is None and spec.enum is None:
                assert prop.get("maxLength", DEFAULT_MAX_TEXT_CHARS) == text_limit(spec) is not None, where
                checked += 1
            if spec.type == "array":
                assert prop.get("maxItems", DEFAULT_MAX_ITEMS) == item_limit(spec) is not None, where
        # The advanced group states its members in words: every bound, in the one line.
        assert schema["properties"].get("advanced", {}).get("type", "object") == "object"
        for where, words, spec in _advanced(capability):
            assert words, f"{capability.name}: advanced.{where} is not stated"
            assert _unstated(spec, words) == [], (f"{capability.name}: advanced.{where}", words)
            advanced += 1
    assert checked > 30 and advanced > 100
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
