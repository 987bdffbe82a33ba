"""Which tools fit a plain request ("a cheap English voice", "separate vocals from this song"):
a deterministic ranking over the catalog (kinds, names, titles, descriptions, manifest
`keywords`, prices), so the same request always gets the same answer, with no model or network."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mcp_audio.catalog.family import CHOOSER, Family, listings
from mcp_audio.core.pricing import dollars

if TYPE_CHECKING:
    from mcp_audio.catalog.capability import Capability
    from mcp_audio.core.manifest import InputSpec

__all__ = ["Match", "find_tools", "typical_cost"]

# Words of a request that say what kind of tool it wants.
_KIND_WORDS: dict[str, tuple[str, ...]] = {
    "tts": ("voice", "voiceover", "speak", "speech", "say", "narrat", "read", "tts", "spoken", "audiobook", "podcast"),
    "clone": ("clone", "cloning", "design", "my voice", "copy"),
    "stt": (
        "transcri",
        "caption",
        "subtitle",
        "what was said",
        "speech to text",
        "dictation",
        "detect",
        "diariz",
        "speaker",
    ),
    "music": ("music", "song", "instrumental", "beat", "jingle", "soundtrack", "melody", "lyrics", "track"),
    "sfx": ("sound effect", "sfx", "foley", "sound for", "sounds", "ambience", "ambient", "noise of", "whoosh"),
    "edit": (
        "separate",
        "stem",
        "vocals",
        "isolate",
        "denoise",
        "noise",
        "remove",
        "dub",
        "translate",
        "re-voice",
        "extend",
        "inpaint",
        "remix",
        "change",
        "regenerate",
        "region",
        "restyle",
    ),
    "post": (
        "join",
        "concat",
        "mix",
        "master",
        "loud",
        "lufs",
        "normaliz",
        "trim",
        "cut",
        "subtitle",
        "srt",
        "duration",
    ),
}
_CHEAP = ("cheap", "cheapest", "low cost", "budget", "inexpensive", "free")
_QUALITY = ("best", "premium", "natural", "quality", "realistic", "expressive")
_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "this",
        "that",
        "my",
        "for",
        "from",
        "of",
        "to",
        "and",
        "or",
        "with",
        "in",
        "on",
        "it",
        "some",
        "me",
        "i",
        "want",
        "need",
        "please",
        "cheap",
        "cheapest",
    ]
)
# A call of a typical size, to compare prices of different units: 1000 characters of speech,
# 30 s of generated audio, one minute of input audio.
_TYPICAL = {"request": 1.0, "1000_characters": 1.0, "second": 30.0, "output_second": 30.0, "input_minute": 1.0}


@dataclass(frozen=True)
class Match:
    """One suggested tool: why it fits, what a typical call costs, the arguments that matter."""

    tool: str
    score: float
    why: str
    price: str
    usd: float | None  # a typical call's cost (None: no published price)
    arguments: dict[str, str]

    def entry(self) -> dict[str, Any]:
        return {"tool": self.tool, "why": self.why, "price": self.price, "arguments": self.arguments}


def typical_cost(capability: Capability) -> float | None:
    """US dollars of a typical call (see _TYPICAL); 0 for local tools; None without a price."""
    if capability.upstream.local:
        return 0.0
    price = capability.spec.price
    if price is None:
        return None
    quantity = (
        _TYPICAL[price.unit] if price.unit != "second" or price.default_quantity is None else price.default_quantity
    )
    return round(price.usd * quantity, 6)


def _words(text: str) -> list[str]:
    return [word for word in re.findall(r"[a-z0-9][a-z0-9+.-]*", text.lower()) if word not in _STOP]


def _haystack(capability: Capability) -> str:
    spec = capability.spec
    names = " ".join(spec.name.split("_"))
    return " ".join([names, spec.title, spec.description, " ".join(spec.keywords), spec.kind]).lower()


def _kinds_wanted(request: str) -> dict[str, int]:
    wanted: dict[str, int] = {}
    for kind, words in _KIND_WORDS.items():
        hits = sum(1 for word in words if re.search(rf"\b{re.escape(word)}", request))
        if hits:
            wanted[kind] = hits
    return wanted


def _score(capability: Capability, request: str, words: list[str], kinds: dict[str, int]) -> tuple[float, list[str]]:
    spec = capability.spec
    haystack = _haystack(capability)
    reasons: list[str] = []
    score = 0.0
    matched = [word for word in dict.fromkeys(words) if re.search(rf"\b{re.escape(word)}", haystack)]
    # The local tools (join, master, subtitles, provenance...) do different things: one of them
    # fits a request for its family only when the request names what it does.
    if spec.kind in kinds and (spec.kind != "post" or matched):
        score += 3.0 * kinds[spec.kind]
        reasons.append(f"a {spec.kind} tool")
    if matched:
        score += 1.5 * len(matched)
        reasons.append("matches " + ", ".join(matched[:4]))
    files = {spec_input.file for spec_input in capability.file_inputs}
    mentions_video = re.search(r"\b(video|clip|film|footage)", request) is not None
    mentions_audio = re.search(r"\b(song|recording|audio|track|file|podcast|this)\b", request) is not None
    if mentions_video and files & {"video", "media"} and (spec.kind in kinds or not kinds):
        score += 4.0
        reasons.append("takes a video")
    elif mentions_video and spec.kind in ("sfx", "music") and not files:
        score -= 2.0  # a prompt-only generator cannot follow a video
    if not mentions_video and "video" in files and "media" not in files and not files & {"audio"}:
        score -= 2.0
    if mentions_audio and files & {"audio", "media"} and spec.kind in ("edit", "stt", "post"):
        score += 1.0
    return score, reasons


def find_tools(
    capabilities: list[Capability],
    task: str,
    *,
    max_usd: float | None = None,
    limit: int = 3,
    families: Sequence[Family] = (),
) -> list[Match]:
    """The `limit` best tools for `task`, best first; ties go to the cheaper, then the name.
    A capability a family lists is suggested as that family's tool with its `model` (of several
    families, the one whose words the request uses most: "extend this song" is extend_audio's
    ace-step, not inpaint_audio's)."""
    listed_as = listings(families)
    request = task.lower()
    words = _words(request)
    kinds = _kinds_wanted(request)
    cheap = any(re.search(rf"\b{word}", request) for word in _CHEAP)
    quality = any(re.search(rf"\b{word}", request) for word in _QUALITY)
    ranked: list[Match] = []
    for capability in capabilities:
        score, reasons = _score(capability, request, words, kinds)
        if score <= 0:
            continue
        usd = typical_cost(capability)
        if max_usd is not None and (usd is None or usd > max_usd):
            continue  # an unpriced tool could cost anything
        if cheap and usd is not None:
            score += 2.0 / (1.0 + 20 * usd)  # free and cent-level tools first
            reasons.append("low price")
        elif cheap:
            score -= 1.0  # a request for cheap wants a price it can count on
        if quality and capability.spec.price is not None and (usd or 0) >= 0.05:
            score += 1.0
        tool, arguments = capability.name, _arguments(capability.spec.inputs)
        if capability.name in listed_as:
            # As the family takes it: `model` picks the member, which fixes the member's own endpoint choice.
            family, member = max(listed_as[capability.name], key=lambda option: _overlap(option[0], words))
            tool = family.name
            arguments = {CHOOSER: f"'{member.choice}'"} | _arguments(member.inputs(), member.required)
        ranked.append(Match(tool, round(score, 3), "; ".join(reasons), _price_text(capability, usd), usd, arguments))
    ranked.sort(key=lambda m: (-m.score, m.usd if m.usd is not None else float("inf"), m.tool))
    return ranked[:limit]


