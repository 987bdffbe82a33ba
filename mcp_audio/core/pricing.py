"""What a call will cost, from the manifest's price and the call's arguments."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from mcp_audio.core.errors import McpAudioError
from mcp_audio.core.manifest import Price

__all__ = ["Confirm", "NotConfirmed", "dollars", "estimate_cost"]


# Asks the user whether a call may run at its estimated cost (tool, US dollars); False: it may not.
Confirm = Callable[[str, float], Awaitable[bool]]


class NotConfirmed(McpAudioError):
    """The user declined (or dismissed) the price of a call: nothing was started."""

    def __init__(self, tool: str, cost: float) -> None:
        super().__init__(
            f"{tool} was not started: the user did not accept its estimated cost of {dollars(cost)}. Nothing was sent "
            "upstream and nothing was charged; ask the user before calling it again."
        )


def dollars(cost: float) -> str:
    """A price as people read it: cents, or more digits when a cent would hide it."""
    return f"${cost:.2f}" if cost >= 0.01 and abs(cost - round(cost, 2)) < 1e-9 else f"${cost:.4f}"


def estimate_cost(price: Price | None, payload: dict[str, Any]) -> float | None:
    """US dollars for this request, or None when the billed quantity is not known in advance
    (e.g. minutes of an input recording the server has not measured)."""
    if price is None:
        return None
    quantity = _quantity(price, payload)
    if quantity is None:
        return None
    cost = price.usd * quantity
    if price.surcharge is not None and payload.get(price.surcharge.input):
        cost *= 1 + price.surcharge.percent / 100
    return round(cost, 6)


def _quantity(price: Price, payload: dict[str, Any]) -> float | None:
    if price.unit == "request":
        return 1.0
    given = payload.get(price.quantity_input) if price.quantity_input else None
    if price.unit == "1000_characters":
        return len(given) / 1000 if isinstance(given, str) else None
    if isinstance(given, int | float) and not isinstance(given, bool):
        return float(given)
    if isinstance(given, str) and (number := re.fullmatch(r"(\d+(?:\.\d+)?)\s*s?", given.strip())):
        return float(number.group(1))  # durations given as enum strings such as "95s"
    return price.default_quantity
