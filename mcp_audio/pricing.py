"""What a call will cost, from the manifest's price and the call's arguments, and the spend guard."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from mcp_audio.errors import McpAudioError, SpendLimitExceeded
from mcp_audio.manifest import Price

if TYPE_CHECKING:
    from mcp_audio.store import JobStore


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


class SpendGuard:
    """Refuses calls that would take a caller's estimated spend past its cap (`tokens add
    --max-spend-usd`), or the server's total past MCP_AUDIO_MAX_SPEND_USD.

    Totals are running sums of the estimated cost of every job started, kept in the store so
    they survive restarts, one per principal (one caller's spend never counts against another's
    cap). Calls whose cost cannot be estimated are let through and counted as zero.
    """

    def __init__(
        self,
        limit_usd: float | None,
        store: JobStore | None = None,
        caps: Callable[[str], float | None] | None = None,
    ) -> None:
        self.limit_usd = limit_usd
        self._store = store
        self._caps = caps or (lambda principal: None)
        self._spent: dict[str, float] = {}  # without a store (tests of the runner alone)

    def charge(self, tool: str, cost: float | None, principal: str = "local") -> None:
        if cost is None:
            return
        cap = self._caps(principal)
        if self._store is not None:
            charged, spent, server = self._store.charge(principal, cost, limit_usd=cap, server_limit_usd=self.limit_usd)
        else:
            spent, server = self._spent.get(principal, 0.0), sum(self._spent.values())
            charged = not _over(spent, cost, cap) and not _over(server, cost, self.limit_usd)
            if charged:
                self._spent[principal] = spent + cost
        if charged:
            return
        if _over(server, cost, self.limit_usd):
            raise SpendLimitExceeded(
                f"{tool} would cost about ${cost:.4f}, taking this server's spend to "
                f"${server + cost:.4f}, past MCP_AUDIO_MAX_SPEND_USD=${self.limit_usd:g} "
                f"(spent so far: ${server:.4f}). Ask the user before raising the limit."
            )
        raise SpendLimitExceeded(
            f"{tool} would cost about ${cost:.4f}, taking your spend to ${spent + cost:.4f}, past your cap of "
            f"${cap:g} (spent so far: ${spent:.4f}). The server's operator sets it (`mcp-audio tokens add "
            "--max-spend-usd`)."
        )


def _over(spent: float, cost: float, limit: float | None) -> bool:
    return limit is not None and spent + cost > limit + 1e-9
