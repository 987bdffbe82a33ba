"""One Settings object, read once from the environment by the CLI and handed down explicitly:
no module reads os.environ on its own.

The server's own knobs are the fields of `ServerSettings`; each upstream's key and URL
settings come from the upstream table (`core/upstreams.py`) and are added to it as
fields of `Settings`, so an upstream is declared in one place.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import AliasChoices, Field, PrivateAttr, SecretStr, ValidationInfo, create_model, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mcp_audio.core.upstreams import REMOTE, Upstream

# Toolsets group capability kinds the way users think of them (voice cloning belongs with speech).
TOOLSETS: dict[str, tuple[str, ...]] = {
    "tts": ("tts", "clone"),
    "stt": ("stt",),
    "music": ("music",),
    "sfx": ("sfx",),
    "edit": ("edit",),
    "post": ("post",),
}


def _default_data_dir() -> Path:
    import platformdirs  # imported lazily: only needed when no data dir is configured

    return Path(platformdirs.user_data_dir("mcp-audio", appauthor=False))


def _default_output_dir() -> Path:
    # A folder the user can find: ~/Music/mcp-audio where a Music folder exists, else ~/mcp-audio.
    music = Path.home() / "Music"
    return (music if music.is_dir() else Path.home()) / "mcp-audio"


# Folders never made readable by default, with everything in them (a working directory there
# is not a project folder the user chose).
SYSTEM_DIRS = tuple(
    Path(name)
    for name in (
        "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/proc", "/run", "/sbin", "/sys", "/usr",
        "/var", "/opt", "/srv", "/System", "/Library", "/Applications", "/Volumes",
        "C:/Windows", "C:/Program Files", "C:/Program Files (x86)", "C:/ProgramData",
    )
)  # fmt: skip


def too_broad(folder: Path) -> bool:
    """A file system root, the home folder or one above it, or a system folder."""
    real = folder.resolve()
    if real == Path(real.anchor) or Path.home().resolve().is_relative_to(real):
        return True
    return any(real.is_relative_to(path) for path in SYSTEM_DIRS)


def _shown(default: str) -> dict[str, Any]:
    """How the README shows a default that is computed at run time."""
    return {"shown_default": default}


class ServerSettings(BaseSettings):
    """Every knob of the server but the upstreams'. Environment names are fixed: users and tests rely on them."""

    model_config = SettingsConfigDict(env_prefix="MCP_AUDIO_", extra="ignore", populate_by_name=True)

    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="holds `jobs.sqlite3`: jobs and saved voices",
        json_schema_extra=_shown("the platform's user data dir (`~/.local/share/mcp-audio` on Linux)"),
    )
    output_dir: Path = Field(
        default_factory=_default_output_dir,
        description="folder for saved audio files",
        json_schema_extra=_shown("`~/Music/mcp-audio` (or `~/mcp-audio`)"),
    )
    wait_s: float = Field(45.0, ge=0, le=3600, description="how long a tool call waits before returning a job handle")
    allowed_dirs: str | None = Field(
        None,
        description="folders local input files may be read from (separated by `:` or `,`): over stdio when the "
        "client offers no MCP roots; over HTTP the only ones (client roots are never trusted there)",
        json_schema_extra=_shown(
            "over stdio, the working directory (unless it is `/`, the home folder or a system folder) and the "
            "output folder; over HTTP, none"
        ),
    )
    download: Literal["always", "never"] | None = Field(
        None,
        description="save output files under the output folder",
        json_schema_extra=_shown("`always` over stdio, `never` over HTTP"),
    )
    max_download_mb: float = Field(
        2048,
        gt=0,
        description="the largest output file saved locally, in MB; a larger one stays at its upstream URL and "
        "its result says why",
    )
    result_retention_s: float = Field(
        3600,
        gt=0,
        description="how long after its start a job's result stays recoverable upstream (fal keeps results "
        "about an hour): status and result outages are retried, across restarts, until then",
    )
    inline_max_kb: int | None = Field(
        None, ge=1, description="also return audio outputs up to this size inline as MCP audio content"
    )
    max_spend_usd: float | None = Field(
        None,
        ge=0,
        description="refuse a call whose estimated cost would take this server's running total (kept in the data "
        "dir, across restarts) past this many US dollars; a call the upstream refuses is not counted; calls whose "
        "cost cannot be estimated in advance are let through (paid tools with no published price only with "
        "MCP_AUDIO_CAP_UNPRICED=allow). Each HTTP token can have its own cap too (`tokens add --max-spend-usd`)",
    )
    cap_unpriced: Literal["refuse", "allow"] = Field(
        "refuse",
        description="a paid tool whose upstream publishes no price (its cost cannot be counted) while a spend cap "
        "applies to the caller (MCP_AUDIO_MAX_SPEND_USD or the token's own): `refuse` it, or `allow` it uncounted",
    )
    confirm_above_usd: float = Field(
        0.25,
        ge=0,
        description="ask the user (MCP form elicitation, where the client offers it) before starting a call whose "
        "estimated cost is above this many US dollars (0: every paid call); declined, nothing is sent. Clients "
        "without elicitation are not asked (the spend caps still apply)",
    )
    toolsets: str = Field(
        "all",
        description="expose a subset: a comma list of `tts` (speech and voice cloning), `stt`, `music`, `sfx`, "
        "`edit`, `post` (join, mix, master, trim, info, subtitles, provenance: local, no key); the job tools are "
        "always there. `dynamic`: tools/list starts with the job tools and `enable_toolset`, which adds a family at "
        "run time",
    )
    max_audio_s: float = Field(
        4 * 3600,
        gt=0,
        le=48 * 3600,
        description="the longest audio the local tools (join, mix, master, trim, info) read or write, in seconds, "
        "counted on the decoded samples as they come (a file's header is not trusted)",
    )
    max_renders_per_caller: int = Field(
        2,
        ge=1,
        le=64,
        description="how many local renders (join, mix, master, trim, info) of one caller run at once; more wait "
        "their turn, so one caller cannot take every render thread",
    )
    max_renders: int = Field(
        4,
        ge=1,
        le=32,
        description="how many local renders run at once in all (each in a worker thread of its own, apart from the "
        "threads the server's other work and `/healthz` use)",
    )

    database_url: SecretStr | None = Field(
        None,
        description="a `postgresql://user:password@host/db` URL: jobs, voices, tokens and spend go there instead of "
        "the data dir's SQLite file and token file, shared by every replica behind a load balancer (needs "
        "`psycopg[binary]`)",
    )
    database_pool: int = Field(
        10,
        ge=1,
        le=200,
        description="with `MCP_AUDIO_DATABASE_URL`: at most this many PostgreSQL connections per replica for "
        "its statements (one more listens for changes, one more renews its lease)",
    )
    fal_jwks_url: str = Field(
        "https://rest.alpha.fal.ai/.well-known/jwks.json",
        description="the key set fal signs webhooks with; with `MCP_AUDIO_PUBLIC_URL` set, fal jobs are submitted "
        "with a webhook to `{MCP_AUDIO_PUBLIC_URL}/webhooks/fal`, and a delivery no key verifies is refused",
    )
    http_stateless: bool = Field(
        False,
        description="HTTP mode: keep no 2025-era MCP sessions either (2026-era requests never have one), so behind a "
        "load balancer any replica answers any request without sticky sessions; server-initiated messages outside "
        "a request (resource subscriptions) are then not available to 2025-era clients",
    )
    output_url: str | None = Field(
        None,
        description="`s3://bucket/prefix`: saved output files go to this S3-compatible bucket instead of the output "
        "folder (every replica serves them; results carry presigned URLs; credentials from the usual AWS_* "
        "settings; needs `boto3`); files are then saved over HTTP too unless MCP_AUDIO_DOWNLOAD=never",
    )
    s3_endpoint_url: str | None = Field(
        None,
        description="the endpoint of an S3-compatible store other than AWS (MinIO, R2...), for MCP_AUDIO_OUTPUT_URL",
    )
    s3_url_expires_s: int = Field(
        604800, ge=1, le=604800, description="how long the presigned URL of a file in the bucket works, in seconds"
    )
    lease_s: float = Field(
        20.0,
        ge=1,
        le=3600,
        description="how long a job stays leased to the replica following it without a renewal (renewed every "
        "quarter of it): another replica takes a job over this long after its follower died",
    )

    public_url: str | None = Field(
        None,
        description="HTTP mode: the URL clients reach the server at, without `/mcp` (behind a reverse proxy, its "
        "`https://` address); its host is allowed and it names the OAuth protected resource",
        json_schema_extra=_shown("`http://HOST:PORT` of `serve --http`"),
    )
    allowed_hosts: str | None = Field(
        None,
        description="HTTP mode: comma list of `Host` header values accepted besides the public URL's, each `name` "
        "or `name:port`; any other host gets 421",
        json_schema_extra=_shown("loopback names on a loopback bind; else the public URL's host"),
    )
    allowed_origins: str | None = Field(
        None,
        description="HTTP mode: comma list of browser `Origin` values accepted, each `scheme://name[:port]`; a "
        "request with any other Origin gets 403 (requests without one are not browsers and pass)",
        json_schema_extra=_shown(
            "loopback origins on a loopback bind; else the public URL's origin; and the allowed hosts' origins"
        ),
    )
    oauth_issuer: str | None = Field(
        None,
        description="HTTP mode: the OAuth 2.1 authorization server whose JWT access tokens (RS256/ES256) are "
        "accepted; its metadata gives the keys. `https://` (`http://` only on loopback)",
    )
    oauth_audience: str | None = Field(
        None,
        description="HTTP mode: the `aud` an OAuth access token must carry",
        json_schema_extra=_shown("the public URL + `/mcp`"),
    )
    max_upload_mb: float = Field(
        100,
        gt=0,
        description="HTTP mode: the largest recording a caller may `POST` to `/uploads` (to use as a file input "
        "by the `upload://` reference it answers), in MB",
    )
    upload_quota_files: int = Field(
        50,
        ge=1,
        description="HTTP mode: the most uploads one caller may keep at once; past it `POST /uploads` answers 507 "
        "until older ones expire",
    )
    upload_quota_mb: float = Field(
        500,
        gt=0,
        description="HTTP mode: the most MB of uploads one caller may keep at once",
    )
    body_idle_s: float = Field(
        30.0,
        gt=0,
        description="HTTP mode: the longest wait for the next piece of a request body the server reads (an upload, "
        "a webhook); a body that stops coming is answered 408 and its connection freed",
    )
    production_keep_s: float = Field(
        7 * 24 * 3600.0,
        gt=0,
        description="how long a finished production's working files (its downloaded parts and music bed, under "
        "the data dir's productions/) are kept for redo_part, in seconds after it finished; then they are removed "
        "(at start-up and whenever a production ends) and a redo fetches each part again from its job's result",
    )
    upload_keep_s: float = Field(
        24 * 3600.0,
        gt=0,
        description="HTTP mode: how long an upload is kept, in seconds; a sweep removes expired ones every few minutes",
    )
    max_resource_mb: float = Field(
        4,
        gt=0,
        description="the largest saved file a `files://` resource read returns (it travels whole, base64, in one "
        "message, held until the client reads it); a larger one is refused with where to get it instead (over "
        "HTTP, `GET /files/JOB/NAME`, streamed, with range requests)",
    )
    allowed_fetch_hosts: str | None = Field(
        None,
        description="comma list of hosts (`name` or `name:port`) whose URLs are fetched as file inputs over `http` or "
        "on a private address; any other URL must be `https` on public addresses only",
        json_schema_extra=_shown("none: the configured upstream hosts only"),
    )
    rate_limit_per_minute: int | None = Field(
        None,
        ge=1,
        description="HTTP mode: the most tool calls one caller (token or OAuth user) may start per minute; more are "
        "refused with a message saying when to retry",
    )
    provenance: Literal["on", "off"] = Field(
        "on",
        description="`on`: every audio file the server saves carries C2PA Content Credentials (what made it, "
        "from what) and an AI-disclosure tag (see Provenance); `off`: files are saved as they come",
    )
    c2pa_cert: Path | None = Field(
        None,
        description="PEM certificate chain (signing certificate first) that signs the Content Credentials, with "
        "`MCP_AUDIO_C2PA_KEY`; for trusted credentials, a certificate from a CA on the C2PA trust list",
        json_schema_extra=_shown("a development certificate made once in the data dir (valid, not trusted)"),
    )
    c2pa_key: Path | None = Field(
        None,
        validate_default=True,
        description="the unencrypted PEM private key of `MCP_AUDIO_C2PA_CERT` (set both or neither)",
    )
    c2pa_trust_anchors: Path | None = Field(
        None,
        description="PEM root certificates `audio_provenance` trusts (e.g. the C2PA trust list); without them a "
        "signature is at best valid, never trusted",
    )
    metrics_public: bool = Field(
        False,
        description="HTTP mode: serve `GET /metrics` (Prometheus) without a token; by default it takes the same "
        "bearer token as `/mcp` whenever tokens or OAuth are on",
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="the server log on stderr: `text` lines, or `json`, one object a line (`ts`, `level`, `logger`, "
        "`message`, and `job_id`, `traceparent` when known)",
    )

    @field_validator("public_url", "oauth_issuer")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// URL, not {value[:80]!r}")
        return value.strip()

    @field_validator("provenance", mode="before")
    @classmethod
    def _on_off(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("c2pa_key")
    @classmethod
    def _cert_and_key(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if (value is None) != (info.data.get("c2pa_cert") is None):
            raise ValueError(
                "MCP_AUDIO_C2PA_CERT and MCP_AUDIO_C2PA_KEY must be set together (a PEM certificate chain and its "
                "private key), or neither (a development certificate is used)"
            )
        return value

    @field_validator("toolsets")
    @classmethod
    def _known_toolsets(cls, value: str) -> str:
        names = {name.strip() for name in value.split(",") if name.strip()}
        unknown = names - {*TOOLSETS, "all", "dynamic"}
        if unknown or not names or ("dynamic" in names and len(names) > 1):
            raise ValueError(
                f"unknown toolset(s) {sorted(unknown) or value!r}; "
                f"allowed: all, dynamic, or a comma list of {', '.join(TOOLSETS)}"
            )
        return ",".join(sorted(names))

    @property
    def enabled_kinds(self) -> set[str]:
        """Capability kinds of the enabled toolsets."""
        names = set(self.toolsets.split(","))
        # dynamic: every tool is served, tools/list shows the enabled families (mcp_audio/server/toolsets.py)
        chosen = TOOLSETS if names & {"all", "dynamic"} else {name: TOOLSETS[name] for name in names}
        return {kind for kinds in chosen.values() for kind in kinds}

    def input_roots(self, transport: str = "stdio") -> list[Path]:
        """Folders local input files may be read from when the client offers no MCP roots (and,
        over HTTP, always: a remote client's roots name its own machine, never this one)."""
        if self.allowed_dirs is not None:
            parts = self.allowed_dirs.replace(",", os.pathsep).split(os.pathsep)
            return [Path(part.strip()).expanduser() for part in parts if part.strip()]
        if transport != "stdio":
            return []  # over HTTP local paths are read only from MCP_AUDIO_ALLOWED_DIRS
        cwd = Path.cwd()
        # A desktop app may start us from / or the home folder: those never become readable.
        return [self.output_dir] if too_broad(cwd) else [cwd, self.output_dir]

    def downloads_for(self, transport: str) -> bool:
        if self.download is not None:
            return self.download == "always"
        # Over HTTP the client is usually on another machine, unless a bucket is there to hold the files.
        return transport == "stdio" or self.output_url is not None

    _tokens_dir: Path | None = PrivateAttr(default=None)

    @property
    def tokens_dir(self) -> Path:
        """Where the token file is: the data dir, also under `--sandbox` (whose jobs and files go to a
        folder of their own), so a server never starts open while tokens exist."""
        return self._tokens_dir or self.data_dir

    def with_data_dir(self, data_dir: Path, **update: Any) -> ServerSettings:
        """A copy keeping jobs and files in `data_dir`, and still this one's tokens."""
        copy = self.model_copy(update={"data_dir": data_dir, **update})
        copy._tokens_dir = self.tokens_dir
        return copy

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def database_path(self) -> Path:
        return self.data_dir / "jobs.sqlite3"

    def key_of(self, upstream: Upstream) -> str | None:
        if upstream.key_field is None:  # a local upstream needs none
            return None
        secret: SecretStr | None = getattr(self, upstream.key_field)
        return secret.get_secret_value() if secret is not None and secret.get_secret_value() else None

    def url_of(self, upstream: Upstream, param: str) -> str:
        """The configured value of one of `upstream`'s URL settings, by its provider parameter name."""
        setting = next(url for url in upstream.urls if url.param == param)
        return str(getattr(self, setting.field))

    def secrets(self) -> list[str]:
        """Every configured secret value, for redaction of anything we log or return."""
        keys = [key for upstream in REMOTE.values() if (key := self.key_of(upstream))]
        password = urlparse(self.database_url.get_secret_value()).password if self.database_url else None
        return keys + ([password] if password else [])


def _strip_slash(cls: Any, value: str) -> str:
    return value.rstrip("/")


def _upstream_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for upstream in REMOTE.values():
        assert upstream.key_field is not None and upstream.key_env is not None  # remote: keyed
        fields[upstream.key_field] = (
            SecretStr | None,
            Field(
                default=None,
                validation_alias=AliasChoices(upstream.key_env, f"MCP_AUDIO_{upstream.key_env}", upstream.key_field),
                description=upstream.key_description,
            ),
        )
        for url in upstream.urls:
            fields[url.field] = (
                str,
                Field(url.default, validation_alias=AliasChoices(url.env, url.field), description=url.description),
            )
    return fields


_URL_FIELDS = [url.field for upstream in REMOTE.values() for url in upstream.urls]

Settings: type[ServerSettings] = create_model(
    "Settings",
    __base__=ServerSettings,
    __validators__={"_strip_slash": field_validator(*_URL_FIELDS)(_strip_slash)},
    **_upstream_fields(),
)
Settings.__doc__ = "The server's settings, with each registered upstream's key and URLs."


def env_name(field: str) -> str:
    """The environment variable of a Settings field."""
    for upstream in REMOTE.values():
        if field == upstream.key_field and upstream.key_env is not None:
            return upstream.key_env
        for url in upstream.urls:
            if field == url.field:
                return url.env
    return f"MCP_AUDIO_{field.upper()}"


# Every setting's environment variable, for the README table, `doctor` and error messages.
ENV_NAMES = {field: env_name(field) for field in Settings.model_fields}


def settings_markdown() -> str:
    """The README's settings table, from the fields (a test keeps the README in sync)."""
    lines = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for name, info in Settings.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if "shown_default" in extra:
            default = str(extra["shown_default"])
        elif info.default is None:
            default = "none"
        else:
            value = info.default
            default = f"`{int(value) if isinstance(value, float) and value.is_integer() else value}`"
        lines.append(f"| `{ENV_NAMES[name]}` | {default} | {info.description} |")
    return "\n".join(lines) + "\n"
