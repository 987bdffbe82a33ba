"""A production's plan: produce_audio's arguments checked and cut into speech parts, each a
call of the speaker's speech tool, with the whole's estimated cost and time.

Everything here runs before anything is sent: each speaker's voice is validated by its tool's
own `prepare` (presets, the caller's saved voices, unknown voices refused as in a single call),
every part's call too, and the script by `core.script` (the line and what is allowed). The
plan is stored on the production's job row, so a restart continues the same plan.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from mcp_audio.catalog import Capability, Catalog, PreparedCall
from mcp_audio.catalog.schema import ADVANCED, text_limit
from mcp_audio.core.errors import InvalidArguments
from mcp_audio.core.pricing import dollars
from mcp_audio.core.script import (
    MAX_TITLE_CHARS,
    NARRATOR,
    Part,
    PlannedPause,
    ScriptError,
    make_lexicon,
    parse_script,
    plan_parts,
    speaker_seed,
)

__all__ = [
    "DEFAULT_VOICE",
    "DELIVERIES",
    "FORMATS",
    "PRODUCE_TOOL",
    "Plan",
    "PlanItem",
    "make_plan",
    "part_arguments",
    "quote",
]

PRODUCE_TOOL = "produce_audio"
DEFAULT_VOICE: dict[str, Any] = {"tool": "kokoro_tts", "voice": "af_heart"}
"""The narrator without `voices`: Kokoro is fast, cheap and made for long narration."""
PART_CHARS = 1500
"""Longest part sent, even to a tool that takes more: shorter requests run side by side and a
redo costs less. A tool's own documented limit is used when it is lower."""
SPEECH_CHARS_PER_S = 14.0
"""Read speech: about 14 characters a second (for the length and time estimates)."""
MAX_VOICES = 20
DELIVERIES = ("podcast", "audiobook", "broadcast", "none")
FORMATS = ("mp3", "m4a", "m4b", "wav", "flac")
PART_CONCURRENCY = {"fal": 4}
"""Parts of one upstream in flight at once (per server process); others: DEFAULT_CONCURRENCY."""
DEFAULT_CONCURRENCY = 2
# Bracketed cues a speech tool understands (kept in the text it is sent); others are refused.
KNOWN_CUES: dict[str, frozenset[str]] = {
    "voice_api_tts": frozenset({"excited", "whisper", "laughs", "sad", "angry", "calm"}),
    "elevenlabs_tts": frozenset({"laughs", "sighs", "whispers", "excited", "sarcastic", "curious"}),
}

Prepare = Callable[[Capability, dict[str, Any]], PreparedCall]


class PlanItem(BaseModel):
    """A part (one call of `tool` with `arguments`) or a pause (`pause_s`), in its chapter."""

    model_config = ConfigDict(extra="forbid")

    chapter: int
    line: int
    pause_s: float | None = None
    part: dict[str, Any] | None = None  # core.script.Part's fields
    tool: str | None = None
    arguments: dict[str, Any] | None = None
    cost_usd: float | None = None

    def as_part(self) -> Part:
        assert self.part is not None
        return Part(**self.part)


