"""The catalog: manifests -> Capabilities (typed tools with their schema, validation and request building).

Entry points: `load_catalog()` reads `manifests/*.toml`; `Catalog.get(name)` gives a `Capability`,
whose `prepare(arguments, ...)` turns a call into a `PreparedCall` for its upstream; a `Family`
(manifests/families.toml) lists several capabilities as one tool, `route(arguments)` picking one.
"""

from mcp_audio.catalog.capability import Capability, NameLookup, PreparedCall, VoiceLookup
from mcp_audio.catalog.family import CHOOSER, Family, Member, listings
from mcp_audio.catalog.load import Catalog, load_catalog, manifests_dir
from mcp_audio.catalog.messages import describe_validation_error
from mcp_audio.catalog.schema import (
    ADVANCED,
    DEFAULT_MAX_ITEMS,
    DEFAULT_MAX_TEXT_CHARS,
    advanced_schema,
    item_limit,
    text_limit,
)

__all__ = [
    "ADVANCED",
    "CHOOSER",
    "DEFAULT_MAX_ITEMS",
    "DEFAULT_MAX_TEXT_CHARS",
    "Capability",
    "Catalog",
    "Family",
    "Member",
    "NameLookup",
    "PreparedCall",
    "VoiceLookup",
    "advanced_schema",
    "describe_validation_error",
    "item_limit",
    "listings",
    "load_catalog",
    "manifests_dir",
    "text_limit",
]
