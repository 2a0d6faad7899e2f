"""Canonical JSON: what a guest receives and what chained payloads are.

Compact separators, keys sorted, UTF-8 (no ``\\u`` escapes for non-ASCII),
numbers as Python's ``json`` reads and writes them. Non-standard tokens
(NaN, Infinity) are refused when parsing, since they are not JSON.
"""
from __future__ import annotations

import json
from typing import Any


def _refuse_constant(token: str) -> Any:
    raise ValueError(f"{token} is not valid JSON")


def loads(text: str | bytes) -> Any:
    """Strict JSON parsing: no NaN/Infinity; bytes must be UTF-8."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8")  # raises UnicodeDecodeError on invalid UTF-8
    return json.loads(text, parse_constant=_refuse_constant)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False)


def dumpb(value: Any) -> bytes:
    return dumps(value).encode("utf-8")
