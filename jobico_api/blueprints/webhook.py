"""``POST /events/<tenant>/<event>``: the original Jobico's webhook.

The body size is checked here (Content-Length first, then a capped read);
``jobico_core.services.ingest.accept`` does every other check, in the
contract's order, and the all-or-nothing enqueue.
"""
from __future__ import annotations

import functools
import inspect

import marshmallow as ma
from flask import jsonify, request
from flask_smorest import Blueprint

from jobico_core.errors import TooLarge
from jobico_core.services import ingest

from ..auth import ERROR_SCHEMA, SECURITY, ctx
from ..body import read_body

blp = Blueprint("webhook", __name__, url_prefix="/events",
                description="Submit events: each element of `data` becomes one execution.")


class AcceptedSchema(ma.Schema):
    executions = ma.fields.List(ma.fields.String(), metadata={"description": "one execution id per element, "
                                                                             "in order"})


EVENTS_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["data"],
    "properties": {"data": {"type": "array", "minItems": 1, "items": {},
                            "description": "the events; each is validated against the event's schema"}},
}, "example": {"data": [{"name": "Ada"}]}}}}

DESCRIPTION = """Checked in this order: body size (413), tenant exists (404), credentials (401 missing/bad,
403 another tenant's key), event exists (404), body shape (400), element size (413), schema (422).
Credentials depend on the tenant's webhook mode: `key` (Authorization: Bearer <tenant key>),
`hmac` (`X-Jobico-Timestamp: <unix seconds>` and `X-Jobico-Signature: sha256=<hex of
HMAC-SHA256(secret, "<timestamp>.<raw body>")>`, at most 5 minutes old; a signature is good for one
request: sent again within its window, 409 `signature_replayed`) or `none`.
`Idempotency-Key` (per tenant, 24 h by default) replays the first answer; reused with another body: 422.
`X-Jobico-Priority` (1 to the package's `max_priority`, default 10) sets the priority of this request's
executions (else the event's `priority:`); out of bounds: 422. An element lacking a JSONPath the event's
flow control (`concurrency`, `rate_limit`, `debounce`) uses as its key: 422 naming it.
A 503 (with Retry-After) means nothing was enqueued."""


def _called_directly(view):
    """``view`` with the docs flask-smorest's decorators gathered on it, called without the ten
    wrappers they stack (each calls ``current_app.ensure_sync`` before the next: ~2 us per layer
    and request). The view returns a ``Response`` itself, which ``blp.response`` would pass
    through untouched."""
    inner = inspect.unwrap(view)

    @functools.wraps(view)  # copies _apidoc, which blp.route reads
    def call(*args, **kwargs):
        return inner(*args, **kwargs)
    return call


@blp.route("/<tenant>/<event>", methods=["POST"])
@_called_directly
@blp.doc(security=SECURITY + [{}], summary="Submit events", description=DESCRIPTION, requestBody=EVENTS_BODY,
         parameters=[
             {"in": "header", "name": "Idempotency-Key", "required": False, "schema": {"type": "string",
                                                                                       "maxLength": 255}},
             {"in": "header", "name": "X-Jobico-Timestamp", "required": False, "schema": {"type": "string"}},
             {"in": "header", "name": "X-Jobico-Signature", "required": False, "schema": {"type": "string"}},
             {"in": "header", "name": "X-Jobico-Priority", "required": False,
              "schema": {"type": "string", "pattern": "^ *[0-9]+ *$"},
              "description": "1 to the package's max_priority: this request's executions' priority"},
         ])
@blp.response(200, AcceptedSchema)
@blp.alt_response(400, schema=ERROR_SCHEMA, description="body is not JSON, has no `data` array, or too many elements")
@blp.alt_response(401, schema=ERROR_SCHEMA, description="missing or invalid credentials")
@blp.alt_response(403, schema=ERROR_SCHEMA, description="the key belongs to another tenant")
@blp.alt_response(404, schema=ERROR_SCHEMA, description="unknown tenant or event")
@blp.alt_response(409, schema=ERROR_SCHEMA, description="signature_replayed: this signature was already accepted, "
                                                          "or a request with this Idempotency-Key is in progress")
@blp.alt_response(413, schema=ERROR_SCHEMA, description="body or an element too large")
@blp.alt_response(422, schema=ERROR_SCHEMA,
                  description="an element does not match the schema or lacks a flow-control key's path, "
                              "Idempotency-Key reused, or X-Jobico-Priority out of bounds")
@blp.alt_response(503, schema=ERROR_SCHEMA,
                  description="broker or database unavailable; retry after Retry-After seconds")
def post_events(tenant, event):
    c = ctx()
    limit_kb = c.settings.max_body_kb
    body = read_body(limit_kb * 1024, lambda size: TooLarge(
        f"body is {size} bytes; the limit is {limit_kb} KB" if size is not None
        else f"body is larger than the {limit_kb} KB limit", {"body": [f"more than {limit_kb} KB"]}))
    ids = ingest.accept(c, tenant, event, body, request.headers)
    # AcceptedSchema documents the body; a list of id strings needs no marshmallow dump, which
    # costs 2 us per id (0.2 ms of a 100-event request): the same JSON, built directly
    return jsonify(executions=ids)
