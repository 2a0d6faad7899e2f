"""Execution records: creation (ingest and chaining), enqueueing, reading."""
from __future__ import annotations

import base64
import json
from typing import Any, Iterable

from sqlalchemy import delete, select
from sqlalchemy.orm import selectinload

from ..broker import TaskMessage, publish
from ..db import STATUSES, Execution
from ..errors import BadRequest, Invalid, NotFound
from ..ids import is_uuid, uuid7
from .context import Context
from .packages import VersionInfo

MAX_CHAIN_DEPTH = 16


def new_execution(info: VersionInfo, event: str, payload: str, *, submitter: str | None, trigger: str,
                  chained_from: str | None = None, chain_depth: int = 0) -> Execution:
    return Execution(id=uuid7(), tenant_id=info.tenant, package=info.package, version=info.number,
                     version_id=info.version_id, event=event, queue=info.queue_for(event), status="queued",
                     payload=payload, stdout="", attempts=0, dead_lettered=False, chained_from=chained_from,
                     chain_depth=chain_depth, submitter=submitter, trigger=trigger)


def task_message(e: Execution) -> TaskMessage:
    return TaskMessage(execution_id=e.id, payload=e.payload, tenant=e.tenant_id, package=e.package,
                       event=e.event, queue=e.queue)


def enqueue(ctx: Context, rows: list[Execution]) -> list[str]:
    """Commit the rows as ``queued``, then publish their tasks.

    Rows first, so a worker never receives a task before its row exists. If
    the broker refuses, the rows are removed again and ``Unavailable`` is
    raised: nothing of the request stays enqueued (a task already published
    for a removed row is dropped by the worker, which finds no row).
    """
    with ctx.db.session() as s:
        s.add_all(rows)
    try:
        publish(ctx.celery, [task_message(e) for e in rows])
    except Exception:
        with ctx.db.session() as s:
            s.execute(delete(Execution).where(Execution.id.in_([e.id for e in rows])))
        raise
    return [e.id for e in rows]


def to_dict(e: Execution, *, logs: bool = True) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": e.id, "tenant": e.tenant_id, "package": e.package, "version": e.version, "event": e.event,
        "status": e.status, "code": e.code, "result": e.result, "stdout": e.stdout or "", "limit": e.limit,
        "message": e.message, "attempts": e.attempts, "dead_lettered": e.dead_lettered,
        "chained_from": e.chained_from, "submitter": e.submitter, "trigger": e.trigger, "worker": e.worker,
        "duration_ms": e.duration_ms, "seq": e.seq,
        "created_at": _iso(e.created_at), "started_at": _iso(e.started_at), "finished_at": _iso(e.finished_at),
    }
    if logs:
        d["logs"] = [{"level": r.level, "message": r.message} for r in e.logs]
    return d


def _iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def get_execution(ctx: Context, tenant: str, execution_id: str) -> dict[str, Any]:
    if not is_uuid(execution_id):
        raise NotFound(f"execution {execution_id!r} does not exist")
    with ctx.db.session() as s:
        e = s.scalar(select(Execution).options(selectinload(Execution.logs))
                     .where(Execution.id == execution_id, Execution.tenant_id == tenant))
        if e is None:
            raise NotFound(f"execution {execution_id!r} does not exist")
        d = to_dict(e)
        d["payload"] = e.payload
        d["chain"] = list(s.scalars(select(Execution.id).where(Execution.chained_from == e.id)
                                    .order_by(Execution.id)))
        return d


def _cursor(after: str | None) -> str | None:
    if not after:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(after.encode() + b"==").decode())["id"]
        if is_uuid(value):
            return value
    except (ValueError, KeyError, TypeError):
        pass
    raise BadRequest("invalid page cursor", {"cursor": ["not a cursor returned by this API"]})


def encode_cursor(execution_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"id": execution_id}).encode()).decode().rstrip("=")


def list_executions(ctx: Context, tenant: str, *, package: str | None = None, event: str | None = None,
                    status: str | None = None, submitter: str | None = None, limit: int = 50,
                    cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, keyset-paginated: returns (items, next cursor or None)."""
    if status is not None and status not in STATUSES:
        raise Invalid(f"status must be one of {', '.join(STATUSES)}", {"status": [status]})
    before = _cursor(cursor)
    q = select(Execution).where(Execution.tenant_id == tenant)
    for column, value in ((Execution.package, package), (Execution.event, event),
                          (Execution.status, status), (Execution.submitter, submitter)):
        if value is not None:
            q = q.where(column == value)
    if before:
        q = q.where(Execution.id < before)
    with ctx.db.session() as s:
        rows = list(s.scalars(q.order_by(Execution.id.desc()).limit(limit + 1)))
        items = [to_dict(e, logs=False) for e in rows[:limit]]
    nxt = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return items, nxt


def executions_by_id(ctx: Context, ids: Iterable[str]) -> list[Execution]:
    with ctx.db.session() as s:
        return list(s.scalars(select(Execution).where(Execution.id.in_(list(ids)))))