def _overlap(family: Family, words: list[str]) -> int:
    """How many of the request's words a family's name, title and description use (max() keeps
    the first of equals: the family families.toml lists first)."""
    spec = family.spec
    haystack = " ".join([" ".join(spec.name.split("_")), spec.title, spec.description]).lower()
    return sum(1 for word in dict.fromkeys(words) if re.search(rf"\b{re.escape(word)}", haystack))


def _price_text(capability: Capability, usd: float | None) -> str:
    price = capability.spec.price
    if capability.upstream.local:
        return "free (runs locally)"
    if price is None or usd is None:
        return "no published price"
    typical = {"1000_characters": "1000 characters", "input_minute": "a minute of audio"}.get(
        price.unit, "a typical call"
    )
    return f"{price.describe()} (~{dollars(usd)} for {typical})"


def _arguments(
    inputs: Sequence[InputSpec], required: Callable[[InputSpec], bool] = lambda spec: spec.required
) -> dict[str, str]:
    """The required arguments and the few top-level options, with what they say."""
    out: dict[str, str] = {}
    for spec in inputs:
        if spec.advanced:
            continue
        if required(spec) or spec.file is not None or spec.name in ("voice", "model", "language", "duration"):
            label = spec.description or spec.name
            out[spec.name] = ("required: " if required(spec) else "") + label
    return out
