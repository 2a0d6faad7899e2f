"""An execution's debounce and rate limit on the worker, passed before its locks and its claim
(``jobico_core.flow`` has the syntax; the concurrency key is a counted lease taken with the
named locks, ``jobico_worker.locking``).

Only a task carrying ``flow`` comes here: events declaring none of it never do.

* **debounce** ``{key, seconds}``: an execution runs only once ``seconds`` have passed since it
  was created with no later execution of its key queued (trailing edge). Until then its row stays
  ``queued`` with ``waiting_for`` saying so and its task comes back when the quiet period ends.
  The one that runs first records every earlier queued execution of its key ``superseded``, with
  ``superseded_by`` naming it, in one statement. The database is the only state: a worker killed
  anywhere, or Redis restarted, only repeats a check.
* **rate limit** ``{key, per_second, burst}``: a reservation in Redis (GCRA, one Lua script: a
  burst of ``burst`` at once, then one every ``1/per_second`` s). An execution whose start is
  reserved later waits ``queued`` (``waiting_for`` says until when), its task published again with
  the wait as countdown (a long one in steps under the visibility timeout), carrying the
  reservation: it then starts without asking again. Nothing is rejected; the webhook answered
  long before. A Redis restart forgets the reservations (a new burst is allowed).

``gate`` returns the message to go on with, its ``flow`` reduced to what is still to pass
(the concurrency key), or None when this task ends here.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import replace

from sqlalchemy import bindparam, func, select, update

from jobico_core.broker import TaskMessage, publish
from jobico_core.db import TERMINAL_STATUSES, Execution, next_seq, utcnow
from jobico_core.services.context import Context
from jobico_core.services.executions import announce, to_dict

from .executor import backoff_cap
from .locking import note_waiting

log = logging.getLogger("jobico.worker")

_EX = Execution.__table__
RATE_PREFIX = "jobico:rate:"
EARLY_S = 0.02  # a task this early for its reservation or quiet period goes on anyway

# KEYS: the key's theoretical arrival time (ms); ARGV: interval ms, tolerance ms ((burst-1) x
# interval). Reserves the next start: returns ms from now until it (0: now).
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval, tau = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local start = tat - tau
if start < now then start = now end
redis.call('SET', KEYS[1], tat + interval, 'PX', math.ceil(tat + interval - now + tau + 1000))
return start - now
"""

_ROW = select(_EX.c.status, _EX.c.created_at).where(_EX.c.id == bindparam("b_id"))


def _later(message: TaskMessage, key: str):
    return (select(_EX.c.id).where(_EX.c.tenant_id == message.tenant, _EX.c.package == message.package,
                                   _EX.c.event == message.event, _EX.c.debounce_key == key,
                                   _EX.c.status == "queued", _EX.c.id > message.execution_id)
            .order_by(_EX.c.id.desc()).limit(1))


def gate(ctx: Context, message: TaskMessage) -> TaskMessage | None:
    """Pass the message's debounce, then its rate limit; see the module's docstring."""
    flow = json.loads(message.flow)
    if "d" in flow:
        if not _debounce(ctx, message, *flow["d"]):
            return None
        del flow["d"]
    if "r" in flow or "ra" in flow:
        waited = _rate(ctx, replace(message, flow=json.dumps(flow)), flow)
        if waited is None:
            return None
        flow = waited
    return replace(message, flow=json.dumps(flow) if flow else None)


def _again(ctx: Context, message: TaskMessage, text: str, countdown: float) -> None:
    """Leave the row queued saying ``text`` and publish the task again in ``countdown`` s."""
    text = text[:255]
    if text != message.waiting and not note_waiting(ctx, message, text):
        return
    publish(ctx.celery, [replace(message, waiting=text, token=None)],
            countdown=max(0.0, min(countdown, backoff_cap(ctx.settings))))


def _debounce(ctx: Context, message: TaskMessage, key: str, seconds: float) -> bool:
    """True: this execution runs (the earlier ones of its key are superseded now)."""
    with ctx.db.session() as s:
        row = s.execute(_ROW, {"b_id": message.execution_id}).first()
        if row is None or row.status in TERMINAL_STATUSES:
            return False  # superseded by a later one, cancelled, or gone: the task ends
        if row.status != "queued":
            return True   # a redelivery of a task that got past here already
        later = s.execute(_later(message, key)).scalar()
    if later is not None:  # the later one decides; its check comes after this one's
        _again(ctx, message, f"debounce key {key!r} (a later event of the key came: {later})", seconds)
        return False
    quiet = (row.created_at + dt.timedelta(seconds=seconds) - utcnow()).total_seconds()
    if quiet > EARLY_S:
        _again(ctx, message, f"debounce key {key!r} (runs {seconds:g} s after the last event of the key "
                             "unless another comes)", quiet)
        return False
    _supersede(ctx, message, key)
    return True


def _supersede(ctx: Context, message: TaskMessage, key: str) -> None:
    """Record every earlier queued execution of the key ``superseded`` by this one (announced)."""
    now = utcnow()
    stmt = (update(_EX)
            .where(_EX.c.tenant_id == message.tenant, _EX.c.package == message.package,
                   _EX.c.event == message.event, _EX.c.debounce_key == key, _EX.c.status == "queued",
                   _EX.c.id < message.execution_id)
            .values(status="superseded", superseded_by=message.execution_id, finished_at=now, waiting_for=None,
                    message=f"superseded by {message.execution_id}, a later event of debounce key {key!r}")
            .returning(*_EX.c))
    if ctx.db.engine.dialect.name == "postgresql":
        with ctx.db.autocommit() as conn:
            rows = conn.execute(stmt.values(seq=func.nextval("execution_seq"))).all()
    else:
        with ctx.db.session() as s:
            rows = s.execute(stmt).all()
            rows = [s.execute(update(_EX).where(_EX.c.id == r.id).values(seq=next_seq(s)).returning(*_EX.c)).first()
                    for r in rows]
            s.commit()
    for r in rows:
        data = to_dict(r, logs=False)
        data["logs"] = []
        announce(ctx, data)
    if rows:
        log.info("execution %s: %d earlier executions of debounce key %r superseded", message.execution_id,
                 len(rows), key, extra={"execution_id": message.execution_id})


def _rate(ctx: Context, message: TaskMessage, flow: dict) -> dict | None:
    """The flow without its rate limit once this execution may start; None: it waits."""
    if "ra" in flow:  # a reservation made earlier: start at it
        left = flow["ra"] - time.time()
        if left <= EARLY_S:
            return {k: v for k, v in flow.items() if k != "ra"}
        _again(ctx, message, message.waiting or "rate_limit", left)
        return None
    key, per_second, burst = flow["r"]
    interval = 1000.0 / per_second
    script = ctx.redis.register_script(_RESERVE)
    wait_ms = float(script(keys=[f"{RATE_PREFIX}{message.tenant}:{message.package}/{message.event}/{key}"],
                           args=[interval, (burst - 1) * interval]))
    rest = {k: v for k, v in flow.items() if k != "r"}
    if wait_ms / 1000 <= EARLY_S:
        return rest
    at = time.time() + wait_ms / 1000
    text = (f"rate_limit key {key!r} ({per_second:g}/s, burst {burst}): starts at "
            f"{dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec='milliseconds')}")
    _again(ctx, replace(message, flow=json.dumps({**rest, "ra": at})), text, wait_ms / 1000)
    return None
