"""Execution records: creation (ingest and chaining), enqueueing, reading."""
from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from operator import attrgetter
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, delete, func, insert, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import selectinload

from .. import priority, tracing
from ..broker import BatchMessage, TaskMessage, publish, results_channel
from ..canonical import loads
from ..db import STATUSES, Execution, ExecutionLog, PackageVersion, utcnow
from ..errors import BadRequest, Conflict, Invalid, NotFound
from ..flow import debounce_key, flow_record, resolve
from ..ids import is_uuid, uuid7, uuid7s
from .context import Context

if TYPE_CHECKING:  # only annotations: packages imports leases, which imports this module
    from .packages import VersionInfo

log = logging.getLogger(__name__)

MAX_CHAIN_DEPTH = 16


def new_execution(info: VersionInfo, event: str, payload: str, *, submitter: str | None, trigger: str,
                  chained_from: str | None = None, chain_depth: int = 0, scheduled_at=None,
                  execution_id: str | None = None, resubmitted_from: str | None = None,
                  priority: int | None = None, trace: tuple[str | None, str | None] = (None, None)) -> Execution:
    """``execution_id``: chosen by the caller (the MQTT bridge names an execution before it exists,
    to recognise a redelivered message); a new UUIDv7 otherwise. ``trace``: (trace id, parent span
    id) it continues (``jobico_core.tracing``)."""
    return Execution(id=execution_id or uuid7(), tenant_id=info.tenant, package=info.package, version=info.number,
                     version_id=info.version_id, event=event, queue=info.queue_for(event), status="queued",
                     payload=payload, stdout="", attempts=0, dead_lettered=False, chained_from=chained_from,
                     chain_depth=chain_depth, submitter=submitter, trigger=trigger, scheduled_at=scheduled_at,
                     locks=info.locks_for(event), resubmitted_from=resubmitted_from,
                     priority=priority or info.spec.events[event].priority, trace_id=trace[0], trace_parent=trace[1],
                     **_flow_columns(info, event, payload))


def _flow_columns(info: VersionInfo, event: str, payload: str) -> dict[str, Any]:
    declared = info.spec.events[event].flow
    if not declared:
        return {}
    flow = resolve(declared, loads(payload))
    return {"flow": flow, "debounce_key": debounce_key(flow)}


@dataclass
class NewExecution:
    """A new execution's column values without the ORM (ingest builds up to thousands per request)."""
    id: str
    tenant_id: str
    package: str
    version: int
    version_id: int
    event: str
    queue: str
    payload: str
    submitter: str | None
    trigger: str
    status: str = "queued"
    stdout: str = ""
    attempts: int = 0
    dead_lettered: bool = False
    chained_from: str | None = None
    chain_depth: int = 0
    scheduled_at: Any = None  # a cron fire's time (the unique index refuses a second row for it)
    locks: str | None = None  # the event's named locks, comma-separated (Execution.locks)
    resubmitted_from: str | None = None
    flow: str | None = None  # flow control as resolved for the payload (Execution.flow)
    debounce_key: str | None = None
    priority: int | None = None  # Execution.priority
    trace_id: str | None = None  # Execution.trace_id, trace_parent (jobico_core.tracing)
    trace_parent: str | None = None


def new_executions(info: VersionInfo, event: str, payloads: list[str], *, submitter: str | None,
                   trigger: str, scheduled_at=None, execution_id: str | None = None,
                   resubmitted_from: str | None = None, priority: int | None = None) -> list[NewExecution]:
    """``execution_id``: the id of a single new execution chosen by the caller (see ``new_execution``);
    ``resubmitted_from``: the execution a resubmission repeats (``services.controls.resubmit_execution``)."""
    if execution_id is not None and len(payloads) != 1:
        raise ValueError("execution_id names one execution")
    ids = [execution_id] if execution_id is not None else uuid7s(len(payloads))
    if not ids:
        return []
    first = NewExecution(ids[0], info.tenant, info.package, info.number, info.version_id, event,
                         info.queue_for(event), payloads[0], submitter, trigger, scheduled_at=scheduled_at,
                         locks=info.locks_for(event), resubmitted_from=resubmitted_from,
                         priority=priority or info.spec.events[event].priority)
    trace_id, trace_parent = tracing.current_ids()
    if trace_id is not None:  # the request's span: each execution's spans are its children
        first.trace_id, first.trace_parent = trace_id, trace_parent
    rows = [first]
    if len(ids) > 1:  # the others: copies of the first's column values with their own id and payload
        template, new = first.__dict__, object.__new__  # (the dataclass's __init__: 2.3 times as long)
        for i, p in zip(ids[1:], payloads[1:]):
            r = new(NewExecution)
            r.__dict__ = d = template.copy()  # the fields, in their order (new_columns)
            d["id"], d["payload"] = i, p
            rows.append(r)
    declared = info.spec.events[event].flow
    if declared:  # undeclared: the row's flow columns keep their defaults (None)
        for r in rows:
            r.flow = resolve(declared, loads(r.payload))
            r.debounce_key = debounce_key(r.flow)
    return rows


