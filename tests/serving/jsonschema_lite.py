"""Validate a JSON value against a JSON Schema: with the ``jsonschema`` package when it is
installed, else with this small checker of the keywords the seeds' schemas use (type,
properties, required, additionalProperties, items, minLength, minimum)."""

from __future__ import annotations

from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def errors(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """Every violation found, as ``path: what``; empty when ``value`` is valid."""
    expected = schema.get("type")
    if expected is not None:
        ok = isinstance(value, _TYPES[expected])
        if expected in ("integer", "number") and isinstance(value, bool):
            ok = False
        if not ok:
            return [f"{path}: expected {expected}, got {type(value).__name__}"]
    found: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        found += [f"{path}: missing {key}" for key in schema.get("required", []) if key not in value]
        for key, item in value.items():
            if key in properties:
                found += errors(item, properties[key], f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                found.append(f"{path}: unexpected {key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += errors(item, schema["items"], f"{path}[{i}]")
    if isinstance(value, str) and len(value) < schema.get("minLength", 0):
        found.append(f"{path}: shorter than {schema['minLength']}")
    if "minimum" in schema and isinstance(value, int | float) and value < schema["minimum"]:
        found.append(f"{path}: below {schema['minimum']}")
    return found


def validate(value: Any, schema: dict[str, Any]) -> None:
    """Raise ``AssertionError`` listing the violations."""
    try:
        import jsonschema  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        problems = errors(value, schema)
        assert not problems, problems
    else:
        jsonschema.validate(value, schema)
