"""The docs stay true to the code: docs/configuration.md's table lists exactly the settings."""

from __future__ import annotations

from luma_mcp.config import Settings


def test_the_configuration_page_documents_every_setting_and_nothing_else() -> None:
    import re
    from pathlib import Path

    page = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", page, flags=re.MULTILINE))
    settings = {str(field.validation_alias) for field in Settings.model_fields.values()}
    assert documented == settings
