"""Every error the API answers is JSON in flask-smorest's shape.

``{"code": <status>, "status": "<reason phrase>", "message": "...", "errors": {...}}``

* ``JobicoError`` (domain errors) carry their own status, message, errors and
  headers (``Retry-After`` on 503).
* werkzeug ``HTTPException`` (unknown route, 405, 413 from MAX_CONTENT_LENGTH,
  webargs' 422) keep their status; webargs' validation messages go to ``errors``.
* Database disconnects and Redis/kombu connection errors are 503 with
  ``Retry-After``: the client should retry, nothing was done.
* Anything else is a 500 with a generic message; the traceback goes to the
  log, never to the client.
"""
from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import marshmallow as ma
from flask import Flask, has_request_context, jsonify, request
from werkzeug.exceptions import HTTPException

from jobico_core.errors import JobicoError

log = logging.getLogger("jobico_api")

RETRY_AFTER = "5"


class ErrorSchema(ma.Schema):
    """Every error body (the OpenAPI document's ``Error``)."""
    code = ma.fields.Integer(required=True, metadata={"description": "the HTTP status", "example": 422})
    status = ma.fields.String(required=True, metadata={"description": "its reason phrase",
                                                       "example": "Unprocessable Entity"})
    message = ma.fields.String(required=True, metadata={"description": "what is wrong, in words"})
    errors = ma.fields.Dict(required=True, keys=ma.fields.String(), metadata={
        "description": "where: field or member -> problems (`{}` when the message says it all)"})


def reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def error_response(status: int, message: str, errors: dict[str, Any] | None = None,
                   headers: dict[str, str] | None = None):
    body = {"code": status, "status": reason(status), "message": message, "errors": errors or {}}
    resp = jsonify(body)
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def _first_message(errors: Any, path: str = "") -> str | None:
    """The first validation problem of a (nested) marshmallow messages dict, in words."""
    if isinstance(errors, dict):
        for key, value in errors.items():
            sub = f"{path}.{key}" if path else str(key)
            found = _first_message(value, sub)
            if found:
                return found
        return None
    if isinstance(errors, (list, tuple)):
        for item in errors:
            found = _first_message(item, path)
            if found:
                return found
        return None
    if errors is None:
        return None
    return f"{path}: {errors}" if path else str(errors)


def handle_jobico_error(exc: JobicoError):
    if exc.status >= 500:
        log.warning("%s: %s", type(exc).__name__, exc.message)
    headers = dict(exc.headers)
    if exc.status == 503:
        headers.setdefault("Retry-After", RETRY_AFTER)
    return error_response(exc.status, exc.message, exc.errors, headers)


def handle_http_exception(exc: HTTPException):
    status = exc.code or 500
    data = getattr(exc, "data", None) or {}
    errors = data.get("errors") or data.get("messages") or {}
    headers = dict(data.get("headers") or {})
    message = data.get("message")
    if status == 422 and errors and not message:
        # webargs/marshmallow: {"json": {"field": ["problem"]}} -> "json.field: problem"
        first = _first_message(errors)
        message = f"invalid request: {first}" if first else "invalid request"
    if not message and status == 404 and has_request_context() and request.url_rule is None:
        message = f"no such route: {request.method} {request.path}"
    if not message:
        message = exc.description or reason(status)
    if status == 405 and hasattr(exc, "valid_methods") and exc.valid_methods:
        headers.setdefault("Allow", ", ".join(exc.valid_methods))
    return error_response(status, message, errors if isinstance(errors, dict) else {"request": errors}, headers)


def handle_unavailable(exc: Exception):
    log.warning("backing service unavailable: %s: %s", type(exc).__name__, exc)
    return error_response(503, "a backing service (database or broker) is temporarily unavailable; retry later",
                          {}, {"Retry-After": RETRY_AFTER})


def handle_unexpected(exc: Exception):
    if isinstance(exc, HTTPException):  # pragma: no cover - Flask routes these to the HTTP handler
        return handle_http_exception(exc)
    if _is_unavailable(exc):
        return handle_unavailable(exc)
    log.exception("unhandled error")
    return error_response(500, "internal server error; the incident has been logged", {})


def _unavailable_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = []
    try:
        from sqlalchemy.exc import InterfaceError, OperationalError
        from sqlalchemy.exc import TimeoutError as PoolTimeout
        types += [OperationalError, InterfaceError, PoolTimeout]
    except ImportError:  # pragma: no cover
        pass
    try:
        import redis.exceptions as rx
        types += [rx.ConnectionError, rx.TimeoutError, rx.BusyLoadingError]
    except ImportError:  # pragma: no cover
        pass
    try:
        from kombu.exceptions import OperationalError as KombuOperationalError
        types.append(KombuOperationalError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(types)


_UNAVAILABLE = _unavailable_types()


def _is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, _UNAVAILABLE):
        return True
    try:
        from sqlalchemy.exc import DBAPIError
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return True
    except ImportError:  # pragma: no cover
        pass
    return isinstance(exc, (ConnectionRefusedError, ConnectionResetError, BrokenPipeError))


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(JobicoError, handle_jobico_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    for exc_type in _UNAVAILABLE:
        app.register_error_handler(exc_type, handle_unavailable)
    app.register_error_handler(Exception, handle_unexpected)
