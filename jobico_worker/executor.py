"""One execution, start to finish, without Celery: claim, run, record, chain, announce.

Recording is exactly-once: the outcome, its logs and the chained execution
are written in one transaction, and a redelivered task whose record is
already final only makes sure the chained task was published.
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import bindparam, func, insert, literal_column, select, update
from sqlalchemy.exc import DBAPIError, OperationalError

from jobico_core import metrics, tracing
from jobico_core.abi import InvalidModule
from jobico_core.broker import publish
from jobico_core.cache import LRU
from jobico_core.canonical import dumps
from jobico_core.db import TERMINAL_STATUSES, DriverStatement, Execution, ExecutionLog, next_seq, utcnow
from jobico_core.errors import NotFound, Unavailable
from jobico_core.limits import resolve
from jobico_core.services.context import Context
from jobico_core.services.environment import redact_outcome
from jobico_core.services.environment import resolve as resolve_environment
from jobico_core.services.executions import (
    MAX_CHAIN_DEPTH,
    fence_chained,
    new_execution,
    task_message,
    to_dict,
)
from jobico_core.services.files import schema_validator
from jobico_core.services.leases import until as lease_until
from jobico_core.services.packages import VersionInfo, load_version
from jobico_runtime.interpreter import InterpreterNotReady
from jobico_worker.announcer import announce_many
from jobico_worker.cancellation import watch
from jobico_worker.heartbeat import holding
from jobico_worker.modules import module_bytes

log = logging.getLogger("jobico.worker")

# Infrastructure failures (database, object store, broker, Redis): retried with
# exponential backoff and jitter. Guest failures are results, never retried as such;
# anything else a task raises is an internal error (jobico_worker.failures).
INFRA_ERRORS = (Unavailable, OperationalError, DBAPIError, ConnectionError, TimeoutError, RedisConnectionError,
                RedisTimeoutError)


@dataclass
class Finished:
    execution: dict
    chained: str | None
    recorded: bool = True  # False: another delivery recorded it first (nothing written now)


_EX = Execution.__table__
# the final statuses as literals in the statement: a list of values would be an "expanding"
# parameter that SQLAlchemy renders again at every execution (a visible share of a claim)
_TERMINAL = [literal_column(f"'{s}'") for s in sorted(TERMINAL_STATUSES)]
_SELECT_BY_ID = select(_EX).where(_EX.c.id == bindparam("b_id"))

# Built once (statement construction was a visible share of an event's cost); the
# parameters are bound per call. Names are prefixed so none collides with a column.
_PREV = (select(_EX.c.id, _EX.c.status.label("prev_status")).where(_EX.c.id == bindparam("b_id"))
         .with_for_update().subquery())
_CLAIM = (update(_EX).where(_EX.c.id == _PREV.c.id, _PREV.c.prev_status.notin_(_TERMINAL))
          .values(status="running", attempts=_EX.c.attempts + 1, started_at=bindparam("b_now"),
                  worker=bindparam("b_worker"), waiting_for=None, lease_until=bindparam("b_lease_until"))
          .returning(_PREV.c.prev_status, *_EX.c))
# SQLite: RETURNING may only name the target table's columns, so the previous status is
# read first, in the same transaction (SQLite serialises writers anyway).
_CLAIM_SQLITE = (update(_EX).where(_EX.c.id == bindparam("b_id"), _EX.c.status.notin_(_TERMINAL))
                 .values(status="running", attempts=_EX.c.attempts + 1, started_at=bindparam("b_now"),
                         worker=bindparam("b_worker"), waiting_for=None, lease_until=bindparam("b_lease_until"))
                 .returning(*_EX.c))
_STATUS_BY_ID = select(_EX.c.status).where(_EX.c.id == bindparam("b_id"))
_RECORD_VALUES = {name: bindparam(f"b_{name}", type_=_EX.c[name].type) for name in (
    "status", "code", "result", "stdout", "limit", "dead_lettered", "finished_at", "duration_ms", "message")}
_RECORD = (update(_EX).where(_EX.c.id == bindparam("b_id"), _EX.c.status.notin_(_TERMINAL))
           .values(**_RECORD_VALUES).returning(*_EX.c))
_RECORD_PG = _RECORD.values(seq=func.nextval("execution_seq"))   # the stream position, same statement
RECORD_SEQ = _RECORD.values(seq=bindparam("b_seq", type_=_EX.c.seq.type))  # SQLite: a counter row
# the two statements of every execution, on psycopg directly (db.DriverStatement: ~150 us of CPU
# less each than through SQLAlchemy's execution)
_CLAIM_DRIVER = DriverStatement(_CLAIM)
_RECORD_DRIVER = DriverStatement(_RECORD_PG)
_INSERT_LOGS = insert(ExecutionLog)


def claim(ctx: Context, execution_id: str, worker: str):
    """Mark the row running. Returns (state, row): state is 'run', 'missing', 'done',
    or 'redelivered' when the row was already running (its worker died mid-execution,
    or the broker's visibility timeout expired).

    One statement, in autocommit (one round trip): the row is locked, flipped to
    ``running`` unless final, leased (``jobico_core.services.leases``) and returned with the
    status it had.
    """
    now = utcnow()
    params = {"b_id": execution_id, "b_now": now, "b_worker": worker, "b_lease_until": lease_until(ctx, now)}
    if ctx.db.engine.dialect.name != "postgresql":
        return _claim_sqlite(ctx, params)
    with ctx.db.driver_autocommit() as conn:
        row = _CLAIM_DRIVER.first(conn, ctx.db.engine.dialect, params)
    if row is not None:
        return ("redelivered" if row.prev_status == "running" else "run"), row
    with ctx.db.autocommit() as conn:  # final or missing (a redelivery, an aborted request): rare
        row = conn.execute(_SELECT_BY_ID, params).first()
    return ("missing", None) if row is None else ("done", row)


def _claim_sqlite(ctx: Context, params: dict):
    with ctx.db.session() as s:
        prev = s.execute(_STATUS_BY_ID, params).scalar()
        row = s.execute(_CLAIM_SQLITE, params).first() if prev is not None else None
        if row is not None:
            return ("redelivered" if prev == "running" else "run"), row
        row = s.execute(_SELECT_BY_ID, params).first()
    return ("missing", None) if row is None else ("done", row)


def _chain_target(info: VersionInfo, event: str, status: str) -> str | None:
    ev = info.spec.events.get(event)
    if ev is None:
        return None
    return ev.ok if status == "succeeded" else ev.error


def chained_row(ctx: Context, info: VersionInfo, row, status: str, code, result,
                trace: tuple[str | None, str | None] = (None, None)) -> tuple[Execution | None, str | None]:
    """The chained execution of an outcome (or why none fires). It continues the trace: a child
    of ``trace`` (trace id, span id), else of the current span (the record's), else it keeps
    the parent's own trace context."""
    target = _chain_target(info, row.event, status)
    if target is None:
        return None, None
    if row.chain_depth + 1 > MAX_CHAIN_DEPTH:
        return None, f"chained event {target!r} not fired: chains are at most {MAX_CHAIN_DEPTH} deep"
    payload_obj = {"code": code, "result": result, "status": status, "chained_from": row.id}
    ev = info.spec.events[target]
    validator = schema_validator(ctx, info.tenant, info.pins[ev.schema.schemaref])
    error = next(iter(validator.iter_errors(payload_obj)), None)
    if error is not None:
        return None, (f"chained event {target!r} not fired: its payload does not match schema "
                      f"{ev.schema.schemaref!r}: {error.message}")
    if trace[0] is None:
        trace = tracing.current_ids()
    if trace[0] is None:
        trace = (getattr(row, "trace_id", None), getattr(row, "trace_parent", None))
    child = new_execution(info, target, dumps(payload_obj), submitter="chain", trigger="chain",
                          chained_from=row.id, chain_depth=row.chain_depth + 1, trace=trace)
    return child, None


def record(ctx: Context, claimed, info: VersionInfo | None, *, status: str, code=None, result=None,
           stdout: str = "", limit: str | None = None, message: str | None = None, logs=(),
           duration_ms: float | None = None, dead_lettered: bool = False, chain: bool = True) -> Finished:
    """Write the outcome, its logs and the chained execution in one transaction
    (a ``jobico.record`` span; the chained execution's spans are its children).

    ``claimed`` is the row as ``claim`` returned it. The update only applies to a
    row that is not final yet, so a second delivery never records twice (nor
    fires its chain twice); the stream position comes from the same statement.
    ``chain=False``: the ok/error chain is not fired (a cancelled execution).
    """
    with tracing.span("jobico.record", {"jobico.execution_id": claimed.id, "jobico.status": status}):
        return _record(ctx, claimed, info, status=status, code=code, result=result, stdout=stdout, limit=limit,
                       message=message, logs=logs, duration_ms=duration_ms, dead_lettered=dead_lettered,
                       chain=chain)


def _record(ctx: Context, claimed, info: VersionInfo | None, *, status: str, code, result, stdout: str,
            limit: str | None, message: str | None, logs, duration_ms: float | None, dead_lettered: bool,
            chain: bool) -> Finished:
    child, note = (None, None) if info is None or not chain else \
        chained_row(ctx, info, claimed, status, code, result)
    params = {"b_id": claimed.id, "b_status": status, "b_code": code, "b_result": result,
              "b_stdout": stdout or "", "b_limit": limit, "b_dead_lettered": dead_lettered,
              "b_finished_at": utcnow(), "b_duration_ms": duration_ms,
              "b_message": "; ".join(m for m in (message, note) if m) or None}
    if ctx.db.engine.dialect.name == "postgresql" and not logs and child is None:
        # the outcome alone: one statement in autocommit, one round trip (no BEGIN/COMMIT)
        with ctx.db.driver_autocommit() as conn:
            row = _RECORD_DRIVER.first(conn, ctx.db.engine.dialect, params)
        if row is None:  # final already (another delivery recorded it) or deleted meanwhile
            with ctx.db.autocommit() as conn:
                return _not_recorded(conn.execute(_SELECT_BY_ID, {"b_id": claimed.id}).first())
        data = to_dict(row, logs=False)
        data["logs"] = []
        return Finished(data, None)
    with ctx.db.session() as s:
        if child is not None and not fence_chained(s, [child]):  # first: its version was deleted meanwhile
            child = None
        if s.bind.dialect.name == "postgresql":
            row = s.execute(_RECORD_PG, params).first()
        else:
            row = s.execute(RECORD_SEQ, {**params, "b_seq": next_seq(s)}).first()
        if row is None:
            s.rollback()
            return _not_recorded(s.execute(_SELECT_BY_ID, {"b_id": claimed.id}).first())
        if logs:
            s.execute(_INSERT_LOGS, [{"execution_id": row.id, "idx": i, "level": rec.level,
                                      "message": rec.message} for i, rec in enumerate(logs)])
        if child is not None:
            s.add(child)
            tracing.set_attributes(chained=child.id)
        data = to_dict(row, logs=False)
        data["logs"] = [{"level": r.level, "message": r.message} for r in logs]
    if child is not None:
        publish(ctx.celery, [task_message(child)])
    return Finished(data, child.id if child is not None else None)


def _not_recorded(row) -> Finished:
    if row is None:  # deleted meanwhile (its request was aborted)
        return Finished({}, None, recorded=False)
    return Finished(to_dict(row, logs=False), None, recorded=False)  # another delivery recorded it


def republish_chain(ctx: Context, execution_id: str) -> None:
    """After a redelivery of a recorded execution: make sure its chained task exists."""
    with ctx.db.session() as s:
        child = s.scalar(select(Execution).where(Execution.chained_from == execution_id,
                                                 Execution.status == "queued"))
    if child is not None:
        publish(ctx.celery, [task_message(child)])


def _finish(ctx: Context, claimed, info: VersionInfo | None, tenant: str, **outcome) -> dict:
    """Record a final outcome, count it and stream it (by this process's announcer, after the task)."""
    fin = record(ctx, claimed, info, **outcome)
    if fin.recorded:  # a concurrent duplicate delivery neither counts nor streams it a second time
        metrics.finished(tenant, outcome["status"], fin.execution.get("duration_ms"),
                         bool(fin.execution.get("dead_lettered")))
        announce_many(ctx, [fin.execution])
    return fin.execution


def requeue(ctx: Context, execution_id: str, note: str, countdown: float) -> None:
    """Put a claimed execution back on its queue for another attempt (guest retry)."""
    with ctx.db.session() as s:
        row = s.scalar(select(Execution).where(Execution.id == execution_id).with_for_update())
        if row is None or row.status in TERMINAL_STATUSES:
            return
        row.status, row.message = "queued", note
        msg = task_message(row)
    publish(ctx.celery, [msg], countdown=countdown)


def retry_delay(attempt: int, base: float = 1.0, cap: float = 60.0) -> float:
    """Exponential backoff with full jitter."""
    return random.uniform(min(base, cap) / 2, min(cap, base * (2 ** attempt)))


def backoff_cap(settings) -> float:
    """Longest retry countdown: 60 s, and under half the visibility timeout.

    A countdown task waits unacknowledged in a worker; one longer than the
    visibility timeout would be restored by Redis and delivered a second time.
    """
    return min(60.0, settings.visibility_timeout / 2)


@dataclass
class Outcome:
    """One claimed execution's result, not recorded yet."""
    row: object                       # the claimed row
    info: VersionInfo | None
    status: str
    code: int | None = None
    result: str | None = None
    stdout: str = ""
    limit: str | None = None
    message: str | None = None
    logs: tuple = ()
    duration_ms: float | None = None
    dead_lettered: bool = False
    chain: bool = True                # False: cancelled, its ok/error chain is not fired
    trace: tuple = (None, None)       # (trace id, span id) of its jobico.execute span: a batch's chained row's parent

    def fields(self) -> dict:
        return {"status": self.status, "code": self.code, "result": self.result, "stdout": self.stdout,
                "limit": self.limit, "message": self.message, "logs": self.logs,
                "duration_ms": self.duration_ms, "dead_lettered": self.dead_lettered, "chain": self.chain}


def cancelled_before_run(row) -> Outcome | None:
    """A claimed row whose cancel was requested while an earlier delivery ran it (its worker died)
    or before a guest retry: recorded ``cancelled`` without running, no chain."""
    if getattr(row, "cancel_requested_at", None) is None:
        return None
    who = f" by {row.cancelled_by}" if row.cancelled_by else ""
    return Outcome(row, None, "cancelled", message=f"cancelled{who} before it ran again", chain=False)


def run_claimed(ctx: Context, runtime, row, payload: str) -> Outcome | None:
    """Run one claimed execution; returns its outcome, or None when it was requeued for a
    guest retry (``retries:`` in the package) or to wait for this host's Python interpreter.
    Raises only infrastructure errors.

    While the guest runs, its ``CancelToken`` is registered (``cancellation.watch``): a cancel
    request stops it within an epoch tick, and the outcome is ``cancelled`` ("cancelled by
    <who> after N ms", with the logs and stdout so far), with no chain and no guest retry."""
    early = cancelled_before_run(row)
    if early is not None:
        return early
    info = load_version(ctx, row.version_id, row.tenant_id, row.package, row.version)
    if info is None:
        return Outcome(row, None, "cancelled", message=f"package {row.package!r} was deleted before the execution ran")
    ev = info.spec.events[row.event]
    rt_spec = info.spec.runtimes[ev.runtime]
    language = getattr(rt_spec, "language", "wasm")  # the runtime's type: a WASM module or a Python file
    limits = resolve(ctx.settings.default_limits_for(language), ctx.settings.max_limits, rt_spec.limits, ev.limits)
    sha = info.pins[rt_spec.moduleref]
    try:
        compiled = _compiled_module(runtime, ctx, info.tenant, sha, language, rt_spec.moduleref)
    except (InvalidModule, NotFound) as exc:
        return Outcome(row, info, "invalid_module", message=f"{rt_spec.moduleref}: {exc}")
    env = resolve_environment(ctx, info.tenant, info.spec, row.event)  # read now: a rotated secret applies
    if env.problem:
        return Outcome(row, info, "cancelled", message=env.problem)
    t0 = time.perf_counter()
    with watch(row.id) as token, tracing.span("jobico.run", {"jobico.module": rt_spec.moduleref,
                                                            "jobico.language": language}):
        try:
            out = runtime.run(compiled, payload.encode("utf-8"), main=rt_spec.mainfuncname, limits=limits,
                              env=env.variables, cancel=token)
        except InterpreterNotReady as exc:  # the Python interpreter is still being compiled on this host
            requeue(ctx, row.id, f"waiting for this worker's runtime: {exc.message}",
                    float(exc.headers.get("Retry-After", 5)))
            return None
        redact_outcome(out, env.secrets)  # before anything records, streams or chains it
        status = out.status.value if hasattr(out.status, "value") else str(out.status)
        tracing.set_attributes(status=status, code=out.code)
    duration = round(getattr(out, "duration_ms", (time.perf_counter() - t0) * 1000), 3)
    if token.cancelled and status == "cancelled":  # stopped from outside: the workflow stops too
        return Outcome(row, info, status, stdout=out.stdout, logs=tuple(out.logs), duration_ms=duration,
                       message=f"{token.reason or 'cancelled'} after {duration:.0f} ms", chain=False)
    retryable = status not in ("succeeded", "cancelled", "invalid_module")
    if token.cancelled:  # it ended by itself just as the cancel came: its outcome stands, the workflow stops
        note = f"{token.reason or 'cancelled'} as it finished: no chain, no retry"
        return Outcome(row, info, status, code=out.code, result=out.result, stdout=out.stdout, limit=out.limit,
                       message="; ".join(m for m in (out.message, note) if m), logs=tuple(out.logs),
                       duration_ms=duration, chain=False)
    if retryable and row.attempts <= ev.retries:  # the package asked for guest retries
        delay = retry_delay(row.attempts, cap=backoff_cap(ctx.settings))
        requeue(ctx, row.id, f"attempt {row.attempts} {status}"
                + (f" (code {out.code})" if out.code is not None else "") + f"; retrying in {delay:.1f}s", delay)
        return None
    return Outcome(row, info, status, code=out.code, result=out.result, stdout=out.stdout, limit=out.limit,
                   message=out.message, logs=tuple(out.logs), duration_ms=duration,
                   dead_lettered=retryable and ev.retries > 0)


def run_execution(ctx: Context, runtime, execution_id: str, payload: str, worker: str = "worker",
                  infra_retries: int = 0) -> dict:
    """Execute one queued execution (a ``jobico.execute`` task); returns its record. Raises only
    infrastructure errors.

    ``infra_retries``: how many times this task was retried after an infrastructure failure
    (each of those claimed the row too); they do not count towards the crash-loop bound.
    """
    claimed_ns = tracing.now_ns()
    state, row = claim(ctx, execution_id, worker)
    if state == "missing":
        log.info("execution %s has no record (its request was aborted): dropped", execution_id,
                 extra={"execution_id": execution_id})
        return {}
    if state == "done":
        republish_chain(ctx, execution_id)
        return to_dict(row, logs=False)
    # its span (from the claim on), then its lease, renewed until it is recorded (or requeued)
    with tracing.execution(row, worker, tracing.claimed(claimed_ns), claimed_ns), holding(ctx, [row]):
        if (state == "redelivered" and row.attempts > ctx.settings.max_attempts + infra_retries
                and row.cancel_requested_at is None):  # it kills its worker (a cancelled one is recorded so below)
            return _finish(ctx, row, load_version(ctx, row.version_id, row.tenant_id, row.package, row.version),
                           row.tenant_id, status="trapped",
                           dead_lettered=True,
                           message=f"dead-lettered: delivered {row.attempts} times; the worker died during the "
                                   "earlier attempts")
        outcome = run_claimed(ctx, runtime, row, payload)
        if outcome is None:
            return {"id": execution_id, "status": "queued", "attempts": row.attempts}
        return _finish(ctx, row, outcome.info, row.tenant_id, **outcome.fields())


def dead_letter(ctx: Context, execution_id: str, reason: str) -> None:
    """Infrastructure retries exhausted: park the execution for `jobico executions retry`."""
    with ctx.db.session() as s:
        row = s.scalar(select(Execution).where(Execution.id == execution_id).with_for_update())
        if row is None or row.status in TERMINAL_STATUSES:
            return
        row.status, row.dead_lettered, row.message = "queued", True, f"dead-lettered: {reason}"
        tenant = row.tenant_id
    metrics.dead_letters(tenant)


_compiled: LRU = LRU(256)  # sha256 -> compiled module: a warm worker never reads storage


def _compiled_module(runtime, ctx: Context, tenant: str, sha: str, language: str = "wasm", name: str = ""):
    key = sha if language == "wasm" else (language, sha, name)  # a .py file's name shows in its tracebacks
    compiled = _compiled.get(key)
    if compiled is not None:
        metrics.MODULE_CACHE_HITS.inc()
        return compiled
    metrics.MODULE_CACHE_MISSES.inc()
    data = module_bytes(ctx, tenant, sha)
    loaded = runtime.load(data, sha256=sha) if language == "wasm" else \
        runtime.load(data, sha256=sha, language=language, name=name)
    return _compiled.put(key, loaded)
