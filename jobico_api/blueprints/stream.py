"""``GET /api/v1/executions/stream``: the tenant's finished executions as Server-Sent Events.

Each event::

    id: <seq>
    event: execution
    data: <the execution record as JSON, with its logs, on one line>

``seq`` is the execution's position in the stream, assigned when the worker
records its outcome (monotonic: a PostgreSQL SEQUENCE, or a counter row on
SQLite). Comments (``: keepalive``) are sent every ``HEARTBEAT_SECONDS``.

What it sends, and what it guarantees: ``jobico_core.services.stream`` (the replay, live
pub/sub, catch-ups, each execution at most once per connection) and docs/api.md, "Live stream".
A pub/sub failure ends the stream (the client reconnects with ``Last-Event-ID`` and the replay
covers the gap).

Each open stream holds one gthread thread of a gunicorn worker (see
``gunicorn_conf.py``); the stream ends after ``MAX_STREAM_SECONDS`` so
clients reconnect (with ``Last-Event-ID``) to a possibly recycled worker.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

import marshmallow as ma
from flask import Response, g, request
from flask_smorest import Blueprint

from jobico_core.db import STATUSES
from jobico_core.errors import BadRequest
from jobico_core.services.stream import Feed, Filter, subscribe

from ..auth import ERROR_SCHEMA, SECURITY, ctx, tenant_required
from ..openapi import QueryFlag

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0
MAX_STREAM_SECONDS = 30 * 60.0
RETRY_MS = 2000
MAX_SEQ = 2**63 - 1  # executions.seq is a BIGINT

blp = Blueprint("stream", __name__, url_prefix="/api/v1/executions",
                description="Live stream of finished executions (Server-Sent Events).")


class StreamArgs(ma.Schema):
    package = ma.fields.String(metadata={"description": "only this package"})
    event = ma.fields.String(metadata={"description": "only this event"})
    status = ma.fields.String(validate=ma.validate.OneOf(STATUSES), metadata={"description": "only this status"})
    last_event_id = ma.fields.Integer(validate=ma.validate.Range(min=0, max=MAX_SEQ), metadata={
        "description": "replay from this seq (for clients that cannot send the Last-Event-ID header; "
                       "the header wins)"})
    recent = ma.fields.Integer(load_default=0, validate=ma.validate.Range(min=0, max=500), metadata={
        "description": "without Last-Event-ID: first send the last N finished executions"})
    follow = QueryFlag(load_default=True, metadata={
        "description": "false: send the replay (recent / since Last-Event-ID), then close"})


class StreamHeaders(ma.Schema):
    """The header a reconnecting EventSource sends; read (and refused with a 400) by _last_event_id."""
    last_event_id = ma.fields.String(data_key="Last-Event-ID", metadata={
        "description": "replay from this seq (an event id this stream sent); wins over last_event_id; "
                       "empty: as if absent; anything else is a 400",
        "pattern": "^ *([0-9]{1,18})? *$"})


def _last_event_id(args: dict) -> int | None:
    raw = request.headers.get("Last-Event-ID")
    if raw is not None and raw.strip() != "":
        try:
            value = int(raw.strip())
            if not 0 <= value <= MAX_SEQ:
                raise ValueError
            return value
        except ValueError:
            raise BadRequest("Last-Event-ID must be a sequence number sent as an event id",
                             {"Last-Event-ID": [raw[:64]]}) from None
    return args.get("last_event_id")


# One event of the stream (OpenAPI 3.0 cannot type the items of a text/event-stream: the document carries
# this as the media type's `x-itemSchema`, OpenAPI 3.2's `itemSchema`, and the stream tests check frames
# against it).
EVENT_SCHEMA = {
    "type": "object", "required": ["id", "event", "data"],
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$", "description": "the record's seq (the Last-Event-ID)"},
        "event": {"type": "string", "enum": ["execution"]},
        "data": {"$ref": "#/components/schemas/Execution",
                 "description": "the execution record with its logs, JSON on one line"},
    },
}
# The same event as it is on the wire, for OpenAPI 3.0's `schema` (which tools such as schemathesis take as
# the per-event schema of a text/event-stream, as 3.2's `itemSchema`): `data` is the record as JSON text.
EVENT_WIRE_SCHEMA = {
    "type": "object", "required": ["event", "data"],
    "properties": {
        "id": EVENT_SCHEMA["properties"]["id"],
        "event": EVENT_SCHEMA["properties"]["event"],
        "data": {"type": "string", "description": "the execution record (an `Execution`, with its logs) as JSON "
                                                  "on one line; x-itemSchema types it parsed"},
    },
}
STREAM_FORMAT = """`text/event-stream` (https://html.spec.whatwg.org/multipage/server-sent-events.html): first
`retry: 2000` and a comment; then one event per finished execution:

    id: <seq>
    event: execution
    data: <the execution record as JSON, with its logs, on one line>

(typed by `x-itemSchema`: `data` is an `Execution`), an id-only block `id: <seq>` (the position reached, so
a reconnect resumes from there) and `: keepalive` comments every 15 s. With follow=false the stream ends
after the replay."""


@blp.route("/stream", methods=["GET"])
@blp.doc(security=SECURITY, summary="Live stream of finished executions (Server-Sent Events)",
         description="Events `id: <seq>`, `event: execution`, `data: <execution JSON with logs>`; "
                     "`: keepalive` comments every 15 s. `Last-Event-ID` (or `last_event_id`) replays "
                     "what was missed, with a short lookback: deduplicate by the record's `id`.",
         responses={"200": {"description": STREAM_FORMAT,
                            "content": {"text/event-stream": {
                                "schema": EVENT_WIRE_SCHEMA,
                                "x-itemSchema": EVENT_SCHEMA,
                                "example": 'retry: 2000\n: executions of tenant_1\n\nid: 7\nevent: execution\n'
                                           'data: {"id":"0190...","seq":7,"status":"succeeded",...}\n\n'}},
                            "headers": {"Cache-Control": {"schema": {"type": "string"},
                                                          "description": "no-cache, no-store"}}},
                    "400": {"description": "bad Last-Event-ID", "content": {"application/json": {
                        "schema": ERROR_SCHEMA}}},
                    "503": {"description": "Redis is unavailable", "content": {"application/json": {
                        "schema": ERROR_SCHEMA}}}})
@tenant_required
@blp.arguments(StreamArgs, location="query")
@blp.arguments(StreamHeaders, location="headers")
def stream(args, _headers):  # the header is read as sent by _last_event_id (a bad one is a 400)
    c = ctx()
    tenant = g.tenant
    last = _last_event_id(args)
    pubsub = subscribe(c, tenant) if args["follow"] else None
    feed = Feed(c, tenant, Filter(args.get("package"), args.get("event"), args.get("status")), last,
                args["recent"], pubsub)
    return Response(_events(feed), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache, no-store", "X-Accel-Buffering": "no"})


def _frame(d: dict) -> str:
    return f"id: {d['seq']}\nevent: execution\ndata: {json.dumps(d, ensure_ascii=False, separators=(',', ':'))}\n\n"


def _events(feed: Feed) -> Iterator[str]:
    """The feed as Server-Sent Events, with keepalives, for at most MAX_STREAM_SECONDS."""
    started = time.monotonic()
    try:
        yield f"retry: {RETRY_MS}\n: executions of {feed.tenant}\n\n"
        yield from map(_frame, feed.replay())
        if not feed.follows:
            return
        resume = feed.resume_point()
        if resume is not None:
            yield f"id: {resume}\n\n"   # an id-only block: the client's Last-Event-ID becomes this
        next_beat = time.monotonic() + HEARTBEAT_SECONDS
        while True:
            for d in feed.live(timeout=1.0):
                yield _frame(d)
                next_beat = time.monotonic() + HEARTBEAT_SECONDS
            yield from map(_frame, feed.catch_up_if_due())
            now = time.monotonic()
            if now >= next_beat:
                yield ": keepalive\n\n"
                next_beat = now + HEARTBEAT_SECONDS
            if now - started >= MAX_STREAM_SECONDS:
                return
    except GeneratorExit:
        raise
    except Exception as exc:  # Redis or the database went away: end the stream; the client reconnects
        log.warning("stream of tenant %s ended: %s", feed.tenant, exc)
    finally:
        feed.close()
