"""Running executions' leases, and the fate of an execution no worker will finish.

A worker holds a ``running`` execution under a lease (``Execution.lease_until``): the claim
(``executor.claim``, ``batch.claim_many``) sets it to now + ``JOBICO_EXECUTION_LEASE_SECONDS``,
and while a worker process holds the execution (from its claim to its record) a thread of that
process renews it every third of the lease (``jobico_worker.heartbeat`` -> ``renew``, guarded by
the attempt it claimed, so a delivery superseded by a later claim renews nothing). A task that
waits out an infrastructure retry extends it over the countdown (``extend``).

**The recovery** (``recover``; workers run it every lease / 2 seconds, one at a time behind a
Redis lock: ``sweep``) takes back every ``running`` execution

* whose lease ran out: its worker died (SIGKILL, OOM, a lost host) or hangs, whatever became of
  its task (acknowledged, lost, or still to be redelivered). It is recorded ``cancelled`` when
  its cancel was requested (no chain); ``failed`` and dead-lettered when it has used
  ``JOBICO_MAX_ATTEMPTS`` attempts (the lost one counts: the claim counted it); otherwise it is
  put back to ``queued`` and its task published again;
* whose cancel was requested more than a lease ago and that no worker stopped: ``cancelled``.

So an execution whose worker is lost is back on its queue (or final) within 1.5 x the lease
of its last renewal, while at least one worker runs. A task of it still in Redis (a whole
worker killed: kombu restores it after the visibility timeout) finds it final, or runs it
again: at least once, recorded once (the record is guarded).

``end`` records a final status on executions not final yet (a guarded ``UPDATE``, with a stream
position), and announces them: the recovery, the API's cancel of a lost execution
(``cancel_if_lost``) and a worker's internal errors (``jobico_worker.failures``) use it.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from typing import cast

from sqlalchemy import Table, and_, bindparam, exists, func, not_, or_, select, update

from ..broker import publish
from ..db import TERMINAL_STATUSES, Execution, PackageVersion, next_seq, utcnow
from .context import Context
from .executions import announce, task_messages, to_dict

log = logging.getLogger(__name__)

LOCK_KEY = "jobico:leases:lock"
MAX_PER_SWEEP = 1000

_EX = cast(Table, Execution.__table__)   # a declarative model's table
_TERMINAL = sorted(TERMINAL_STATUSES)
_PV = cast(Table, PackageVersion.__table__)
# the execution's package version still exists (a deleted package's versions are gone with it)
_VERSION_ALIVE = exists().where(_PV.c.id == _EX.c.version_id)
_RENEW = (update(_EX).where(_EX.c.id == bindparam("b_id"), _EX.c.attempts == bindparam("b_attempts"),
                            _EX.c.status == "running")
          .values(lease_until=bindparam("b_until")))


def lease_s(ctx: Context) -> float:
    return float(ctx.settings.execution_lease_s)


def until(ctx: Context, now: dt.datetime | None = None, extra_s: float = 0.0) -> dt.datetime:
    """When a lease taken or renewed now ends (``extra_s`` later still)."""
    return (now or utcnow()) + dt.timedelta(seconds=lease_s(ctx) + extra_s)


def renew(ctx: Context, held: Iterable[tuple[str, int]]) -> None:
    """Renew the leases of the executions (id, attempt claimed) a worker process holds."""
    params = [{"b_id": i, "b_attempts": a, "b_until": until(ctx)} for i, a in held]
    if params:
        with ctx.db.session() as s:
            s.execute(_RENEW, params)


def extend(ctx: Context, ids: list[str], seconds: float) -> None:
    """Keep the running ``ids`` leased ``seconds`` more than a lease (an infrastructure retry's
    countdown). Best effort: if the database refuses, the recovery may put them back early,
    which only runs them once more."""
    if not ids:
        return
    try:
        with ctx.db.session() as s:
            s.execute(update(_EX).where(_EX.c.id.in_(ids), _EX.c.status == "running")
                      .values(lease_until=until(ctx, extra_s=seconds)))
    except Exception as exc:
        log.warning("could not extend the lease of %d execution(s) over their retry: %s", len(ids), exc)


def _expired(now: dt.datetime, lease: float):
    """Running rows whose lease ran out. A row claimed by a worker older than leases has none, or
    an earlier claim's (before its start): its start + a lease stands for it."""
    leased = and_(_EX.c.lease_until.is_not(None),
                  or_(_EX.c.started_at.is_(None), _EX.c.lease_until >= _EX.c.started_at))
    return or_(and_(leased, _EX.c.lease_until < now),
               and_(not_(leased), or_(_EX.c.started_at.is_(None),
                                      _EX.c.started_at < now - dt.timedelta(seconds=lease))))


