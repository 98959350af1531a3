"""Settings: read from the environment or a .env file, bounds checked, the token kept secret."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from luma_mcp.config import Settings


def test_settings_read_the_environment_and_check_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACEDATACLOUD_API_TOKEN", "from-env-123")
    monkeypatch.setenv("LUMA_DEFAULT_ASPECT_RATIO", "21:9")
    monkeypatch.setenv("LUMA_WAIT_SECONDS", "20")
    settings = Settings(_env_file=None)
    assert settings.api_token is not None and settings.api_token.get_secret_value() == "from-env-123"
    assert "from-env-123" not in repr(settings)
    assert (settings.default_aspect_ratio, settings.wait_seconds) == ("21:9", 20)
    monkeypatch.setenv("LUMA_WAIT_SECONDS", "80")
    with pytest.raises(ValidationError, match="LUMA_WAIT_SECONDS \\(80\\) is above LUMA_MAX_WAIT_SECONDS"):
        Settings(_env_file=None)
    monkeypatch.setenv("LUMA_DEFAULT_ASPECT_RATIO", "2:1")
    with pytest.raises(ValidationError):
        Settings(_env_file=None)


def test_settings_read_a_dot_env_file(tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACEDATACLOUD_API_TOKEN", raising=False)
    env_file = tmp_path / ".env"  # type: ignore[operator]
    env_file.write_text("ACEDATACLOUD_API_TOKEN=dotenv-token-1\nLUMA_MAX_WAIT_SECONDS=300\n")
    settings = Settings(_env_file=env_file)
    assert settings.api_token is not None and settings.api_token.get_secret_value() == "dotenv-token-1"
    assert settings.max_wait_seconds == 300