def lock_names(column: str | None) -> tuple[str, ...]:
    """The names in an ``Execution.locks`` value."""
    return tuple(column.split(",")) if column else ()


def task_message(e: Execution | NewExecution) -> TaskMessage:
    return TaskMessage(execution_id=e.id, payload=e.payload, tenant=e.tenant_id, package=e.package,
                       event=e.event, queue=e.queue, locks=lock_names(e.locks), flow=e.flow,
                       traceparent=tracing.traceparent(e.trace_id, e.trace_parent))


_INSERT = insert(cast(Table, Execution.__table__))
_COLUMNS = tuple(c.name for c in Execution.__table__.columns)
# unbounded element types: the INSERT itself then refuses a value too long for its column
# (an explicit CAST to VARCHAR(n) would silently truncate it)
_PG_TYPES = {c.name: re.sub(r"\(\d+\)", "", c.type.compile(dialect=postgresql.dialect()))
             for c in Execution.__table__.columns}
_PG_INSERTS: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = {}


# every field of a NewExecution is a column: its values are its fields
_NEW_FIELDS = tuple(f.name for f in fields(NewExecution))
_NEW_IS_COLUMNS = set(_NEW_FIELDS) <= set(_COLUMNS)
_DICT = attrgetter("__dict__")


def _values(e: Execution | NewExecution) -> dict[str, Any]:
    """The column values set on a new execution; the rest take their defaults."""
    d = e.__dict__
    if _NEW_IS_COLUMNS and type(e) is NewExecution:
        return dict(d)
    return {k: d[k] for k in _COLUMNS if k in d}


def new_columns(rows) -> list[tuple] | None:
    """Each column's values (``_NEW_FIELDS``' order) when every row is a ``NewExecution``, else
    None. A ``NewExecution``'s ``__dict__`` holds its fields in their order (its constructor sets
    them; ``new_executions`` copies one), so the rows' dicts' values, zipped, are the columns:
    transposed in C, nothing per value in Python (100 rows: 38 us, against 140 us for a dict per
    row and a list per column)."""
    if not _NEW_IS_COLUMNS or not all(type(e) is NewExecution for e in rows):
        return None
    return list(zip(*map(dict.values, map(_DICT, rows))))


class VersionGone(NotFound):
    """The package version new executions belong to was deleted while they were being recorded."""


def _one_shape(values: list[dict[str, Any]]) -> bool:
    """Whether every row sets the same columns, in the same order."""
    if len(values) == 1:
        return True
    cols = tuple(values[0])
    return all(tuple(v) == cols for v in values)


def _insert_values(conn, values: list[dict[str, Any]]) -> int:
    """INSERT new executions whose package version still exists (SQLite; rows of mixed shapes: not
    ``_insert_columns``'s one statement); returns how many went in. A Core INSERT, then the
    versions are read back in the same transaction (SQLite's writer holds the database: nothing
    can delete them in between)."""
    conn.execute(_INSERT, values)
    versions = {v["version_id"] for v in values}
    found = set(conn.execute(select(PackageVersion.id).where(PackageVersion.id.in_(versions))
                             .with_for_update(key_share=True, read=True)).scalars())
    return len(values) if found == versions else 0


