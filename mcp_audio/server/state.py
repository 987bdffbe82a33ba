"""The state a running server shares between its tools and resources."""

from __future__ import annotations

from dataclasses import dataclass

from mcp.server.mcpserver.exceptions import ToolError

from mcp_audio.catalog import Catalog
from mcp_audio.config import ServerSettings
from mcp_audio.jobs import JobRunner
from mcp_audio.jobs.pipeline import CallPipeline
from mcp_audio.jobs.production import Productions
from mcp_audio.store import JobStore


@dataclass
class AppState:
    settings: ServerSettings
    catalog: Catalog
    store: JobStore
    runner: JobRunner
    pipeline: CallPipeline
    productions: Productions


class Runtime:
    """Holds the state the lifespan opened, for tools and resources built before it existed."""

    state: AppState | None = None

    def get(self) -> AppState:
        if self.state is None:
            raise ToolError("the server is still starting; try again in a moment")
        return self.state
