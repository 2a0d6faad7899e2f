"""The operator's controls on one execution: cancel it, resubmit it.

**Cancel** (``POST /api/v1/executions/<id>/cancel``, ``jobico executions cancel``):

* ``queued`` (not started yet, waiting for a guest retry, or for a lock): one guarded
  ``UPDATE ... WHERE status = 'queued'`` makes it ``cancelled`` with its stream position, and
  its record is announced on the tenant's pub/sub channel. No worker runs it afterwards: every
  claim (``executor.claim``, ``batch.claim_many``) only takes rows that are not final.
* ``running``: ``cancel_requested_at``/``cancelled_by`` are set (guarded by ``status =
  'running'``) and the id is published on ``broker.CANCEL_CHANNEL``; the pool process running it
  (``jobico_worker.cancellation``) cancels its ``CancelToken``, the guest stops within an epoch
  tick and the worker records ``cancelled`` without firing its chain or retrying it. The API
  waits up to ``wait`` seconds for the final record, publishing the request again every
  ``REPUBLISH_S`` meanwhile (pub/sub is at most once). A running execution whose lease ran out
  (its worker is lost, ``leases``) is recorded ``cancelled`` at once; one whose worker is lost
  later, or does not act, is recorded ``cancelled`` by the lease recovery: every cancel ends
  in a final record.
* final already: nothing changes (``already_finished``).

**Resubmit** (``POST /api/v1/executions/<id>/resubmit``, ``jobico executions resubmit``): a new
execution of the same event with the same payload, on the package's active version, through
the same admission and enqueueing as a webhook event (``ingest.submit``).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, case, func, literal, select, update

from ..broker import CANCEL_CHANNEL, cancel_message
from ..db import TERMINAL_STATUSES, Execution, next_seq, utcnow
from ..errors import Conflict, Invalid, NotFound, TooLarge
from ..flow import leases
from ..ids import is_uuid
from .context import Context
from .executions import announce, get_execution, lock_names, to_dict
from .ingest import submit, validated_element
from .leases import cancel_if_lost, lease_s
from .packages import route

log = logging.getLogger(__name__)

CANCEL_WAIT_S = 5.0      # how long a cancel waits for a running execution's final record by default
CANCEL_WAIT_MAX_S = 30.0
POLL_S = 0.01            # how often the waiting cancel reads the row
REPUBLISH_S = 0.25       # how often it publishes the request again while it waits

# what a cancel did (the answer's "cancel" field)
CANCELLED_QUEUED = "cancelled_queued"
CANCELLED_RUNNING = "cancelled_running"
REQUESTED = "requested"
ALREADY_FINISHED = "already_finished"
CANCEL_OUTCOMES = (CANCELLED_QUEUED, CANCELLED_RUNNING, REQUESTED, ALREADY_FINISHED)

_EX = cast(Table, Execution.__table__)   # a declarative model's table


def _not_found(execution_id: str) -> NotFound:
    return NotFound(f"execution {execution_id!r} does not exist")


# -- cancel ---------------------------------------------------------------------------------
@dataclass
class Cancelled:
    record: dict           # the execution record (get_execution) when the answer was made
    cancel: str            # one of CANCEL_OUTCOMES
    cancel_ms: float       # from the request to the final record (or to giving up waiting)
    detail: str            # one sentence for people

    def as_dict(self) -> dict:
        return {**self.record, "cancel": self.cancel, "cancel_ms": self.cancel_ms, "detail": self.detail}


def _cancel_queued_stmt(tenant: str, execution_id: str, by: str, now):
    """``queued`` -> ``cancelled`` in one guarded statement (a claim that got there first wins)."""
    first = f"cancelled by {by} before it started"
    again = f"cancelled by {by} while queued for another attempt"
    return (update(_EX)
            .where(_EX.c.id == execution_id, _EX.c.tenant_id == tenant, _EX.c.status == "queued")
            .values(status="cancelled", cancelled_by=by, finished_at=now,
                    cancel_requested_at=func.coalesce(_EX.c.cancel_requested_at, now),
                    message=case((_EX.c.attempts == 0, literal(first)), else_=literal(again)),
                    dead_lettered=False, waiting_for=None)
            .returning(*_EX.c))


def cancel_queued(ctx: Context, tenant: str, execution_id: str, by: str) -> dict | None:
    """Cancel the execution if it is ``queued``: returns its final record (announced on the
    tenant's stream), or None when it was not queued (running, final or missing).

    Named-lock waits: a queued execution waiting for its locks is cancelled here like any other
    queued one, and taken out of the locks' wait lines at once (its parked task is dropped, so a
    release never wakes it and the next in line moves up).
    """
    now = utcnow()
    stmt = _cancel_queued_stmt(tenant, execution_id, by, now)
    if ctx.db.engine.dialect.name == "postgresql":
        with ctx.db.autocommit() as conn:
            row = conn.execute(stmt.values(seq=func.nextval("execution_seq"))).first()
    else:  # SQLite: the stream position from the counter row, only once the row is taken
        with ctx.db.session() as s:
            row = s.execute(stmt).first()
            if row is not None:
                row = s.execute(update(_EX).where(_EX.c.id == execution_id).values(seq=next_seq(s))
                                .returning(*_EX.c)).first()
    if row is None:
        return None
    names, _ = leases(row.package, row.event, lock_names(row.locks), row.flow)
    if names:
        try:
            ctx.locks.forget(tenant, names, execution_id)
        except Exception as exc:  # its task finds the row final once it has the locks, and lets go
            log.warning("execution %s cancelled, but could not leave its locks' wait lines: %s", execution_id, exc)
    data = to_dict(row, logs=False)
    data["logs"] = []
    announce(ctx, data)
    return data


def _request_running(ctx: Context, tenant: str, execution_id: str, by: str) -> bool:
    """Mark a ``running`` execution as asked to stop (the first asker is kept)."""
    now = utcnow()
    stmt = (update(_EX)
            .where(_EX.c.id == execution_id, _EX.c.tenant_id == tenant, _EX.c.status == "running")
            .values(cancel_requested_at=func.coalesce(_EX.c.cancel_requested_at, now),
                    cancelled_by=func.coalesce(_EX.c.cancelled_by, by))
            .returning(_EX.c.id))
    with ctx.db.autocommit() if ctx.db.engine.dialect.name == "postgresql" else ctx.db.session() as conn:
        return conn.execute(stmt).first() is not None


def _status(ctx: Context, tenant: str, execution_id: str) -> str | None:
    stmt = select(_EX.c.status).where(_EX.c.id == execution_id, _EX.c.tenant_id == tenant)
    with ctx.db.autocommit() if ctx.db.engine.dialect.name == "postgresql" else ctx.db.session() as conn:
        return conn.execute(stmt).scalar()


def _publish_cancel(ctx: Context, execution_id: str, by: str) -> str | None:
    """Tell every worker; returns the problem when Redis refused (None: sent)."""
    try:
        ctx.redis.publish(CANCEL_CHANNEL, cancel_message(execution_id, by))
        return None
    except Exception as exc:  # the request is in the database: a redelivery finds it
        log.warning("could not publish the cancel of execution %s: %s", execution_id, exc,
                    extra={"execution_id": execution_id})
        return str(exc)


def cancel_execution(ctx: Context, tenant: str, execution_id: str, *, by: str, wait: float = CANCEL_WAIT_S,
                     clock=time.monotonic, sleep=time.sleep) -> Cancelled:
    """Stop an execution of ``tenant``: see the module's docstring. ``by``: who asks (the
    caller's key name, recorded as ``cancelled_by``); ``wait``: seconds to wait for a running
    execution's final record (0 = do not wait). Raises NotFound for an unknown id or another
    tenant's."""
    t0 = clock()
    if not is_uuid(execution_id):
        raise _not_found(execution_id)
    wait = max(0.0, min(float(wait), CANCEL_WAIT_MAX_S))

    def answer(outcome: str, detail: str) -> Cancelled:
        ms = round((clock() - t0) * 1000, 1)
        return Cancelled(get_execution(ctx, tenant, execution_id), outcome, ms, detail)

    requested = False
    problem: str | None = None
    next_publish = 0.0
    status: str | None = None  # as last read; None: not read yet
    while True:
        if status in (None, "queued"):
            queued = cancel_queued(ctx, tenant, execution_id, by)
            if queued is not None:
                how = "before it started" if not queued["attempts"] else "while it was queued for another attempt"
                return answer(CANCELLED_QUEUED, f"execution {execution_id} cancelled {how}")
        if not requested:
            if _request_running(ctx, tenant, execution_id, by):
                requested, status = True, "running"
                if cancel_if_lost(ctx, tenant, execution_id, by) is not None:  # no worker holds it
                    return answer(CANCELLED_RUNNING, f"execution {execution_id} cancelled: its worker was lost "
                                                     "while it ran (its lease ran out)")
                problem = _publish_cancel(ctx, execution_id, by)
                next_publish = clock() + REPUBLISH_S
                continue  # it may have finished or gone back to queued meanwhile: look again
            status = _status(ctx, tenant, execution_id)
            if status is None:
                raise _not_found(execution_id)
            if status in TERMINAL_STATUSES:
                return answer(ALREADY_FINISHED, f"execution {execution_id} already finished ({status}): "
                                                "nothing to cancel")
            continue  # it moved from queued to running (or back) between the two statements
        status = _status(ctx, tenant, execution_id)
        if status is None:  # deleted meanwhile (its tenant or package was deleted)
            raise _not_found(execution_id)
        if status in TERMINAL_STATUSES:
            rec = get_execution(ctx, tenant, execution_id)
            ms = round((clock() - t0) * 1000, 1)
            if status == "cancelled" and rec.get("cancelled_by") is not None:
                return Cancelled(rec, CANCELLED_RUNNING, ms, f"execution {execution_id} {rec.get('message')}")
            return Cancelled(rec, ALREADY_FINISHED, ms, f"execution {execution_id} finished ({status}) before "
                                                        "the cancel reached it: nothing to cancel")
        if status == "queued":
            continue  # requeued (a guest retry) before the cancel reached it: cancel it as queued
        now = clock()
        if now - t0 >= wait:
            detail = (f"cancel of execution {execution_id} requested; still running after {wait:g} s: its worker "
                      "stops it when the request reaches it; if its worker is lost or does not act, it is "
                      f"recorded cancelled within {1.5 * lease_s(ctx):g} s")
            if problem:
                detail += f" (the workers could not be told now: {problem})"
            return answer(REQUESTED, detail)
        if now >= next_publish:
            if cancel_if_lost(ctx, tenant, execution_id, by) is not None:
                continue  # its lease ran out meanwhile: the next read finds it cancelled
            problem = _publish_cancel(ctx, execution_id, by)
            next_publish = now + REPUBLISH_S
        sleep(POLL_S)


