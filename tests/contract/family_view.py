"""What a family tool's listed input schema states of one `model` choice, read back from its words
as a model would read them, written apart from the server's code (mcp_audio/catalog/family.py):
the rules in the schema's description ("Only model=a|b: x, y." / "Not model=c: z." / "Required
with model=a: x." / "Required except with model=c: x.") and the per-choice words of an argument
or of `advanced` ("shared words; [a, b] words [c] words")."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

__all__ = ["ChoiceView", "choice_view"]

_RULE = re.compile(r"(Only|Not|Required with|Required except with) model=([\w.|-]+): ([\w, .]+?)\.(?= |$)")
_GROUP = re.compile(r"\[([\w.-]+(?:, [\w.-]+)*)\] ")


class ChoiceView(NamedTuple):
    taken: list[str]  # the arguments the choice takes (`advanced` when it has a group)
    required: list[str]
    advanced: str  # its `advanced` group's line of words ("" when it has none)
    words: dict[str, str]  # each taken argument's description as it applies to the choice


def choice_view(schema: dict[str, Any], choice: str) -> ChoiceView:
    choices = schema["properties"]["model"]["enum"]
    assert choice in choices, f"{choice!r} is not a choice: {choices}"
    taken = [name for name in schema["properties"] if name not in ("model", "advanced")]
    required = list(schema.get("required", []))
    for rule, named, names in _RULE.findall(schema.get("description", "")):
        applies, listed = choice in named.split("|"), names.split(", ")
        if (rule == "Only" and not applies) or (rule == "Not" and applies):
            taken = [name for name in taken if name not in listed]
        if (rule == "Required with" and applies) or (rule == "Required except with" and not applies):
            required += listed
    words = {name: _for_choice(schema["properties"][name].get("description", ""), choice, choices) for name in taken}
    group = schema["properties"].get("advanced")
    advanced = "" if group is None else _for_choice(group["description"], choice, choices, shared=False)
    return ChoiceView(taken + (["advanced"] if advanced else []), required, advanced, words)


def _for_choice(text: str, choice: str, choices: list[str], *, shared: bool = True) -> str:
    """The words of `text` for `choice`: the shared part (when `shared`), then its own group's."""
    found = [m for m in _GROUP.finditer(text) if set(m.group(1).split(", ")) <= set(choices)]
    if not found:
        return text
    base = text[: found[0].start()].rstrip("; ") if shared else ""
    for m, end in zip(found, [*(n.start() for n in found[1:]), len(text)], strict=True):
        if choice in m.group(1).split(", "):
            own = text[m.end() : end].strip()
            return f"{base}; {own}" if base else own
    return base
