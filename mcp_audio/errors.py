"""The exception tree of mcp-audio.

    McpAudioError                 anything this package raises on purpose
    ├── ConfigError               a setting is missing or wrong (names the env variable)
    ├── ManifestError             a manifest file is invalid (lists every problem, file and field)
    ├── InvalidArguments          a tool call's arguments are wrong (names field, value, what is allowed)
    ├── JobNotFound               no job with that id
    ├── SpendLimitExceeded        the call would pass MCP_AUDIO_MAX_SPEND_USD
    └── ProviderError             an upstream said no, or could not be reached
        ├── AuthenticationFailed  401/403: the key was rejected (named by variable, never echoed)
        ├── UpstreamRejected      422 and other 4xx: the upstream's own field messages
        ├── UpstreamUnavailable   429/5xx/transport errors that outlasted the retries
        └── UpstreamJobFailed     the job ran and failed upstream

Upstream errors are translated at the provider edge (`raise ... from exc`), so nothing above
the providers sees an httpx exception. Every message here is written for an agent to act on.
"""

from __future__ import annotations


class McpAudioError(Exception):
    """Base of every error mcp-audio raises on purpose."""


class ConfigError(McpAudioError):
    """A setting is missing or invalid; the message names the environment variable."""


class ManifestError(McpAudioError):
    """One or more manifests are invalid; `problems` lists each as 'file: field: message'."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid manifest(s):\n  " + "\n  ".join(problems))


class InvalidArguments(McpAudioError):
    """A tool call's arguments do not fit the tool's schema or the server's state."""


class JobNotFound(McpAudioError):
    """No job has this id."""


class SpendLimitExceeded(McpAudioError):
    """The call would take the server's spend past its limit."""


class ProviderError(McpAudioError):
    """An upstream call failed. `status_code` is the HTTP status when there was one."""

    def __init__(self, message: str, *, provider: str, status_code: int | None = None) -> None:
        self.provider = provider
        self.status_code = status_code
        super().__init__(message)


class AuthenticationFailed(ProviderError):
    """The upstream rejected the API key (401/403)."""


class UpstreamRejected(ProviderError):
    """The upstream rejected the request itself (422 or another 4xx)."""


class UpstreamUnavailable(ProviderError):
    """Rate limits, server errors or network trouble that outlasted the retries."""


class UpstreamJobFailed(ProviderError):
    """The upstream accepted the job, ran it, and reported a failure."""
