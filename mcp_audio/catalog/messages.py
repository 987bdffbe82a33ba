"""Validation errors an agent can act on: one line per problem, naming the field, what was given
and what is allowed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from mcp_audio.catalog.schema import ADVANCED, advanced_line, item_limit, text_limit
from mcp_audio.core.manifest import InputSpec, ToolSpec

__all__ = ["describe_validation_error", "loc_text", "short"]


def describe_validation_error(tool: ToolSpec, exc: ValidationError) -> str:
    """One line per problem: the field, what was given, what is allowed."""
    lines = []
    inputs = {spec.name: spec for spec in tool.inputs}
    top_level = [s.name for s in tool.inputs if not s.advanced]
    advanced = [s.name for s in tool.inputs if s.advanced]
    for err in exc.errors():
        name = str(err["loc"][-1]) if err["loc"] else ""
        spec = _spec_at(inputs, err["loc"])
        if err["type"] == "extra_forbidden" and len(err["loc"]) == 1 and name in advanced:
            lines.append(f'`{name}`: belongs inside `advanced`, e.g. {{"advanced": {{"{name}": ...}}}}.')
        elif err["type"] == "extra_forbidden":
            parent_loc = tuple(err["loc"][:-1])
            parent = _spec_at(inputs, parent_loc)
            members = [s for s in tool.inputs if s.advanced] if parent_loc == (ADVANCED,) else None
            if parent is not None and parent.advanced and parent.fields is not None:
                members = list(parent.fields)
            if members is not None:
                # tools/list states advanced members in words only: the refusal repeats them, bounds included
                allowed_text = f"Allowed in `{loc_text(parent_loc)}`: {advanced_line(members)}"
            elif parent is not None and parent.fields is not None:
                allowed_text = f"Allowed arguments: {', '.join(member.name for member in parent.fields)}"
            else:
                allowed_text = f"Allowed arguments: {', '.join(top_level + ([ADVANCED] if advanced else []))}"
            lines.append(f"`{loc_text(err['loc'])}`: unknown argument. {allowed_text}.")
        elif err["type"] == "missing":
            lines.append(f"`{name}`: required but missing ({spec.description if spec else ''}).".replace(" ()", ""))
        else:
            given = short(repr(err.get("input")))
            allowed = _allowed(spec) if spec else err["msg"]
            reason = err["msg"][:1].lower() + err["msg"][1:]  # keep enum values' case
            lines.append(f"`{loc_text(err['loc'])}`: got {given}; {reason}. Allowed: {allowed}.")
    return f"Invalid arguments for {tool.name}:\n" + "\n".join(f"- {line}" for line in lines)


def _spec_at(inputs: dict[str, InputSpec], loc: Iterable[Any]) -> InputSpec | None:
    """The input (or object member) an error location names; `advanced` is only a group."""
    names = [str(part) for part in loc if part != ADVANCED and not isinstance(part, int)]  # ints: list positions
    spec = inputs.get(names[0]) if names else None
    for member in names[1:]:
        spec = next((f for f in spec.fields or [] if f.name == member), None) if spec is not None else None
    return spec


def _allowed(spec: InputSpec) -> str:
    if spec.enum is not None:
        return "one of " + ", ".join(repr(v) for v in spec.enum)
    parts = [spec.type if spec.type != "array" else f"a list of {spec.items}"]
    if spec.minimum is not None:
        parts.append(f">= {spec.minimum:g}")
    if spec.exclusive_minimum is not None:
        parts.append(f"> {spec.exclusive_minimum:g}")
    if spec.maximum is not None:
        parts.append(f"<= {spec.maximum:g}")
    unit = "items" if spec.type == "array" else "characters"
    low = spec.min_length if spec.type != "array" else spec.min_items
    high = text_limit(spec) if spec.type != "array" else item_limit(spec)
    if low is not None:
        parts.append(f"at least {low} {unit}")
    if high is not None:
        parts.append(f"at most {high} {unit}")
    if spec.pattern:
        parts.append(spec.pattern_message or f"matching {spec.pattern}")
    return ", ".join(parts)


def loc_text(loc: Iterable[Any]) -> str:
    return ".".join(str(part) for part in loc)


def short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
