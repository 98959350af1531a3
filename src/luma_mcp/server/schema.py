"""Compact JSON schemas for tools/list: every byte there is read by the model each session.

Pydantic's schemas carry a generated `title` on every property, spell an optional
argument as `anyOf: [X, null]` with `default: null`, and put nested models in `$defs`.
None of that tells the model anything (leaving an argument out means null), so titles are
dropped, optionals folded and definitions inlined. Meaning, bounds, enums, defaults and
descriptions stay.
"""

from __future__ import annotations

from typing import Any


def compact_schema(schema: Any) -> Any:
    if isinstance(schema, dict) and "$defs" in schema:
        definitions = schema["$defs"]
        schema = _inline({k: v for k, v in schema.items() if k != "$defs"}, definitions)
    return _compact(schema)


def _inline(node: Any, definitions: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """Replace `{"$ref": "#/$defs/X"}` by X itself (our models are not recursive)."""
    if isinstance(node, list):
        return [_inline(item, definitions, seen) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        name = ref.removeprefix("#/$defs/")
        if name in seen:
            raise ValueError(f"recursive schema at {name}: cannot inline")
        target = _inline(definitions[name], definitions, (*seen, name))
        return {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return {key: _inline(value, definitions, seen) for key, value in node.items()}


def _compact(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_compact(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" and isinstance(value, str):
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: _compact(sub) for name, sub in value.items()}  # names, not keywords
        else:
            out[key] = _compact(value)
    variants = out.get("anyOf")
    if isinstance(variants, list) and len(variants) == 2 and {"type": "null"} in variants:
        (inner,) = [v for v in variants if v != {"type": "null"}]
        merged = {**inner, **{k: v for k, v in out.items() if k != "anyOf"}}
        if merged.get("default", 0) is None:
            del merged["default"]
        return merged
    return out
