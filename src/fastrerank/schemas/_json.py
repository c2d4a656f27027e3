"""Decoding request bodies as strict JSON, with errors that name the offending field.

pydantic's JSON parser does the work: it rejects NaN, Infinity and lone-surrogate escapes and
keeps the last of duplicate keys. When it refuses a body, the standard library's lax parser
is used only to find *where* the refused constant or surrogate sits, so the 400 can name the
field (``top_n: NaN is not a valid JSON value``) instead of a column number. That search is
bounded: a body over 256 KiB, or one with more than 10,000 values before the culprit, gets
the parser's line and column instead, so a hostile body costs no more than a valid one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import pydantic_core

from fastrerank.errors import SchemaError, describe_value, shorten

__all__ = ["loads_object", "show_json"]

_EXPLAIN_MAX_BYTES = 256 * 1024
_EXPLAIN_MAX_VALUES = 10_000


class _Constant:
    """A NaN / Infinity / -Infinity found by the lax parser."""

    def __init__(self, name: str) -> None:
        self.name = name


def loads_object(body: str | bytes | bytearray) -> Mapping[str, Any]:
    """Parse ``body`` as a JSON object; :class:`SchemaError` (400) otherwise."""
    try:
        data = pydantic_core.from_json(body, allow_inf_nan=False)
    except ValueError as err:
        raise _explain(body, err) from err
    if not isinstance(data, dict):
        raise SchemaError(f"body must be a JSON object, got {json_type(data)}")
    return data


def json_type(value: object) -> str:
    """The JSON name of a decoded value's type."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def show_json(value: object) -> str:
    """``value`` as JSON (``true``, ``"3"``), cut to 80 characters, for error messages."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=True)
    except (TypeError, ValueError):
        return describe_value(value)
    return shorten(text)


def _explain(body: str | bytes | bytearray, err: ValueError) -> SchemaError:
    if len(body) > _EXPLAIN_MAX_BYTES:
        return SchemaError(f"body is not valid JSON: {err}")
    try:
        lax = json.loads(body, parse_constant=_Constant)
    except (ValueError, RecursionError):
        return SchemaError(f"body is not valid JSON: {err}")
    for seen, (path, value) in enumerate(_walk(lax, ())):
        if seen >= _EXPLAIN_MAX_VALUES:
            break
        field = ".".join(path) or None
        where = shorten(field) if field else "body"
        if isinstance(value, _Constant):
            return SchemaError(f"{where}: {value.name} is not a valid JSON value", field=field)
        if isinstance(value, str) and _has_lone_surrogate(value):
            return SchemaError(f"{where}: lone surrogate escape in a string (invalid Unicode)", field=field)
    return SchemaError(f"body is not valid JSON: {err}")


def _walk(value: object, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], object]]:
    """Every leaf (and every key with a lone surrogate) in document order, with its path.

    Iterative: a body nested a thousand levels deep must not overflow the Python stack.
    """
    stack: list[tuple[tuple[str, ...], object]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, dict):
            for key in item:
                if _has_lone_surrogate(key):
                    yield where, key
            stack.extend(((*where, key), child) for key, child in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend(((*where, str(i)), child) for i, child in reversed(list(enumerate(item))))
        else:
            yield where, item


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
