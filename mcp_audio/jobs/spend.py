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

    async def charge(self, tool: str, cost: float | None, principal: str = "local") -> None:
        if cost is None:
            return
        cap = await anyio.to_thread.run_sync(self._caps, principal)  # the token table may be read
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

    async def refund(self, cost: float | None, principal: str = "local") -> None:
        """Give back a charge for a job that was not made after all (its idempotency key named
        another, made at the same time)."""
        if cost is None:
            return
        if self._store is not None:
            await self._store.charge(principal, -cost, limit_usd=None, server_limit_usd=None)
        else:
            self._spent[principal] = self._spent.get(principal, 0.0) - cost


def _over(spent: float, cost: float, limit: float | None) -> bool:
    return limit is not None and spent + cost > limit + 1e-9