def _insert_columns(conn, cols: tuple[str, ...], columns: list) -> int:
    """PostgreSQL: INSERT the rows whose columns ``cols`` hold ``columns`` (one sequence of
    values per column, a value per row) while their package version exists; returns how many
    went in.

    ONE statement, ``INSERT ... SELECT FROM
    unnest(<one array per column that varies>)`` (one round trip, the same statement text whatever
    the count, so psycopg prepares it; measured 8.7 ms for 100 rows against 12.7 ms for an
    executemany). A column whose value is the same in every row (tenant, package, event, queue,
    status, submitter, ...) is sent once, as a plain parameter, not as an array of copies: 100 rows
    of one request then adapt 2 arrays (ids, payloads) instead of 25 (measured 2.1 ms against 4.1 ms
    for 100 rows, client side included). Each row goes in only if its version row exists, locked
    ``FOR KEY SHARE`` (once, when all rows share a version) until the commit: a delete of the
    version (its package, its tenant) waits for the rows, which it then deletes too
    (``tenants.delete_tenant``), or it came first and no row goes in."""
    n = len(columns[0])
    varying = tuple(c for c, col in zip(cols, columns) if c == "id" or col.count(col[0]) != n)
    return _insert_params(conn, cols, {c: _pg_array(col) if c in varying else col[0]
                                       for c, col in zip(cols, columns)}, varying)


def _insert_params(conn, cols: tuple[str, ...], params: dict[str, Any], varying: tuple[str, ...] = ()) -> int:
    """``_insert_columns``' statement run with ``params`` (an array literal for each column of
    ``varying``, a value for the others). One row: its values, ``varying`` empty, the statement
    then without unnest (measured 0.36 ms against 0.55 ms through unnest)."""
    if "created_at" not in cols:
        cols += ("created_at",)
        params["created_at"] = utcnow()
    sql = _PG_INSERTS.get((cols, varying))
    if sql is None:
        # compiled once to the driver's SQL and run by exec_driver_sql: SQLAlchemy's statement
        # cache lookup and parameter processing cost ~40 us of CPU per statement (measured: 1-row
        # INSERT in autocommit 199-249 us through execute(text()), 158-176 us this way); errors
        # are still SQLAlchemy's (a lost connection invalidates the pool, the API answers 503)
        sql = str(_pg_insert(cols, varying).compile(dialect=conn.dialect))
        if len(_PG_INSERTS) < 256:  # a handful of shapes in practice; never grows without bound
            _PG_INSERTS[(cols, varying)] = sql
    return conn.exec_driver_sql(sql, params).rowcount


def _pg_array(values: Sequence) -> str | list:
    """A column's values for ``CAST(:c AS <type>[])``: when all are strings (or None), one
    PostgreSQL array literal built by str methods (25 us for 100 ids and 100 payloads, where
    psycopg's list dumper, in Python, takes 800 us: a tenth of a 100-event request's CPU);
    other values as the list, for psycopg to adapt."""
    try:
        joined = "\x00".join(values)
    except TypeError:  # a None (or a value that is not text) among them
        if not all(v is None or type(v) is str for v in values):
            return list(values)
        return "{" + ",".join("NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
                              for v in values) + "}"
    if joined.count("\x00") != len(values) - 1:  # a value holds NUL itself (which PostgreSQL refuses)
        return list(values)
    # joined at NUL, escaped in one pass, then cut into quoted elements at the NULs
    return '{"' + joined.replace("\\", "\\\\").replace('"', '\\"').replace("\x00", '","') + '"}'


def _pg_insert(cols: tuple[str, ...], varying: tuple[str, ...]):
    """The INSERT of ``_insert_columns``: the ``varying`` columns from one array each (unnest),
    the others from one plain parameter each; rows only while their version exists."""
    def quoted(names: tuple[str, ...]) -> str:
        return ", ".join(f'"{c}"' for c in names)
    row = ", ".join(f'u."{c}"' if c in varying else f"CAST(:{c} AS {_PG_TYPES[c]})" for c in cols)
    source = ""
    if varying:
        arrays = ", ".join(f"CAST(:{c} AS {_PG_TYPES[c]}[])" for c in varying)
        source = f" FROM unnest({arrays}) AS u({quoted(varying)})"
    version = "u.version_id" if "version_id" in varying else "CAST(:version_id AS INTEGER)"
    return text(f"INSERT INTO executions ({quoted(cols)}) SELECT {row}{source} "
                f"WHERE EXISTS (SELECT 1 FROM package_versions v WHERE v.id = {version} FOR KEY SHARE)")


