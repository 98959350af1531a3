"""Configuration, read once from the environment (and an optional `.env` file).

Every field here is read somewhere; the README's configuration table lists them all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

AspectRatio = Literal["16:9", "9:16", "1:1", "4:3", "3:4", "21:9", "9:21"]
ASPECT_RATIOS: tuple[AspectRatio, ...] = ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9", "9:21")

TOKEN_ENV = "ACEDATACLOUD_API_TOKEN"  # noqa: S105 (a variable name, not a secret)


def split_list(value: str) -> list[str]:
    """A comma-separated setting as a list, blanks dropped."""
    return [item.strip() for item in value.split(",") if item.strip()]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    api_token: SecretStr | None = Field(default=None, validation_alias=TOKEN_ENV)
    api_base_url: str = Field(default="https://api.acedata.cloud", validation_alias="ACEDATACLOUD_API_BASE_URL")

    request_timeout: float = Field(default=30.0, gt=0, le=600, validation_alias="LUMA_REQUEST_TIMEOUT")
    default_aspect_ratio: AspectRatio = Field(default="16:9", validation_alias="LUMA_DEFAULT_ASPECT_RATIO")

    # Waiting inside one tool call. The defaults keep a call under the ~60 s most hosts allow.
    wait_seconds: int = Field(default=45, ge=0, validation_alias="LUMA_WAIT_SECONDS")
    max_wait_seconds: int = Field(default=50, ge=0, le=3600, validation_alias="LUMA_MAX_WAIT_SECONDS")
    poll_initial_seconds: float = Field(default=5.0, ge=1.0, validation_alias="LUMA_POLL_INITIAL_SECONDS")
    poll_max_seconds: float = Field(default=15.0, ge=1.0, validation_alias="LUMA_POLL_MAX_SECONDS")
    progress_interval_seconds: float = Field(
        default=4.0, gt=0, le=5.0, validation_alias="LUMA_PROGRESS_INTERVAL_SECONDS"
    )

    # Retries of task reads (never of submits that may have reached the server).
    max_retries: int = Field(default=4, ge=0, le=10, validation_alias="LUMA_MAX_RETRIES")
    retry_backoff_seconds: float = Field(default=1.0, ge=0, le=60, validation_alias="LUMA_RETRY_BACKOFF_SECONDS")
    retry_max_seconds: float = Field(default=20.0, ge=0, le=300, validation_alias="LUMA_RETRY_MAX_SECONDS")

    # The ledger and downloads (per-user folders: ~/.local/share and ~/Videos on Linux).
    ledger_path: Path = Field(
        default_factory=lambda: platformdirs.user_data_path("luma-mcp") / "ledger.sqlite3",
        validation_alias="LUMA_LEDGER_PATH",
    )
    download_dir: Path = Field(
        default_factory=lambda: platformdirs.user_videos_path() / "luma-mcp", validation_alias="LUMA_DOWNLOAD_DIR"
    )
    ledger_url: SecretStr | None = Field(default=None, validation_alias="LUMA_LEDGER_URL")
    max_download_mb: float = Field(default=512, gt=0, validation_alias="LUMA_MAX_DOWNLOAD_MB")

    # Paying once: an identical request within this window returns the earlier task.
    dedupe_window_seconds: int = Field(default=300, ge=0, validation_alias="LUMA_DEDUPE_WINDOW_SECONDS")
    max_submits_per_hour: int | None = Field(default=None, ge=1, validation_alias="LUMA_MAX_SUBMITS_PER_HOUR")
    max_submits_per_day: int | None = Field(default=None, ge=1, validation_alias="LUMA_MAX_SUBMITS_PER_DAY")

    # Serving over HTTP (luma-mcp --transport http).
    http_auth: Literal["keys", "passthrough"] | None = Field(default=None, validation_alias="LUMA_MCP_AUTH")
    api_keys: SecretStr | None = Field(default=None, validation_alias="LUMA_MCP_API_KEYS")
    api_keys_file: Path | None = Field(default=None, validation_alias="LUMA_MCP_API_KEYS_FILE")
    public_url: str | None = Field(default=None, validation_alias="LUMA_MCP_PUBLIC_URL")
    allowed_hosts: str = Field(default="", validation_alias="LUMA_MCP_ALLOWED_HOSTS")
    allowed_origins: str = Field(default="", validation_alias="LUMA_MCP_ALLOWED_ORIGINS")
    cors_origins: str = Field(default="", validation_alias="LUMA_MCP_CORS_ORIGINS")
    # What slow or numerous clients can hold (luma_mcp.http_limits).
    http_max_connections: int = Field(default=1000, ge=16, le=100_000, validation_alias="LUMA_MCP_MAX_CONNECTIONS")
    http_read_timeout: int = Field(default=10, ge=1, le=300, validation_alias="LUMA_MCP_READ_TIMEOUT_SECONDS")
    http_keep_alive: int = Field(default=5, ge=1, le=300, validation_alias="LUMA_MCP_KEEP_ALIVE_SECONDS")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", validation_alias="LUMA_LOG_LEVEL")

    def access_keys(self) -> list[str]:
        """The keys HTTP clients may present: LUMA_MCP_API_KEYS and the lines of LUMA_MCP_API_KEYS_FILE."""
        keys = split_list(self.api_keys.get_secret_value()) if self.api_keys else []
        if self.api_keys_file is not None:
            lines = self.api_keys_file.read_text().splitlines()
            keys += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        return keys

    @property
    def auth_mode(self) -> Literal["keys", "passthrough"] | None:
        if self.http_auth is not None:
            return self.http_auth
        return "keys" if self.api_keys is not None or self.api_keys_file is not None else None

    @model_validator(mode="after")
    def _check_bounds(self) -> Settings:
        if self.wait_seconds > self.max_wait_seconds:
            raise ValueError(
                f"LUMA_WAIT_SECONDS ({self.wait_seconds}) is above LUMA_MAX_WAIT_SECONDS "
                f"({self.max_wait_seconds}): lower the first or raise the second"
            )
        if self.http_auth == "keys" and self.api_keys is None and self.api_keys_file is None:
            raise ValueError("LUMA_MCP_AUTH=keys needs LUMA_MCP_API_KEYS or LUMA_MCP_API_KEYS_FILE")
        if self.poll_initial_seconds > self.poll_max_seconds:
            raise ValueError("LUMA_POLL_INITIAL_SECONDS must not exceed LUMA_POLL_MAX_SECONDS")
        return self
