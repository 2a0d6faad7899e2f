"""Domain errors shared by the API, the worker and the CLI.

Each carries an HTTP status so the API can translate it without knowing the
domain, and a machine-readable ``errors`` mapping (where the problem is).
"""
from __future__ import annotations

from typing import Any


class JobicoError(Exception):
    status = 400
    reason = "bad_request"

    def __init__(self, message: str, errors: dict[str, Any] | None = None, *, status: int | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors or {}
        if status is not None:
            self.status = status
        self.headers = headers or {}


class BadRequest(JobicoError):
    status = 400


class Unauthorized(JobicoError):
    status = 401
    reason = "unauthorized"


class Forbidden(JobicoError):
    status = 403
    reason = "forbidden"


class NotFound(JobicoError):
    status = 404
    reason = "not_found"


class Conflict(JobicoError):
    status = 409
    reason = "conflict"


class TooLarge(JobicoError):
    status = 413
    reason = "too_large"


class Invalid(JobicoError):
    """Well-formed but semantically wrong input (HTTP 422)."""
    status = 422
    reason = "invalid"


class TooManyRequests(JobicoError):
    """Rate limit or queue cap reached (HTTP 429, with Retry-After)."""
    status = 429
    reason = "too_many_requests"


class Unavailable(JobicoError):
    """A backing service (broker, database, object store) is unreachable."""
    status = 503
    reason = "unavailable"

    def __init__(self, message: str, retry_after: int = 5, **kw: Any):
        super().__init__(message, **kw)
        self.headers.setdefault("Retry-After", str(retry_after))
