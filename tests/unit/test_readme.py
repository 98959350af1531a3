"""The README stays true to the code: its configuration table lists exactly the settings."""

from __future__ import annotations

from luma_mcp.config import Settings


def test_the_readme_documents_every_setting_and_nothing_else() -> None:
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", readme, flags=re.MULTILINE))
    settings = {str(field.validation_alias) for field in Settings.model_fields.values()}
    assert documented == settings