def _ignored(now: dt.datetime, lease: float):
    """Running rows asked to stop more than a lease ago."""
    return _EX.c.cancel_requested_at < now - dt.timedelta(seconds=lease)


def end(ctx: Context, messages: Mapping[str, str], *, status: str, dead_lettered: bool = False,
        where: tuple = (), values: Mapping | None = None, now: dt.datetime | None = None) -> list[dict]:
    """Record ``status`` with ``messages[id]`` on those of the executions that are not final
    (and match ``where``), each with its stream position, in one transaction; announce them on
    their tenants' streams. Returns their records."""
    now = now or utcnow()
    pg = ctx.db.engine.dialect.name == "postgresql"
    records = []
    with ctx.db.session() as s:
        for execution_id, message in messages.items():
            stmt = (update(_EX).where(_EX.c.id == execution_id, _EX.c.status.notin_(_TERMINAL), *where)
                    .values(status=status, message=message, dead_lettered=dead_lettered, finished_at=now,
                            waiting_for=None, **(values or {}))
                    .returning(*_EX.c))
            if pg:
                row = s.execute(stmt.values(seq=func.nextval("execution_seq"))).first()
            else:  # SQLite: the stream position from the counter row, only once the row is taken
                row = s.execute(stmt).first()
                if row is not None:
                    row = s.execute(update(_EX).where(_EX.c.id == execution_id).values(seq=next_seq(s))
                                    .returning(*_EX.c)).first()
            if row is not None:
                data = to_dict(row, logs=False)  # type: ignore[arg-type]  # RETURNING: the columns as attributes
                data["logs"] = []
                records.append(data)
    for data in records:
        announce(ctx, data)
    return records


def _lost_message(worker: str | None, attempts: int, lease_until: dt.datetime | None) -> str:
    since = f" (it ran out at {lease_until.isoformat().replace('+00:00', 'Z')})" if lease_until else ""
    return f"its worker {worker or '?'} stopped renewing its lease during attempt {attempts}{since}"


def recover(ctx: Context, *, now: dt.datetime | None = None, limit: int = MAX_PER_SWEEP) -> dict[str, list[str]]:
    """Take back the running executions no worker holds any more (see the module); returns the
    ids it requeued, cancelled and failed."""
    now = now or utcnow()
    lease = lease_s(ctx)
    expired, ignored = _expired(now, lease), _ignored(now, lease)
    done: dict[str, list[str]] = {"requeued": [], "cancelled": end_orphans(ctx, now=now, limit=limit), "failed": []}
    with ctx.db.session() as s:
        rows = list(s.execute(select(_EX.c.id, _EX.c.tenant_id, _EX.c.attempts, _EX.c.worker, _EX.c.lease_until,
                                     _EX.c.cancel_requested_at, _EX.c.cancelled_by, expired.label("lost"))
                              .where(_EX.c.status == "running", or_(expired, ignored))
                              .order_by(_EX.c.id).limit(limit)))
    if not rows:
        return done
    max_attempts = ctx.settings.max_attempts
    for r in rows:
        if r.cancel_requested_at is not None:
            why = (_lost_message(r.worker, r.attempts, r.lease_until) if r.lost
                   else f"its worker {r.worker or '?'} did not stop it within {lease:g} s")
            ended = end(ctx, {r.id: f"cancelled by {r.cancelled_by or 'the tenant'}: {why}"}, status="cancelled",
                        where=(_EX.c.status == "running", or_(expired, ignored)), now=now)
            if ended:
                done["cancelled"].append(r.id)
                log.warning("execution %s cancelled by the lease recovery: %s", r.id, why,
                            extra={"execution_id": r.id, "tenant": r.tenant_id})
        elif r.attempts >= max_attempts:
            why = _lost_message(r.worker, r.attempts, r.lease_until)
            ended = end(ctx, {r.id: f"dead-lettered: {why}; that was attempt {r.attempts} of {max_attempts}"},
                        status="failed", dead_lettered=True,
                        where=(_EX.c.status == "running", _EX.c.attempts == r.attempts, expired), now=now)
            if ended:
                done["failed"].append(r.id)
                log.warning("execution %s failed and dead-lettered by the lease recovery: %s", r.id, why,
                            extra={"execution_id": r.id, "tenant": r.tenant_id})
    requeue = [r for r in rows if r.cancel_requested_at is None and r.attempts < max_attempts]
    if requeue:
        done["requeued"] = _requeue(ctx, requeue, expired)
    return done


