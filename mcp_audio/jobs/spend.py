"""The spend guard: refuses a call that would take a caller's or the server's spend past its cap."""

from __future__ import annotations

from collections.abc import Callable

import anyio.to_thread

from mcp_audio.core.errors import SpendLimitExceeded
from mcp_audio.store import JobStore

__all__ = ["SpendGuard"]


class SpendGuard:
    """Refuses calls that would take a caller's estimated spend past its cap (`tokens add
    --max-spend-usd`), or the server's total past MCP_AUDIO_MAX_SPEND_USD.

    Totals are running sums of the estimated cost of every job started, kept in the store so
    they survive restarts, one per principal (one caller's spend never counts against another's
    cap); a charge is taken back when the upstream refuses the request (`refund`). A paid tool
    with no published price is refused while a cap applies to the caller, unless the operator
    allows it (MCP_AUDIO_CAP_UNPRICED=allow); other calls whose cost cannot be estimated are let
    through and counted as zero.
    """

    def __init__(
        self,
        limit_usd: float | None,
        store: JobStore | None = None,
        caps: Callable[[str], float | None] | None = None,
        *,
        allow_unpriced: bool = False,
    ) -> None:
        self.limit_usd = limit_usd
        self._store = store
        self._caps = caps or (lambda principal: None)
        self._allow_unpriced = allow_unpriced
        self._spent: dict[str, float] = {}  # without a store (tests of the runner alone)

    async def charge(self, tool: str, cost: float | None, principal: str = "local", *, unpriced: bool = False) -> None:
        """Count `cost` against the caps, or raise SpendLimitExceeded. `unpriced`: a paid tool
        whose upstream publishes no price (refused under a cap unless allowed)."""
        if cost is None and (not unpriced or self._allow_unpriced):
            return
        cap = await anyio.to_thread.run_sync(self._caps, principal)  # the token table may be read
        if cost is None:
            if cap is not None or self.limit_usd is not None:
                which = "your spend cap" if cap is not None else "MCP_AUDIO_MAX_SPEND_USD"
                raise SpendLimitExceeded(
                    f"{tool} has no published price, so its cost cannot be counted against {which}; it is refused "
                    "while a cap applies. The server's operator can allow such tools (MCP_AUDIO_CAP_UNPRICED=allow)."
                )
            return
        if self._store is not None:
            charged, spent, server = await self._store.charge(
                principal, cost, limit_usd=cap, server_limit_usd=self.limit_usd
            )
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

    async def refund(self, principal: str, cost: float) -> None:
        """Take back the charge of a call the upstream refused (not accepted, so not billed)."""
        if self._store is not None:
            await self._store.refund(principal, cost)
        else:
            self._spent[principal] = max(0.0, self._spent.get(principal, 0.0) - cost)


def _over(spent: float, cost: float, limit: float | None) -> bool:
    return limit is not None and spent + cost > limit + 1e-9