def fence_chained(s, children: list[Execution]) -> list[Execution]:
    """The chained executions (``children``) a recording transaction may insert: those whose
    package version still exists, its row locked ``FOR KEY SHARE`` until the commit on PostgreSQL,
    as ``_insert_columns`` does for the first execution of a trigger. A tenant delete
    (``tenants.delete_tenant``) then waits for the commit and deletes them too, or it came first
    and they are dropped: no chained row stays under a deleted tenant's name (nor of a deleted
    package, whose version is gone). Call it first in the recording transaction, before the
    outcome's UPDATE locks an execution row: a tenant delete locks its versions, then its
    executions; taken in the same order, the two cannot deadlock. On SQLite the outcome's UPDATE
    already serializes the recording with a tenant delete (one writer at a time, and the delete
    removes the parent too)."""
    if not children:
        return []
    versions = {c.version_id for c in children}
    found = set(s.scalars(select(PackageVersion.id).where(PackageVersion.id.in_(versions))
                          .with_for_update(key_share=True, read=True)))
    return [c for c in children if c.version_id in found]


def task_messages(rows, batch: int, columns: list[tuple] | None = None) -> list[TaskMessage | BatchMessage]:
    """The tasks that carry ``rows``: consecutive rows of one tenant/package/event/queue go
    together, at most ``batch`` per task; a lone row is a single-execution task. Rows with
    named locks or flow control always travel alone: each takes its locks (passes its flow
    control) before it is claimed. ``columns``: the rows' ``new_columns``, if they are
    ``NewExecution``s: rows that all share their tasks are then grouped without a look at each."""
    if columns is not None and rows:
        shared = _shared_tasks(rows, columns, batch)
        if shared is not None:
            return shared
    out: list[TaskMessage | BatchMessage] = []
    group: list = []

    def flush():
        if len(group) == 1:
            out.append(task_message(group[0]))
        elif group:
            g = group[0]
            out.append(BatchMessage(tuple(e.id for e in group), g.tenant_id, g.package, g.event, g.queue))
        group.clear()

    for e in rows:
        if e.locks or e.flow or e.priority:
            flush()
            out.append(replace(task_message(e), priority=e.priority) if e.priority else task_message(e))
            continue
        if group and (len(group) >= batch or (e.tenant_id, e.package, e.event, e.queue)
                      != (group[0].tenant_id, group[0].package, group[0].event, group[0].queue)):
            flush()
        group.append(e)
    flush()
    return out


_SHARED_BY_A_TASK = tuple(_NEW_FIELDS.index(c) for c in ("tenant_id", "package", "event", "queue"))
_ALONE = tuple(_NEW_FIELDS.index(c) for c in ("locks", "flow", "priority"))
_NEW_ID = _NEW_FIELDS.index("id")


def _shared_tasks(rows: list[NewExecution], columns: list[tuple],
                  batch: int) -> list[TaskMessage | BatchMessage] | None:
    """``task_messages(rows, batch)`` read from the rows' ``columns`` when every row may share a
    task with every other (one tenant/package/event/queue, no named locks, flow control nor
    priority: a request's rows): the ids cut into tasks of ``batch``, a lone one a task of its
    own. None otherwise."""
    ids, n = columns[_NEW_ID], len(rows)
    if any(any(columns[i]) for i in _ALONE) or \
            any(columns[i].count(columns[i][0]) != n for i in _SHARED_BY_A_TASK):
        return None
    first = rows[0]
    return [task_message(rows[k]) if min(batch, n - k) == 1 else
            BatchMessage(ids[k:k + batch], first.tenant_id, first.package, first.event, first.queue)
            for k in range(0, n, batch)]


