"""``GET /api/v1/executions/stream``: the tenant's finished executions as Server-Sent Events.

Each event::

    id: <seq>
    event: execution
    data: <the execution record as JSON, with its logs, on one line>

``seq`` is the execution's position in the stream, assigned when the worker
records its outcome (monotonic: a PostgreSQL SEQUENCE, or a counter row on
SQLite). Comments (``: keepalive``) are sent every ``HEARTBEAT_SECONDS``.

How it is fed, and what it guarantees (see docs/api.md, "Live stream"):

1. subscribe to the tenant's pub/sub channel and wait for Redis to confirm it;
2. replay from the database: with ``Last-Event-ID`` (header, or the
   ``last_event_id`` query parameter) every finished execution with a higher
   seq, in seq order, plus a lookback window (those with a lower seq, never the
   named one itself, that finished at most ``LOOKBACK_SECONDS`` before it: sequence numbers are
   handed out before commit, so they can commit out of order); without it the
   ``recent`` last ones;
3. then live: each pub/sub message not already sent on this connection, even
   one whose seq is lower than the highest sent (a late commit);
4. every ``CATCHUP_SECONDS`` a catch-up query sends what pub/sub did not
   deliver (pub/sub is at most once), so a lost message is late, not lost.

Within one connection an execution is sent at most once. Across a reconnect
the lookback may send an execution again: clients deduplicate by the
record's ``id``. A pub/sub failure ends the stream (the client reconnects
with ``Last-Event-ID`` and the replay covers the gap).

Each open stream holds one gthread thread of a gunicorn worker (see
``gunicorn_conf.py``); the stream ends after ``MAX_STREAM_SECONDS`` so
clients reconnect (with ``Last-Event-ID``) to a possibly recycled worker.
"""
from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from typing import Any, Iterator

import marshmallow as ma
from flask import Response, g, request
from flask_smorest import Blueprint

from jobico_core.broker import results_channel
from jobico_core.db import STATUSES
from jobico_core.errors import BadRequest, Unavailable
from jobico_core.services import executions as svc

from ..auth import ERROR_SCHEMA, SECURITY, ctx, tenant_required
from ..openapi import QueryFlag

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0
CATCHUP_SECONDS = 5.0
LOOKBACK_SECONDS = 10.0
REPLAY_BATCH = 500
MAX_STREAM_SECONDS = 30 * 60.0
RETRY_MS = 2000
SENT_MEMORY = 10000  # execution ids remembered per connection (dedup of live vs replay/catch-up)
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


