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
    remote: bool = False  # served over HTTP: results name no path of this machine (render.job_result)


class Runtime:
    """Holds the state the lifespan opened, for tools and resources built before it existed."""

    state: AppState | None = None

    def problem(self) -> str | None:
        """Why this server cannot serve tool calls now (for `/healthz`), or None: not running (not
        started yet, or its engine stopped), or jobs whose end the job database would not take."""
        state = self.state
        if state is None:
            return "not serving: the job engine is not running"
        if waiting := state.runner.unrecorded:
            return f"the job database takes no writes: {len(waiting)} job(s) waiting to be recorded"
        return None

    def get(self) -> AppState:
        if self.state is None:
            raise ToolError("the server is still starting; try again in a moment")
        return self.state
