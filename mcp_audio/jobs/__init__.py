"""A call's life as a persisted job: validate, resolve inputs, confirm the cost, submit once,
follow to the end, save outputs; leases so that one process follows each job, and resume after a
restart. `open_engine` assembles the store, saver, runner and pipeline a server runs.
"""

from mcp_audio.jobs.engine import Engine, open_engine
from mcp_audio.jobs.pipeline import CallPipeline
from mcp_audio.jobs.production import Productions
from mcp_audio.jobs.runner import JobRunner, not_found_message
from mcp_audio.jobs.spend import SpendGuard

__all__ = ["CallPipeline", "Engine", "JobRunner", "Productions", "SpendGuard", "not_found_message", "open_engine"]