def _requeue(ctx: Context, rows: list, expired) -> list[str]:
    """Put lost running rows back to ``queued`` (guarded by the attempt seen) and publish their tasks."""
    back = []
    with ctx.db.session() as s:
        for r in rows:
            why = _lost_message(r.worker, r.attempts, r.lease_until)
            row = s.execute(update(_EX).where(_EX.c.id == r.id, _EX.c.status == "running",
                                              _EX.c.attempts == r.attempts, expired, _VERSION_ALIVE)
                            .values(status="queued", message=f"requeued: {why}").returning(*_EX.c)).first()
            if row is not None:
                back.append(row)
                log.warning("execution %s put back on its queue by the lease recovery: %s", r.id, why,
                            extra={"execution_id": r.id, "tenant": r.tenant_id})
    if back:  # if this fails, the rows are queued with no task: the rescue publishes them (rescue.py)
        publish(ctx.celery, task_messages(back, ctx.settings.task_batch))
    return [r.id for r in back]


def end_orphans(ctx: Context, *, package: tuple[str, str] | None = None, now: dt.datetime | None = None,
                limit: int = MAX_PER_SWEEP) -> list[str]:
    """Record ``cancelled`` the executions of deleted packages that no worker will run: every
    ``queued`` one (its queue may be consumed by nobody now; not a dead letter: it stays one, and
    its retry says the package was deleted), and every ``running`` one whose
    lease ran out (put back, it would wait on such a queue for good). ``package``: (tenant, name),
    only that package's (``delete_package`` calls it at once; the recovery sweeps them all,
    which also covers a delete that stopped between its commit and this). Returns their ids."""
    now = now or utcnow()
    orphan = and_(not_(_VERSION_ALIVE),
                  or_(and_(_EX.c.status == "queued", _EX.c.dead_lettered.is_(False)),  # a dead letter waits
                      and_(_EX.c.status == "running", _expired(now, lease_s(ctx)))))  # for the tenant's retry
    scope = (_EX.c.tenant_id == package[0], _EX.c.package == package[1]) if package else ()
    with ctx.db.session() as s:
        rows = list(s.execute(select(_EX.c.id, _EX.c.package, _EX.c.status)
                              .where(orphan, *scope).order_by(_EX.c.id).limit(limit)))
    if not rows:
        return []
    ended = end(ctx, {r.id: f"package {r.package!r} was deleted before the execution "
                            f"{'ran' if r.status == 'queued' else 'finished (its worker was lost)'}"
                      for r in rows},
                status="cancelled", where=(orphan,), now=now)
    for rec in ended:
        log.warning("execution %s cancelled: its package %s was deleted", rec["id"], rec.get("package"),
                    extra={"execution_id": rec["id"], "tenant": rec.get("tenant")})
    return [rec["id"] for rec in ended]


def sweep(ctx: Context) -> dict[str, list[str]] | None:
    """``recover`` by one worker at a time (a Redis lock held for one period); None: another
    worker holds the lock."""
    period = sweep_period(ctx.settings)
    if not ctx.redis.set(LOCK_KEY, "1", nx=True, px=max(500, int(period * 1000))):
        return None
    return recover(ctx)


def sweep_period(settings) -> float:
    """Seconds between two recoveries: half a lease."""
    return max(0.5, float(settings.execution_lease_s) / 2)


def cancel_if_lost(ctx: Context, tenant: str, execution_id: str, by: str) -> dict | None:
    """``jobico executions cancel`` of a running execution whose lease ran out (its worker is
    lost): recorded ``cancelled`` at once. Returns its record, or None (not running, or leased)."""
    now = utcnow()
    ended = end(ctx, {execution_id: f"cancelled by {by}: its worker stopped renewing its lease while it ran"},
                status="cancelled", now=now,
                where=(_EX.c.tenant_id == tenant, _EX.c.status == "running", _expired(now, lease_s(ctx))),
                values={"cancelled_by": func.coalesce(_EX.c.cancelled_by, by),
                        "cancel_requested_at": func.coalesce(_EX.c.cancel_requested_at, now)})
    return ended[0] if ended else None
