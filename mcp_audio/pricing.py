"""What a call will cost, from the manifest's price and the call's arguments, and the spend guard."""

from __future__ import annotations

import re
from typing import Any

from mcp_audio.errors import SpendLimitExceeded
from mcp_audio.manifest import Price


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


class SpendGuard:
    """Refuses calls that would take this server's estimated spend past a limit.

    The total counts the estimated cost of every job this server process started; calls whose
    cost cannot be estimated are let through and counted as zero (the closing note says so).
    """

    def __init__(self, limit_usd: float | None) -> None:
        self.limit_usd = limit_usd
        self.spent_usd = 0.0

    def charge(self, tool: str, cost: float | None) -> None:
        if cost is None:
            return
        if self.limit_usd is not None and self.spent_usd + cost > self.limit_usd + 1e-9:
            raise SpendLimitExceeded(
                f"{tool} would cost about ${cost:.4f}, taking this server's spend to "
                f"${self.spent_usd + cost:.4f}, past MCP_AUDIO_MAX_SPEND_USD=${self.limit_usd:g} "
                f"(spent so far: ${self.spent_usd:.4f}). Ask the user before raising the limit."
            )
        self.spent_usd += cost
