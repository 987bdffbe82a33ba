"""The exception tree of mcp-audio.

    McpAudioError                 anything this package raises on purpose
    ├── ConfigError               a setting is missing or wrong (names the env variable)
    ├── ManifestError             a manifest file is invalid (lists every problem, file and field)
    ├── InvalidArguments          a tool call's arguments are wrong (names field, value, what is allowed)
    ├── JobNotFound               no job with that id
    ├── KeyInUse                  an idempotency key already names a job (the store says which)
    ├── SpendLimitExceeded        the call would pass MCP_AUDIO_MAX_SPEND_USD
    └── UpstreamError             an upstream said no, or could not be reached
        ├── AuthenticationFailed  401/403: the key was rejected (named by variable, never echoed)
        ├── UpstreamRejected      422 and other 4xx: the upstream's own field messages
        ├── UpstreamUnavailable   429/5xx/transport errors that outlasted the retries
        ├── UpstreamBadAnswer     a 2xx whose body is not what the protocol promises
        └── UpstreamJobFailed     the job ran and failed upstream

Every UpstreamError carries its facts as fields (which upstream, HTTP status, how many
attempts were made, whether the upstream may have run and billed the request) and builds its
message from them. Upstream errors are translated at the provider edge (`raise ... from exc`),
so nothing above the providers sees an httpx exception.
"""

from __future__ import annotations

# Ends the message of a request that was sent but got no usable answer: resending could bill twice.
RESENDING_MAY_BILL = "It was not resent, since the request may have run (and been billed)."
NOT_RESENT = "; " + RESENDING_MAY_BILL[0].lower() + RESENDING_MAY_BILL[1:]


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


class KeyInUse(McpAudioError):
    """A caller's idempotency key already names a job (`job_id`), made by a call that asked
    `request_hash`: the store refuses to make a second job for it."""

    def __init__(self, key: str, job_id: str, request_hash: str) -> None:
        self.key, self.job_id, self.request_hash = key, job_id, request_hash
        super().__init__(f"idempotency key {key!r} already names job {job_id}")


class SpendLimitExceeded(McpAudioError):
    """The call would take the server's spend past its limit."""


class UpstreamError(McpAudioError):
    """An upstream call failed.

    provider: how messages name the upstream ("fal", "Voice API", "Eigen AI").
    status: the HTTP status, when an answer came.
    attempts: how many times the request was sent.
    may_have_run: the upstream may have run (and billed) the request although no usable
        answer came back, so sending it again could bill twice.
    detail: the upstream's own words, or what went wrong on the way.
    """

    def __init__(
        self,
        detail: str,
        *,
        provider: str,
        status: int | None = None,
        attempts: int = 1,
        may_have_run: bool = False,
    ) -> None:
        self.detail = detail
        self.provider = provider
        self.status = status
        self.attempts = attempts
        self.may_have_run = may_have_run
        super().__init__(self.describe())

    def describe(self) -> str:
        return self.detail

    @property
    def status_code(self) -> int | None:
        return self.status


class AuthenticationFailed(UpstreamError):
    """The upstream rejected the API key (401/403). `detail` names the key's variable."""

    def describe(self) -> str:
        return (
            f"{self.provider} rejected the API key (HTTP {self.status}). "
            f"Check that {self.detail} holds a valid, active key."
        )


class UpstreamRejected(UpstreamError):
    """The upstream rejected the request itself (422 or another 4xx)."""

    def describe(self) -> str:
        if self.status == 422:
            return f"{self.provider} rejected the input:\n{self.detail}"
        if self.status is None:
            return self.detail
        return f"{self.provider} answered HTTP {self.status}: {self.detail}"


class UpstreamUnavailable(UpstreamError):
    """Rate limits, server errors or network trouble that outlasted the retries."""

    def __init__(self, detail: str, *, error_type: str = "", **fields: object) -> None:
        self.error_type = error_type  # fal's X-Fal-Error-Type, when it sent one
        super().__init__(detail, **fields)  # type: ignore[arg-type]

    def describe(self) -> str:
        kind = f", {self.error_type}" if self.error_type else ""
        if self.status is None:  # no answer: `detail` says what happened to the request
            glue = "" if self.detail.startswith("'") else " "
            text = f"{self.provider}{glue}{self.detail}"
            return text + (NOT_RESENT if self.may_have_run else "")
        if self.may_have_run:
            return f"{self.provider} failed (HTTP {self.status}{kind}): {self.detail}. {RESENDING_MAY_BILL}"
        return (
            f"{self.provider} is unavailable (HTTP {self.status}{kind}): {self.detail}. "
            "Retries were exhausted; try again later."
        )


class UpstreamBadAnswer(UpstreamError):
    """A 2xx answer whose body is not what the upstream's protocol promises."""

    def describe(self) -> str:
        return f"{self.provider} {self.detail}"


class UpstreamJobFailed(UpstreamError):
    """The upstream accepted the job, ran it, and reported a failure."""
