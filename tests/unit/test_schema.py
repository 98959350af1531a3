"""Schema compaction: what the tools/list bytes are made of."""

from __future__ import annotations

from luma_mcp.server.schema import compact_schema


def test_compact_schema_folds_optionals_drops_titles_and_inlines_defs() -> None:
    schema = {
        "$defs": {"Status": {"enum": ["a", "b"], "title": "Status", "type": "string"}},
        "properties": {
            "title": {"title": "Title", "type": "string"},  # a property named "title" survives
            "maybe": {"anyOf": [{"type": "string", "maxLength": 5}, {"type": "null"}], "default": None, "title": "M"},
            "status": {"$ref": "#/$defs/Status"},
        },
        "title": "Model",
        "type": "object",
    }
    assert compact_schema(schema) == {
        "properties": {
            "title": {"type": "string"},
            "maybe": {"type": "string", "maxLength": 5},
            "status": {"enum": ["a", "b"], "type": "string"},
        },
        "type": "object",
    }