def enqueue(ctx: Context, rows: list[Execution] | list[NewExecution], session=None) -> list[str]:
    """Commit the rows as ``queued``, then publish their tasks (``task_messages``: the rows
    of one request share tasks of up to JOBICO_TASK_BATCH executions).

    Rows first, so a worker never receives a task before its row exists; rows only for a
    package version that still exists (``_insert_columns``: else ``VersionGone``, a 404, and
    nothing stays), so a deleted tenant gets no row after its delete. If
    the broker refuses, the rows are removed again and ``Unavailable`` is
    raised: nothing of the request stays enqueued (a task already published
    for a removed row is dropped by the worker, which finds no row).
    ``session``: the caller's session (its reads, if any, are ended here first).

    On PostgreSQL the rows go in with ONE statement in autocommit: it commits
    itself, so the rows are durable before the first task is published, in one
    round trip (no BEGIN/COMMIT); elsewhere (SQLite) in one transaction.
    """
    pg = ctx.db.engine.dialect.name == "postgresql"
    # one row: its dict is quicker than columns of one value (and a look at it than at them)
    columns = new_columns(rows) if len(rows) > 1 else None
    if columns is None:
        values = [_values(e) for e in rows]
        cols = tuple(values[0])
        ids = [e.id for e in rows]
        messages = task_messages(rows, ctx.settings.task_batch)
        one_statement = pg and _one_shape(values)
    else:  # NewExecutions (ingest): their columns, no dict per row
        values, cols = [], _NEW_FIELDS  # (dicts only for SQLite, below)
        ids = list(columns[_NEW_ID])
        messages = task_messages(rows, ctx.settings.task_batch, columns)
        one_statement = pg
    if session is not None:
        session.commit()  # ends the request's read transaction, if it opened one
    with ctx.db.autocommit() if one_statement else ctx.db.engine.begin() as conn:
        # Core: no ORM unit of work
        if not one_statement:
            inserted = _insert_values(conn, values if columns is None else [_values(e) for e in rows])
        elif columns is not None:
            inserted = _insert_columns(conn, cols, columns)
        elif len(values) == 1:
            inserted = _insert_params(conn, cols, values[0])
        else:
            inserted = _insert_columns(conn, cols, [[v[c] for v in values] for c in cols])
        if inserted != len(rows):  # a version was deleted meanwhile: nothing of the request stays
            if one_statement and inserted:  # committed already (autocommit); elsewhere the raise rolls back
                conn.execute(delete(Execution).where(Execution.id.in_(ids)))
            raise VersionGone(f"package {rows[0].package!r} version {rows[0].version} of tenant "
                              f"{rows[0].tenant_id!r} was deleted while the events were being accepted")
    try:
        if any(m.priority for m in messages if isinstance(m, TaskMessage)):
            priority.add(ctx.redis, rows, ctx.settings.priority_age_s)
        publish(ctx.celery, messages)
    except Exception:
        with ctx.db.autocommit() as conn:
            conn.execute(delete(Execution).where(Execution.id.in_(ids)))
        raise
    return ids


def to_dict(e: Execution, *, logs: bool = True) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": e.id, "tenant": e.tenant_id, "package": e.package, "version": e.version, "event": e.event,
        "status": e.status, "code": e.code, "result": e.result, "stdout": e.stdout or "", "limit": e.limit,
        "message": e.message, "attempts": e.attempts, "dead_lettered": e.dead_lettered,
        "chained_from": e.chained_from, "submitter": e.submitter, "trigger": e.trigger, "worker": e.worker,
        "scheduled_at": _iso(e.scheduled_at), "duration_ms": e.duration_ms, "seq": e.seq,
        "locks": list(lock_names(e.locks)), "waiting_for": e.waiting_for, "resubmitted_from": e.resubmitted_from,
        "cancelled_by": e.cancelled_by, "flow": flow_record(e.flow), "superseded_by": e.superseded_by,
        "priority": e.priority, "trace_id": e.trace_id,
        "created_at": _iso(e.created_at), "started_at": _iso(e.started_at), "finished_at": _iso(e.finished_at),
    }
    if logs:
        d["logs"] = [{"level": r.level, "message": r.message} for r in e.logs]
    return d


