"""Upstream providers: one module per wire protocol, all behind `providers.base.Provider`."""

__all__ = ["base", "pool"]
