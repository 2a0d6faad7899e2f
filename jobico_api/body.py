"""Reading request bodies with a hard cap (before and while reading)."""
from __future__ import annotations

from collections.abc import Callable

from flask import request

from jobico_core.errors import JobicoError

_CHUNK = 64 * 1024
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


def read_body(limit: int, too_large: Callable[[int | None], JobicoError]) -> bytes:
    """The raw body, at most ``limit`` bytes.

    ``Content-Length`` is checked first, so an oversized body is refused
    without reading it; a body without one (chunked) is read until it
    passes the limit. ``too_large(size or None)`` builds the 413.
    """
    length = request.content_length
    if length is not None and length > limit:
        raise too_large(length)
    stream = request.stream
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = stream.read(min(_CHUNK, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise too_large(None)
    return b"".join(chunks)


def refuse_forms(what: str) -> None:
    """A 415 for a form body where the endpoint takes raw bytes (a form's envelope is not the content)."""
    if request.mimetype in FORM_TYPES:
        raise JobicoError(f"send {what} as the raw body, not as {request.mimetype}",
                          {"body": [f"not {request.mimetype}"]}, status=415)