def announce(ctx: Context, data: dict) -> None:
    """Stream a finished execution's record on its tenant's pub/sub channel (at most once): the
    worker after recording an outcome, the API after cancelling a queued execution."""
    if not data:
        return
    try:
        ctx.redis.publish(results_channel(data["tenant"]), json.dumps(data, ensure_ascii=False))
    except Exception as exc:  # the record is safe in the database; the stream replays from it
        log.warning("could not publish execution %s on pub/sub: %s", data.get("id"), exc,
                    extra={"execution_id": data.get("id"), "tenant": data.get("tenant")})


def announce_many(ctx: Context, records: list[dict]) -> bool:
    """Stream several finished executions' records in one pipeline, in this order (at most once,
    like ``announce``; the worker's announcer thread, ``jobico_worker.announcer``). False when
    Redis could not take them (logged: the stream's catch-up sends them from the database)."""
    records = [r for r in records if r]
    if not records:
        return True
    try:
        pipe = ctx.redis.pipeline(transaction=False)
        for data in records:
            pipe.publish(results_channel(data["tenant"]), json.dumps(data, ensure_ascii=False))
        pipe.execute()
        return True
    except Exception as exc:  # the records are safe in the database; the stream replays from them
        log.warning("could not publish %d executions on pub/sub: %s", len(records), exc)
        return False


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
        d["resubmissions"] = list(s.scalars(select(Execution.id).where(Execution.resubmitted_from == e.id)
                                            .order_by(Execution.id)))
        return d


def decode_cursor(after: str | None) -> str | None:
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
    before = decode_cursor(cursor)
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


def running_executions(ctx: Context, tenant: str, *, package: str | None = None,
                       limit: int = 200) -> dict[str, Any]:
    """What runs now, per package (packages by name, oldest start first within each), with
    each execution's worker, attempt and age in seconds; at most ``limit`` (``truncated`` says
    whether there were more).

    A batch task (``jobico.execute_batch``) claims its executions together (one statement:
    each row ``running``, with the same worker and ``started_at``) and runs them one after the
    other, in id order, recording the finished ones in flushes (``jobico_worker.batch``). So
    of the rows sharing a claim one at a time is in the sandbox: the first one not recorded yet
    is listed (the one running, or one that finished and waits for the next flush), with
    ``batch_waiting`` = how many of its batch are claimed behind it (0 for a task of its own);
    those are counted in the package's ``claimed``, not listed. ``age_s`` counts from the claim.
    """
    claim = (Execution.worker, Execution.started_at)
    ranked = (select(Execution.id.label("rid"),
                     func.row_number().over(partition_by=claim, order_by=Execution.id).label("rn"),
                     func.count().over(partition_by=claim).label("n"))
              .where(Execution.tenant_id == tenant, Execution.status == "running"))
    if package is not None:
        ranked = ranked.where(Execution.package == package)
    sq = ranked.subquery()
    q = (select(Execution, sq.c.n).join(sq, sq.c.rid == Execution.id).where(sq.c.rn == 1)
         .order_by(Execution.package, Execution.started_at, Execution.id))
    with ctx.db.session() as s:
        rows = list(s.execute(q.limit(limit + 1)))
    now = utcnow()
    groups: dict[str, dict[str, Any]] = {}
    for e, n in rows[:limit]:
        d = to_dict(e, logs=False)
        d["age_s"] = round((now - e.started_at).total_seconds(), 3) if e.started_at else None
        d["batch_waiting"] = n - 1
        group = groups.setdefault(e.package, {"package": e.package, "running": 0, "claimed": 0, "items": []})
        group["running"] += 1
        group["claimed"] += n - 1
        group["items"].append(d)
    return {"packages": list(groups.values()), "total": min(len(rows), limit), "truncated": len(rows) > limit}


