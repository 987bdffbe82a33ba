"""One Settings object, read once from the environment (and an optional .env file) by the CLI
and handed down explicitly: no module reads os.environ on its own."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Toolsets group capability kinds the way users think of them (voice cloning belongs with speech).
TOOLSETS: dict[str, tuple[str, ...]] = {
    "tts": ("tts", "clone"),
    "stt": ("stt",),
    "music": ("music",),
    "sfx": ("sfx",),
    "edit": ("edit",),
}


def _default_data_dir() -> Path:
    import platformdirs  # imported lazily: only needed when no data dir is configured

    return Path(platformdirs.user_data_dir("mcp-audio", appauthor=False))


def _default_output_dir() -> Path:
    # A folder the user can find: ~/Music/mcp-audio where a Music folder exists, else ~/mcp-audio.
    music = Path.home() / "Music"
    return (music if music.is_dir() else Path.home()) / "mcp-audio"


class Settings(BaseSettings):
    """Every knob of the server. Environment names are fixed: users and tests rely on them."""

    model_config = SettingsConfigDict(env_prefix="MCP_AUDIO_", extra="ignore", populate_by_name=True)

    fal_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("FAL_KEY", "MCP_AUDIO_FAL_KEY"),
        description="fal.ai API key (FAL_KEY).",
    )
    fal_queue_url: str = Field("https://queue.fal.run", description="fal queue base URL.")
    fal_run_url: str = Field("https://fal.run", description="fal run base URL (streaming endpoints).")
    fal_rest_url: str = Field("https://rest.fal.ai", description="fal REST base URL (storage tokens).")
    fal_cdn_url: str = Field("https://v3.fal.media", description="fal CDN base URL (uploads).")
    voice_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("VOICE_API_KEY", "MCP_AUDIO_VOICE_API_KEY"),
        description="Voice API key (VOICE_API_KEY), sent as the marketplace key header.",
    )
    voice_api_url: str = Field("https://voice-api.p.rapidapi.com", description="Voice API base URL.")
    voice_api_host: str = Field("voice-api.p.rapidapi.com", description="Voice API marketplace host header.")
    eigen_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("EIGEN_API_KEY", "MCP_AUDIO_EIGEN_API_KEY"),
        description="Eigen AI API key (EIGEN_API_KEY).",
    )
    eigen_url: str = Field("https://api-web.eigenai.com", description="Eigen AI base URL.")
    data_dir: Path = Field(default_factory=_default_data_dir, description="Folder of the job database.")
    output_dir: Path = Field(default_factory=_default_output_dir, description="Folder for saved audio files.")
    wait_s: float = Field(45.0, ge=0, le=3600, description="How long a tool call waits before returning a job handle.")
    allowed_dirs: str | None = Field(
        None, description="Folders local input files may come from (os.pathsep- or comma-separated)."
    )
    download: Literal["always", "never"] | None = Field(
        None, description="Save output files locally (default: always over stdio, never over HTTP)."
    )
    inline_max_kb: int | None = Field(None, ge=1, description="Also inline audio outputs up to this size.")
    max_spend_usd: float | None = Field(None, ge=0, description="Refuse calls past this estimated spend.")
    toolsets: str = Field("all", description="Comma-separated toolsets to expose.")

    @field_validator("toolsets")
    @classmethod
    def _known_toolsets(cls, value: str) -> str:
        names = {name.strip() for name in value.split(",") if name.strip()}
        unknown = names - {*TOOLSETS, "all"}
        if unknown or not names:
            raise ValueError(
                f"unknown toolset(s) {sorted(unknown) or value!r}; "
                f"allowed: all, or a comma list of {', '.join(TOOLSETS)}"
            )
        return ",".join(sorted(names))

    @property
    def enabled_kinds(self) -> set[str]:
        """Capability kinds of the enabled toolsets."""
        names = set(self.toolsets.split(","))
        chosen = TOOLSETS if "all" in names else {name: TOOLSETS[name] for name in names}
        return {kind for kinds in chosen.values() for kind in kinds}

    @field_validator("fal_queue_url", "fal_run_url", "fal_rest_url", "fal_cdn_url", "voice_api_url", "eigen_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    def input_roots(self) -> list[Path]:
        """Folders local input files may be read from when the client offers no MCP roots."""
        if self.allowed_dirs is None:
            return [Path.cwd(), self.output_dir]
        parts = self.allowed_dirs.replace(",", os.pathsep).split(os.pathsep)
        return [Path(part.strip()).expanduser() for part in parts if part.strip()]

    def downloads_for(self, transport: str) -> bool:
        if self.download is not None:
            return self.download == "always"
        return transport == "stdio"  # over HTTP the client is usually on another machine

    @property
    def database_path(self) -> Path:
        return self.data_dir / "jobs.sqlite3"

    def secrets(self) -> list[str]:
        """Every configured secret value, for redaction of anything we log or return."""
        keys = (self.fal_key, self.voice_api_key, self.eigen_api_key)
        return [s.get_secret_value() for s in keys if s is not None and s.get_secret_value()]


# Documentation of the settings, used by the README generator and `mcp-audio doctor`.
ENV_NAMES = {
    "fal_key": "FAL_KEY",
    "fal_queue_url": "MCP_AUDIO_FAL_QUEUE_URL",
    "fal_run_url": "MCP_AUDIO_FAL_RUN_URL",
    "fal_rest_url": "MCP_AUDIO_FAL_REST_URL",
    "fal_cdn_url": "MCP_AUDIO_FAL_CDN_URL",
    "voice_api_key": "VOICE_API_KEY",
    "voice_api_url": "MCP_AUDIO_VOICE_API_URL",
    "voice_api_host": "MCP_AUDIO_VOICE_API_HOST",
    "eigen_api_key": "EIGEN_API_KEY",
    "eigen_url": "MCP_AUDIO_EIGEN_URL",
    "data_dir": "MCP_AUDIO_DATA_DIR",
    "output_dir": "MCP_AUDIO_OUTPUT_DIR",
    "wait_s": "MCP_AUDIO_WAIT_S",
    "allowed_dirs": "MCP_AUDIO_ALLOWED_DIRS",
    "download": "MCP_AUDIO_DOWNLOAD",
    "inline_max_kb": "MCP_AUDIO_INLINE_MAX_KB",
    "max_spend_usd": "MCP_AUDIO_MAX_SPEND_USD",
    "toolsets": "MCP_AUDIO_TOOLSETS",
}
