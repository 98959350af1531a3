"""Configuration, read once from the environment (and an optional `.env` file).

Every field here is read somewhere; docs/configuration.md's table lists them all (tests/unit/test_readme.py).
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from luma_mcp.checks.bearer import MAX_BEARER_LENGTH, acceptable_bearer

AspectRatio = Literal["16:9", "9:16", "1:1", "4:3", "3:4", "21:9", "9:21"]
ASPECT_RATIOS: tuple[AspectRatio, ...] = ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9", "9:21")

TOKEN_ENV = "ACEDATACLOUD_API_TOKEN"  # noqa: S105 (a variable name, not a secret)


def split_list(value: str) -> list[str]:
    """A comma-separated setting as a list, blanks dropped."""
    return [item.strip() for item in value.split(",") if item.strip()]


class SettingsError(ValueError):
    """A setting that cannot work; the message names it and says what to change."""


MAX_KEYS_FILE_BYTES = 1_000_000
# A Content-Security-Policy host source: scheme, host (a leading *. allowed), optional port.
_MEDIA_ORIGIN = re.compile(r"https?://(\*\.)?[A-Za-z0-9.-]+(:[0-9]{1,5})?")
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]{0,63}")  # RFC 3986 §3.1, lower-cased


def _read_keys_file(path: Path) -> list[str]:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_KEYS_FILE_BYTES + 1)
    except OSError as exc:
        raise SettingsError(
            f"LUMA_MCP_API_KEYS_FILE ({path}) cannot be read: {exc.strerror or exc}. "
            "Point it at a readable file with one access key per line."
        ) from None
    if len(data) > MAX_KEYS_FILE_BYTES:
        raise SettingsError(f"LUMA_MCP_API_KEYS_FILE ({path}) is over 1 MB: is it the right file?")
    try:
        # utf-8-sig: a byte order mark (as some editors write) is not part of the first key.
        return data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise SettingsError(f"LUMA_MCP_API_KEYS_FILE ({path}) is not UTF-8 text: save it as UTF-8.") from None


NEW_OAUTH_KEY_COMMAND = "python3 -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())'"


def _is_fernet_key(key: str) -> bool:
    """A Fernet key: 32 bytes in url-safe base64 (checked here without importing cryptography)."""
    try:
        return len(base64.urlsafe_b64decode(key.encode("ascii"))) == 32 and len(key) == 44
    except (ValueError, UnicodeEncodeError):
        return False


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
    download_reserve_mb: float = Field(default=256, ge=0, validation_alias="LUMA_DOWNLOAD_RESERVE_MB")
    # Over HTTP a saved file lands on the server, not with the caller: off unless turned on.
    http_downloads: bool = Field(default=False, validation_alias="LUMA_HTTP_DOWNLOADS")
    http_download_quota_mb: float = Field(default=2048, gt=0, validation_alias="LUMA_HTTP_DOWNLOAD_QUOTA_MB")
    http_download_quota_files: int = Field(default=100, ge=1, validation_alias="LUMA_HTTP_DOWNLOAD_QUOTA_FILES")

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
    # The provider POSTs each finished video to LUMA_MCP_PUBLIC_URL/callbacks/luma/<secret> (hosting.callbacks).
    callbacks: bool = Field(default=True, validation_alias="LUMA_MCP_CALLBACKS")
    # What one caller (and all of them) may make the HTTP server hold.
    max_sessions: int = Field(default=1000, ge=1, validation_alias="LUMA_MCP_MAX_SESSIONS")
    max_sessions_per_tenant: int = Field(default=100, ge=1, validation_alias="LUMA_MCP_MAX_SESSIONS_PER_TENANT")
    session_idle_seconds: float = Field(default=1800, gt=0, validation_alias="LUMA_MCP_SESSION_IDLE_SECONDS")
    unused_session_seconds: float = Field(default=60, gt=0, validation_alias="LUMA_MCP_UNUSED_SESSION_SECONDS")
    # Requests in flight at /mcp (luma_mcp.hosting.inflight); per tenant, None: a tenth of LUMA_MCP_MAX_CONNECTIONS.
    max_requests_per_tenant: int | None = Field(default=None, ge=1, validation_alias="LUMA_MCP_MAX_REQUESTS_PER_TENANT")
    max_requests_per_session: int = Field(default=8, ge=1, validation_alias="LUMA_MCP_MAX_REQUESTS_PER_SESSION")
    # Passthrough: how often tokens not seen before are checked with the API, and for how long a verdict holds.
    token_checks_per_second: float = Field(default=5, gt=0, validation_alias="LUMA_MCP_TOKEN_CHECKS_PER_SECOND")
    token_checks_per_address: float = Field(
        default=1, gt=0, validation_alias="LUMA_MCP_TOKEN_CHECKS_PER_ADDRESS_PER_SECOND"
    )
    token_cache_seconds: float = Field(default=600, gt=0, validation_alias="LUMA_MCP_TOKEN_CACHE_SECONDS")
    token_cache_size: int = Field(default=10_000, ge=1, validation_alias="LUMA_MCP_TOKEN_CACHE_SIZE")
    # What slow or numerous clients can hold (luma_mcp.hosting.limits).
    http_max_connections: int = Field(default=1000, ge=16, le=100_000, validation_alias="LUMA_MCP_MAX_CONNECTIONS")
    http_read_timeout: int = Field(default=10, ge=1, le=300, validation_alias="LUMA_MCP_READ_TIMEOUT_SECONDS")
    http_keep_alive: int = Field(default=5, ge=1, le=300, validation_alias="LUMA_MCP_KEEP_ALIVE_SECONDS")

    # OAuth sign-in for web connectors (luma_mcp.oauth): people prove what LUMA_MCP_AUTH asks for.
    oauth: bool = Field(default=False, validation_alias="LUMA_MCP_OAUTH")
    oauth_key: SecretStr | None = Field(default=None, validation_alias="LUMA_MCP_OAUTH_KEY")
    oauth_access_seconds: int = Field(default=3600, ge=60, le=86_400, validation_alias="LUMA_MCP_OAUTH_ACCESS_SECONDS")
    oauth_grant_days: float = Field(default=30, gt=0, le=365, validation_alias="LUMA_MCP_OAUTH_GRANT_DAYS")
    oauth_max_clients: int = Field(default=10_000, ge=1, validation_alias="LUMA_MCP_OAUTH_MAX_CLIENTS")
    # Redirect schemes without a period that apps may register (Cursor's predates RFC 8252's reverse-domain advice).
    oauth_app_schemes: str = Field(default="cursor", validation_alias="LUMA_MCP_OAUTH_APP_SCHEMES")

    # The player view (MCP Apps) may load media only from these origins, and the API's own.
    media_domains: str = Field(
        default="https://platform.cdn.acedata.cloud,https://cdn.acedata.cloud,https://storage.cdn-luma.com",
        validation_alias="LUMA_MEDIA_DOMAINS",
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", validation_alias="LUMA_LOG_LEVEL")

    def access_keys(self) -> list[str]:
        """The keys HTTP clients may present: LUMA_MCP_API_KEYS and the lines of LUMA_MCP_API_KEYS_FILE.

        Raises `SettingsError` (a ValueError, so a validation error at start) when the file
        cannot be read or a key could never arrive as a bearer token.
        """
        keys = (
            [("LUMA_MCP_API_KEYS", key) for key in split_list(self.api_keys.get_secret_value())]
            if self.api_keys
            else []
        )
        if self.api_keys_file is not None:
            lines = _read_keys_file(self.api_keys_file)
            keys += [
                (f"LUMA_MCP_API_KEYS_FILE line {number}", line.strip())
                for number, line in enumerate(lines, start=1)
                if line.strip() and not line.lstrip().startswith("#")
            ]
        for source, key in keys:
            # The edge refuses any other bearer (`bearer`): such a key could never match.
            if not acceptable_bearer(key):
                raise SettingsError(
                    f"The access key at {source} has a space, control or non-ASCII character, or is over "
                    f"{MAX_BEARER_LENGTH} characters, so no client could ever send it as a bearer token: use "
                    "letters, digits and punctuation only."
                )
        if not keys and (self.api_keys is not None or self.api_keys_file is not None):
            where = "LUMA_MCP_API_KEYS_FILE" if self.api_keys_file is not None else "LUMA_MCP_API_KEYS"
            raise SettingsError(
                f"{where} is set but holds no access key (only blanks or # comments): add one key per line, "
                "or unset it to serve loopback only."
            )
        return [key for _, key in keys]

    def oauth_keys(self) -> list[str]:
        """The server keys of LUMA_MCP_OAUTH_KEY: the first seals, every one opens (rotation)."""
        return split_list(self.oauth_key.get_secret_value()) if self.oauth_key else []

    def oauth_app_scheme_set(self) -> frozenset[str]:
        """LUMA_MCP_OAUTH_APP_SCHEMES, lower-cased (as URLs carry schemes)."""
        return frozenset(scheme.lower() for scheme in split_list(self.oauth_app_schemes))

    def _check_oauth(self) -> None:
        if self.auth_mode is None:
            raise ValueError(
                "LUMA_MCP_OAUTH=true needs LUMA_MCP_AUTH=passthrough (people sign in with their own Ace Data Cloud "
                "token) or access keys (LUMA_MCP_API_KEYS: people sign in with a key you gave them)"
            )
        keys = self.oauth_keys()
        if not keys:
            raise ValueError(
                "LUMA_MCP_OAUTH=true needs LUMA_MCP_OAUTH_KEY, the key that seals sign-ins (and, with "
                f"passthrough, people's API tokens) at rest. Make one with: {NEW_OAUTH_KEY_COMMAND}"
            )
        for scheme in self.oauth_app_scheme_set():
            if not _SCHEME.fullmatch(scheme) or scheme in ("http", "https"):
                raise ValueError(
                    f"LUMA_MCP_OAUTH_APP_SCHEMES has {scheme!r}, which is not an app's URL scheme: give scheme names "
                    "such as cursor, comma-separated, without a colon"
                )
        for number, key in enumerate(keys, start=1):
            if not _is_fernet_key(key):
                raise ValueError(
                    f"LUMA_MCP_OAUTH_KEY's key number {number} is not a key of the right form (32 bytes, url-safe "
                    f"base64): make one with: {NEW_OAUTH_KEY_COMMAND}"
                )

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
        has_keys = self.api_keys is not None or self.api_keys_file is not None
        if self.http_auth == "passthrough" and has_keys:
            raise ValueError(
                "LUMA_MCP_AUTH=passthrough takes each caller's own Ace Data Cloud token and would ignore the "
                "access keys in LUMA_MCP_API_KEYS / LUMA_MCP_API_KEYS_FILE: unset the keys, or set "
                "LUMA_MCP_AUTH=keys to require them."
            )
        if has_keys:
            self.access_keys()  # an unreadable file or unusable key stops the start, with its reason
        for domain in split_list(self.media_domains):
            if not _MEDIA_ORIGIN.fullmatch(domain):
                raise ValueError(
                    f"LUMA_MEDIA_DOMAINS has {domain!r}, which is not an origin: give each as https://host "
                    "(or https://*.host, or with a :port), comma-separated, with no path"
                )
        if self.oauth:
            self._check_oauth()
        if self.poll_initial_seconds > self.poll_max_seconds:
            raise ValueError("LUMA_POLL_INITIAL_SECONDS must not exceed LUMA_POLL_MAX_SECONDS")
        return self