# -- resubmit -------------------------------------------------------------------------------
def resubmit_execution(ctx: Context, tenant: str, execution_id: str, *, submitter: str) -> dict:
    """A new execution of the same event with the same payload, on the package's active
    version (``resubmitted_from`` = the original, trigger ``resubmit``). Any status may be
    resubmitted. 404: unknown; 409: the event is no longer deployed by that package; 422 (or
    413): the payload no longer passes the event's current schema (or size limit); 429: the
    queue is full or the tenant over its rate limit, as for a webhook event."""
    if not is_uuid(execution_id):
        raise _not_found(execution_id)
    with ctx.db.session() as s:
        old = s.execute(select(_EX.c.id, _EX.c.package, _EX.c.event, _EX.c.payload)
                        .where(_EX.c.id == execution_id, _EX.c.tenant_id == tenant)).first()
    if old is None:
        raise _not_found(execution_id)
    info = route(ctx, tenant, old.event)
    if info is None:
        raise Conflict(f"execution {execution_id} cannot be resubmitted: event {old.event!r} is no longer "
                       "deployed", {"event": [f"{old.event!r} is not deployed"]})
    if info.package != old.package:
        raise Conflict(f"execution {execution_id} cannot be resubmitted: event {old.event!r} now belongs to "
                       f"package {info.package!r}, not {old.package!r}; send it through the webhook if that is "
                       "what you want", {"event": [f"deployed by package {info.package!r}"]})
    where = f"event {old.event!r} of package {info.package!r} version {info.number}"
    try:
        payload = validated_element(ctx, info, old.event, old.payload.encode("utf-8"))
    except Invalid as exc:
        problems = (exc.errors or {}).get("data", {}).get("0") or []
        first = f": {problems[0]['path']}: {problems[0]['message']}" if problems else ""
        raise Invalid(f"execution {execution_id} cannot be resubmitted: its payload no longer matches the schema "
                      f"of {where}{first}", {"payload": problems}) from None
    except TooLarge as exc:
        raise TooLarge(f"execution {execution_id} cannot be resubmitted: its payload is larger than {where} now "
                       f"accepts ({exc.message})", {"payload": ["too large"]}) from None
    [new_id] = submit(ctx, info, old.event, [payload], submitter=submitter, trigger="resubmit",
                      resubmitted_from=execution_id)
    return get_execution(ctx, tenant, new_id)