class _Filter:
    def __init__(self, package: str | None, event: str | None, status: str | None):
        self.package, self.event, self.status = package, event, status

    def kwargs(self) -> dict[str, Any]:
        return {"package": self.package, "event": self.event, "status": self.status}

    def __call__(self, d: dict) -> bool:
        return ((self.package is None or d.get("package") == self.package)
                and (self.event is None or d.get("event") == self.event)
                and (self.status is None or d.get("status") == self.status))


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
         parameters=[{"in": "header", "name": "Last-Event-ID", "required": False,
                      "description": "replay from this seq (an event id this stream sent); wins over "
                                     "last_event_id; empty: as if absent; anything else is a 400",
                      "schema": {"type": "string", "pattern": "^ *([0-9]{1,18})? *$"}}],
         responses={"200": {"description": STREAM_FORMAT,
                            "content": {"text/event-stream": {
                                "schema": {"type": "string", "format": "event-stream"},
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
def stream(args):
    c = ctx()
    tenant = g.tenant
    last = _last_event_id(args)
    flt = _Filter(args.get("package"), args.get("event"), args.get("status"))
    pubsub = None
    if args["follow"]:
        pubsub = _subscribe(c, tenant)
    try:
        watermark = svc.last_seq(c, tenant) if last is None else last
    except Exception:
        if pubsub is not None:
            pubsub.close()
        raise
    gen = _events(c, tenant, flt, last, args["recent"], watermark, pubsub)
    return Response(gen, mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache, no-store", "X-Accel-Buffering": "no"})


def _subscribe(c, tenant: str):
    """A pub/sub connection on the tenant's channel, the subscription confirmed by Redis."""
    try:
        pubsub = c.redis.pubsub()
        pubsub.subscribe(results_channel(tenant))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            msg = pubsub.get_message(timeout=1.0)
            if msg and msg["type"] == "subscribe":
                return pubsub
        pubsub.close()
    except Exception as exc:
        log.warning("stream: cannot subscribe to Redis: %s", exc)
    raise Unavailable("the live stream is unavailable: Redis does not answer")


def _frame(d: dict) -> str:
    return f"id: {d['seq']}\nevent: execution\ndata: {json.dumps(d, ensure_ascii=False, separators=(',', ':'))}\n\n"


def _events(c, tenant: str, flt: _Filter, last: int | None, recent: int, watermark: int,
            pubsub) -> Iterator[str]:
    sent: OrderedDict[str, int] = OrderedDict()
    high = watermark  # the highest seq known to be covered (sent, or before the connection)

    def emit(d: dict) -> str | None:
        nonlocal high
        eid, seq = d.get("id"), d.get("seq")
        if not eid or seq is None or eid in sent or not flt(d):
            return None
        sent[eid] = seq
        if len(sent) > SENT_MEMORY:
            sent.popitem(last=False)
        high = max(high, int(seq))
        return _frame(d)

    floor = watermark  # where this connection starts: older ones are history (or the replay's lookback)

    def catch_up(after: int, lookback: float, not_below: int | None = floor) -> Iterator[str]:
        while True:
            rows = svc.finished_after(c, tenant, after, limit=REPLAY_BATCH, lookback_seconds=lookback,
                                      not_below=not_below, **flt.kwargs())
            for d in rows:
                out = emit(d)
                if out:
                    yield out
            newer = [d["seq"] for d in rows if d["seq"] > after]
            if len(newer) < REPLAY_BATCH:
                return
            after, lookback = max(newer), 0.0

    started = time.monotonic()
    try:
        yield f"retry: {RETRY_MS}\n: executions of {tenant}\n\n"
        if last is not None:
            yield from catch_up(last, LOOKBACK_SECONDS, not_below=None)
        elif recent:
            for d in svc.recent_finished(c, tenant, recent, **flt.kwargs()):
                out = emit(d)
                if out:
                    yield out
        if pubsub is None:
            return
        if last is None or high > last:
            # an id-only block: the client's Last-Event-ID becomes the position reached, so a
            # reconnect resumes from here even when nothing (matching) was sent yet
            yield f"id: {high}\n\n"
        now = time.monotonic()
        next_beat, next_catchup = now + HEARTBEAT_SECONDS, now + CATCHUP_SECONDS
        while True:
            msg = pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if msg is not None and msg.get("type") == "message":
                try:
                    d = json.loads(msg["data"])
                except (TypeError, ValueError):
                    d = None
                if isinstance(d, dict) and d.get("tenant") == tenant:
                    d.setdefault("logs", [])
                    out = emit(d)
                    if out:
                        yield out
                        next_beat = time.monotonic() + HEARTBEAT_SECONDS
            now = time.monotonic()
            if now >= next_catchup:
                yield from catch_up(high, LOOKBACK_SECONDS)
                next_catchup = time.monotonic() + CATCHUP_SECONDS
            if now >= next_beat:
                yield ": keepalive\n\n"
                next_beat = now + HEARTBEAT_SECONDS
            if now - started >= MAX_STREAM_SECONDS:
                return
    except GeneratorExit:
        raise
    except Exception as exc:  # Redis or the database went away: end the stream; the client reconnects
        log.warning("stream of tenant %s ended: %s", tenant, exc)
    finally:
        if pubsub is not None:
            try:
                pubsub.close()
            except Exception:
                pass