class Plan(BaseModel):
    """What a production makes and how; stored on its job row."""

    model_config = ConfigDict(extra="forbid")

    title: str | None
    delivery: Literal["podcast", "audiobook", "broadcast", "none"]
    format: Literal["mp3", "m4a", "m4b", "wav", "flac"]
    chapters: list[str | None]
    items: list[PlanItem]
    voices: dict[str, dict[str, Any]]  # speaker -> {"tool": ..., the tool's arguments}
    lexicon: dict[str, str] = {}
    music_file: str | None = None  # the caller's bed, as given (resolved when the production starts)
    music_tool: str | None = None  # or a bed to generate: this tool with `music_arguments`
    music_arguments: dict[str, Any] | None = None
    music_cost_usd: float | None = None

    @property
    def parts(self) -> list[PlanItem]:
        return [item for item in self.items if item.part is not None]

    @property
    def cost_usd(self) -> float | None:
        """The sum of every priced call; None when none is priced."""
        costs = [p.cost_usd for p in self.parts if p.cost_usd is not None]
        if self.music_cost_usd is not None:
            costs.append(self.music_cost_usd)
        return round(sum(costs), 6) if costs else None

    @property
    def unpriced(self) -> list[str]:
        """The calls whose cost cannot be estimated, by tool: 'kokoro_tts (parts 1-36)'."""
        by_tool: dict[str, list[int]] = {}
        for item in self.parts:
            if item.cost_usd is None:
                by_tool.setdefault(str(item.tool), []).append(int(item.as_part().index) + 1)
        out = [f"{tool} ({_ranges(numbers)})" for tool, numbers in by_tool.items()]
        if self.music_tool is not None and self.music_cost_usd is None:
            out.append(f"{self.music_tool} (music bed)")
        return out

    @property
    def audio_s(self) -> float:
        speech = sum(len(p.as_part().spoken) for p in self.parts) / SPEECH_CHARS_PER_S
        return speech + sum(item.pause_s or 0.0 for item in self.items)

    def time_s(self, providers: Mapping[str, str]) -> float:
        """A rough wall time: parts in waves of each upstream's concurrency, a few seconds each
        plus rendering at ~8x real time, then finishing at ~40x real time."""
        waves = 0.0
        per_upstream: dict[str, list[float]] = {}
        for item in self.parts:
            seconds = 4.0 + len(item.as_part().spoken) / SPEECH_CHARS_PER_S / 8.0
            per_upstream.setdefault(providers.get(str(item.tool), ""), []).append(seconds)
        for provider, times in per_upstream.items():
            waves = max(waves, sum(times) / PART_CONCURRENCY.get(provider, DEFAULT_CONCURRENCY))
        return waves + self.audio_s / 40.0 + 5.0


