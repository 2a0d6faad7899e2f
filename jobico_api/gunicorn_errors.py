"""gunicorn's own error answers in the API's JSON error shape.

gunicorn refuses some requests before the app sees them: a malformed request
line or header (400), a request line longer than ``limit_request_line`` (414),
more header fields than ``limit_request_fields`` or one longer than
``limit_request_field_size`` (431), an unsupported transfer coding (501). It
writes those answers with ``gunicorn.util.write_error``, as HTML; ``install()``
(called by ``gunicorn_conf``, so in the master before the workers fork)
replaces it with a writer of the API's error body
``{"code", "status", "message", "errors"}``. The limits stay gunicorn's: it
stops reading a request line or header at its limit, so an oversized one never
costs more memory than that.
"""
from __future__ import annotations

import json

from gunicorn import util


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """``gunicorn.util.write_error``'s signature; the body is the API's JSON error."""
    message = mesg or reason
    body = json.dumps({"code": status_int, "status": reason, "message": message,
                       "errors": {"request": [message]}}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    util.write_nonblock(sock, head + body)


def install() -> None:
    util.write_error = write_json_error