def retry_execution(ctx: Context, tenant: str, execution_id: str) -> dict[str, Any]:
    """Replay a dead-lettered execution: same id and payload, attempts carry on."""
    if not is_uuid(execution_id):
        raise NotFound(f"execution {execution_id!r} does not exist")
    with ctx.db.session() as s:
        e = s.scalar(select(Execution).where(Execution.id == execution_id, Execution.tenant_id == tenant)
                     .with_for_update())
        if e is None:
            raise NotFound(f"execution {execution_id!r} does not exist")
        if not e.dead_lettered:
            raise Conflict(f"execution {execution_id} is not dead-lettered (status {e.status}); "
                           "only dead-lettered executions can be retried")
        version = s.get(PackageVersion, e.version_id)
        if version is None or (version.package.tenant_id, version.package.name, version.number) != \
                (e.tenant_id, e.package, e.version):  # never another's: version ids are never reused
            raise Conflict(f"execution {execution_id} cannot be retried: package {e.package!r} version "
                           f"{e.version} was deleted")
        s.execute(delete(ExecutionLog).where(ExecutionLog.execution_id == e.id))
        e.status, e.dead_lettered, e.message = "queued", False, f"retried by the tenant after: {e.message or e.status}"
        e.code = e.result = e.limit = e.finished_at = e.seq = e.duration_ms = None
        e.stdout = ""
        msg = task_message(e)
        data = to_dict(e, logs=False)
    publish(ctx.celery, [msg])
    return data


# -- the live stream's replay (GET /api/v1/executions/stream) --------------------------------
def _finished_query(tenant: str, package: str | None, event: str | None, status: str | None):
    q = (select(Execution).options(selectinload(Execution.logs))
         .where(Execution.tenant_id == tenant, Execution.seq.is_not(None)))
    for column, value in ((Execution.package, package), (Execution.event, event), (Execution.status, status)):
        if value is not None:
            q = q.where(column == value)
    return q


def finished_after(ctx: Context, tenant: str, after: int, *, package: str | None = None,
                   event: str | None = None, status: str | None = None, limit: int = 500,
                   lookback_seconds: float = 0.0, lookback_seqs: int = 20000,
                   not_below: int | None = None) -> list[dict[str, Any]]:
    """Finished executions of ``tenant`` with ``seq > after``, in seq order, with logs (at most ``limit``).

    ``lookback_seconds`` > 0 also returns those with ``seq < after`` (never ``after``
    itself: the client named it, so it has it) that finished
    at most that long before the execution whose seq is ``after`` (and within
    ``lookback_seqs`` positions of it, which bounds the index scan): a recording
    transaction can commit after one holding a higher seq (PostgreSQL sequences
    are not commit-ordered), so the stream re-checks that window and the client
    deduplicates by execution ``id``. ``not_below``: the lookback never goes to
    seq <= this (where a connection started).
    """
    import datetime as dt
    q = _finished_query(tenant, package, event, status)
    with ctx.db.session() as s:
        rows = list(s.scalars(q.where(Execution.seq > after).order_by(Execution.seq).limit(limit)))
        if lookback_seconds > 0:
            ref = s.scalar(select(Execution.finished_at)
                           .where(Execution.tenant_id == tenant, Execution.seq == after))
            if ref is not None:
                since = ref - dt.timedelta(seconds=lookback_seconds)
                floor = after - lookback_seqs if not_below is None else max(not_below, after - lookback_seqs)
                late = list(s.scalars(q.where(Execution.seq < after, Execution.seq > floor,
                                              Execution.finished_at >= since)
                                      .order_by(Execution.seq).limit(limit)))
                rows = late + rows
        return [to_dict(e) for e in rows]


def recent_finished(ctx: Context, tenant: str, n: int, *, package: str | None = None,
                    event: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
    """The ``n`` most recently finished executions of ``tenant`` (filtered), oldest first, with logs."""
    if n <= 0:
        return []
    q = _finished_query(tenant, package, event, status)
    with ctx.db.session() as s:
        rows = list(s.scalars(q.order_by(Execution.seq.desc()).limit(n)))
        return [to_dict(e) for e in reversed(rows)]


def last_seq(ctx: Context, tenant: str) -> int:
    """The highest stream position among ``tenant``'s finished executions (0 when none).

    ``seq IS NOT NULL`` changes no result (max ignores NULLs) but lets SQLite read the answer
    from the partial index ``ix_executions_tenant_seq`` (PostgreSQL infers it by itself)."""
    from sqlalchemy import func
    with ctx.db.session() as s:
        return int(s.scalar(select(func.max(Execution.seq))
                            .where(Execution.tenant_id == tenant, Execution.seq.is_not(None))) or 0)
