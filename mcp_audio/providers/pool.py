"""Providers built from the settings: one per upstream, created on first use without I/O."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from mcp_audio.core.upstreams import UPSTREAMS, Upstream
from mcp_audio.providers.base import Pacing, Provider

if TYPE_CHECKING:
    from mcp_audio.config import ServerSettings


def build_provider(upstream: Upstream, settings: ServerSettings, pacing: Pacing | None = None) -> Provider:
    """A provider for `upstream` configured from `settings` (its key and URLs)."""
    module, _, name = upstream.provider_class.partition(":")
    cls = getattr(importlib.import_module(module), name)  # lazily: each provider module costs start-up time
    key = getattr(settings, upstream.key_field) if upstream.key_field else None
    urls = {url.param: getattr(settings, url.field) for url in upstream.urls}
    if upstream.webhook_path and settings.public_url:
        urls["webhook_url"] = settings.public_url.rstrip("/") + upstream.webhook_path
    options = {name: getattr(settings, name) for name in upstream.settings}
    provider: Provider = cls(api_key=key.get_secret_value() if key else None, pacing=pacing, **urls, **options)
    return provider


class ProviderPool:
    """One provider per upstream, built from the settings on first use (their clients cost start-up time)."""

    def __init__(self, settings: ServerSettings, pacing: Pacing | None = None) -> None:
        self._settings = settings
        self._pacing = pacing
        self._providers: dict[str, Provider] = {}

    def get(self, name: str) -> Provider:
        if name not in self._providers:
            self._providers[name] = build_provider(UPSTREAMS[name], self._settings, self._pacing)
        return self._providers[name]

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