def _ranges(numbers: list[int]) -> str:
    spans: list[str] = []
    start = prev = numbers[0]
    for n in [*numbers[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        spans.append(f"{start}" if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return "parts " + ", ".join(spans)


def _speech_tool(catalog: Catalog, speaker: str, entry: Any) -> tuple[Capability, dict[str, Any]]:
    where = f"voices.{speaker}"
    if not isinstance(entry, Mapping):
        raise InvalidArguments(f'`{where}`: must be an object such as {{"tool": "kokoro_tts", "voice": "af_heart"}}.')
    tool = entry.get("tool")
    try:  # a family tool (speak) takes its `model` here too
        capability, arguments = catalog.resolve(tool, {k: v for k, v in entry.items() if k != "tool"})
    except InvalidArguments as exc:
        raise InvalidArguments(f"`{where}` ({tool}): {exc}") from exc
    if capability is None or not _speaks(capability):
        speech = catalog.listed_names(_speaks)
        raise InvalidArguments(
            f"`{where}.tool`: {str(tool)[:60]!r} is not a speech tool of this server; one of: {', '.join(speech)}."
        )
    if "text" in arguments:
        raise InvalidArguments(f"`{where}.text`: the text comes from the script; give only the voice and settings.")
    return capability, arguments


def _speaks(capability: Capability) -> bool:
    return capability.spec.kind == "tts" and "text" in capability.inputs


def part_arguments(capability: Capability, voice: dict[str, Any], part: Part) -> dict[str, Any]:
    """One part's call: the speaker's voice and settings, the part's spoken text, and the
    continuity inputs the tool has (the neighbouring text, a fixed seed per speaker)."""
    arguments = dict(voice) | {"text": part.spoken}
    continuity: list[tuple[str, Any]] = [("previous_text", part.previous_text), ("next_text", part.next_text)]
    seed = capability.inputs.get("seed")
    if seed is not None:
        continuity.append(("seed", speaker_seed(part.speaker) % int(seed.maximum or 2_147_483_647)))
    for name, value in continuity:
        _continuity(capability, arguments, name, value)
    return arguments


def _continuity(capability: Capability, arguments: dict[str, Any], name: str, value: Any) -> None:
    """Set `name` where the tool has it (in its advanced group if it is advanced), unless the
    caller set it or the chosen model does not take it (manifest `models`)."""
    spec = capability.inputs.get(name)
    if spec is None or value is None:
        return
    if spec.models is not None and capability.spec.endpoint_input is not None:
        chosen = arguments.get(
            capability.spec.endpoint_input, capability.inputs[capability.spec.endpoint_input].default
        )
        if chosen not in spec.models:
            return
    group = dict(arguments.get(ADVANCED) or {}) if spec.advanced else arguments
    if name in group:
        return
    group[name] = value[-(spec.max_length or 1000) :] if isinstance(value, str) else value
    if spec.advanced:
        arguments[ADVANCED] = group


def make_plan(arguments: Mapping[str, Any], catalog: Catalog, prepare: Prepare) -> Plan:
    """Check produce_audio's arguments and plan the production; InvalidArguments (naming the
    field, or the script line, and what is allowed) before anything is sent."""
    delivery = arguments.get("delivery") or "podcast"
    fmt = arguments.get("format") or "mp3"
    if delivery not in DELIVERIES:
        raise InvalidArguments(f"`delivery`: {str(delivery)[:40]!r} is not one of {', '.join(DELIVERIES)}.")
    if fmt not in FORMATS:
        raise InvalidArguments(f"`format`: {str(fmt)[:40]!r} is not one of {', '.join(FORMATS)}.")
    title = arguments.get("title")
    if title is not None and (not isinstance(title, str) or not title.strip() or len(title) > MAX_TITLE_CHARS):
        raise InvalidArguments(f"`title`: text of 1 to {MAX_TITLE_CHARS} characters.")
    given = arguments.get("voices")
    if given is not None and not isinstance(given, Mapping):
        raise InvalidArguments('`voices`: an object: speaker name -> {"tool": <speech tool>, "voice": ...}.')
    voices: dict[str, Any] = dict(given or {})
    if len(voices) > MAX_VOICES:
        raise InvalidArguments(f"`voices`: {len(voices)} speakers; at most {MAX_VOICES}.")
    if not any(name.casefold() == NARRATOR for name in voices):
        voices[NARRATOR] = DEFAULT_VOICE
    tools: dict[str, tuple[Capability, dict[str, Any]]] = {}
    for speaker, entry in voices.items():
        capability, voice = _speech_tool(catalog, speaker, entry)
        try:  # the voice checked by the tool itself, as in a single call
            prepare(capability, voice | {"text": "Hello."})
        except InvalidArguments as exc:
            raise InvalidArguments(f"`voices.{speaker}` ({capability.name}): {exc}") from exc
        tools[speaker] = (capability, voice)
    cues = frozenset.intersection(*(KNOWN_CUES.get(cap.name, frozenset()) for cap, _ in tools.values()))
    lexicon_given = arguments.get("lexicon") or {}
    try:
        script = parse_script(arguments.get("script"), voices=list(voices), allowed_cues=cues)  # type: ignore[arg-type]
        lexicon = make_lexicon(lexicon_given)
        limits = {s: min(PART_CHARS, text_limit(cap.inputs["text"]) or PART_CHARS) for s, (cap, _) in tools.items()}
        planned = plan_parts(script, limits, lexicon)
    except ScriptError as exc:
        field = "lexicon" if str(exc).startswith("lexicon") else "script"
        raise InvalidArguments(f"`{field}`: {exc}") from exc
    if delivery == "audiobook" and arguments.get("music") is not None:
        raise InvalidArguments(
            "`music`: the audiobook delivery has no music bed (room tone only, as ACX asks); "
            "use delivery podcast, broadcast or none for a bed."
        )
    items: list[PlanItem] = []
    for element in planned:
        if isinstance(element, PlannedPause):
            items.append(PlanItem(chapter=element.chapter, line=element.line, pause_s=element.seconds))
            continue
        capability, voice = tools[element.speaker]
        call_arguments = part_arguments(capability, voice, element)
        try:
            call = prepare(capability, call_arguments)
        except InvalidArguments as exc:
            raise InvalidArguments(f"`script` line {element.line} ({capability.name}): {exc}") from exc
        items.append(
            PlanItem(
                chapter=element.chapter,
                line=element.line,
                part=dataclasses.asdict(element),
                tool=capability.name,
                arguments=call_arguments,
                cost_usd=_estimate(capability, call, call_arguments),
            )
        )
    plan = Plan(
        title=title.strip() if isinstance(title, str) else None,
        delivery=delivery,
        format=fmt,
        chapters=[c.title for c in script.chapters],
        items=items,
        voices={s: {"tool": cap.name} | voice for s, (cap, voice) in tools.items()},
        lexicon=dict(lexicon.entries),
    )
    _plan_music(plan, arguments.get("music"), catalog, prepare)
    return plan


def _estimate(capability: Capability, call: PreparedCall, arguments: Mapping[str, Any]) -> float | None:
    """The call's estimated cost, as `prepare` made it from the validated arguments."""
    return call.estimated_cost_usd


def _plan_music(plan: Plan, music: Any, catalog: Catalog, prepare: Prepare) -> None:
    if music is None:
        return
    if isinstance(music, str):
        if not music.strip():
            raise InvalidArguments('`music`: a file (path, URL, jobs:// or files://) or {"tool": ..., "prompt": ...}.')
        plan.music_file = music
        return
    if not isinstance(music, Mapping):
        raise InvalidArguments('`music`: a file (path, URL, jobs:// or files://) or {"tool": ..., "prompt": ...}.')
    tool = music.get("tool")
    try:  # a family tool (make_music) takes its `model` here too
        capability, arguments = catalog.resolve(tool, {k: v for k, v in music.items() if k != "tool"})
    except InvalidArguments as exc:
        raise InvalidArguments(f"`music` ({tool}): {exc}") from exc
    if capability is None or capability.spec.kind != "music":
        names = catalog.listed_names(lambda c: c.spec.kind == "music")
        raise InvalidArguments(f"`music.tool`: {str(tool)[:60]!r} is not a music tool; one of: {', '.join(names)}.")
    try:
        call = prepare(capability, arguments)
    except InvalidArguments as exc:
        raise InvalidArguments(f"`music` ({capability.name}): {exc}") from exc
    plan.music_tool, plan.music_arguments = capability.name, arguments
    plan.music_cost_usd = _estimate(capability, call, arguments)


def quote(plan: Plan, providers: Mapping[str, str]) -> str:
    """The plan in one line, as the cost question and the result state it."""
    parts = plan.parts
    by_tool: dict[str, int] = {}
    for item in parts:
        by_tool[str(item.tool)] = by_tool.get(str(item.tool), 0) + 1
    tools = ", ".join(f"{n} x {tool}" for tool, n in by_tool.items())
    minutes = plan.audio_s / 60
    ready = math.ceil(plan.time_s(providers) / 60)
    text = (
        f"{PRODUCE_TOOL} ({len(parts)} parts: {tools}; about {minutes:.0f} min of audio in "
        f"{len(plan.chapters)} chapter(s); ready in about {ready} min"
    )
    if plan.music_tool:
        text += f"; music bed by {plan.music_tool}"
    if plan.unpriced:
        text += f"; no published price for {', '.join(plan.unpriced)}"
    return text + ")"


def describe_cost(plan: Plan) -> str:
    cost = plan.cost_usd
    return dollars(cost) if cost is not None else "unknown (no published price)"
