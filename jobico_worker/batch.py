"""Several executions in one task (``jobico.execute_batch``), each with its own guarantees.

A batch task carries the ids of executions of one tenant/package/event (the
events of one webhook request, or the chained events of one batch). It costs
one claim statement, one Celery task and, every ``FLUSH_S``, one recording
transaction, instead of one of each per execution; every execution keeps its
own status, attempts, guest retries, exactly-once record and dead letter:

* **claim**: one statement flips the batch's ``queued`` rows to ``running``
  (``attempts`` + 1). Rows it does not take are looked at once: a missing row
  is dropped (its request was aborted), a final row only gets its chained task
  published again (``republish_chains``), and a row already ``running`` means
  an earlier delivery of this batch died while holding it: each of those goes
  back on its queue as its **own** ``jobico.execute`` task, so the crash-loop
  bound (``JOBICO_MAX_ATTEMPTS``) counts the deliveries of that execution alone
  and the batch never re-runs what it already recorded.
* **run** one after the other (``executor.run_claimed``); a guest failure with
  ``retries:`` left is requeued alone, as today.
* **record** (``record_many``): the outcomes gathered so far are written in one
  transaction (one guarded ``UPDATE ... FROM unnest(...) RETURNING`` on
  PostgreSQL: a row already final is skipped, so a redelivered batch never
  records twice), their logs in one ``executemany`` and their chained rows;
  then the chained tasks are published and the records streamed (``announcer``). A flush
  happens every ``FLUSH_S`` of running and at the end, so a crash re-runs at
  most that much already-run work (never anything recorded).
* **budget**: after ``Settings.batch_budget_s`` the batch starts nothing new;
  the rows it claimed but did not start are put back to ``queued`` (the claim
  undone, ``attempts`` - 1) and published as a new batch at the end of the queue,
  so one tenant's slow batch holds a pool slot no longer than one execution
  past the budget.
* **infrastructure failure** after the claim: what ran is recorded if the
  database allows, and every unfinished execution is published as its own
  ``jobico.execute`` task with the backoff (``BatchInterrupted``).
* **any other exception** (a defect, a corrupt row): what ran is recorded if the
  database allows, and the task records every unfinished execution ``failed``
  with ``internal_error`` (``BatchFailed``, ``jobico_worker.failures``).
* **lease**: the claimed rows are leased and their leases renewed while the
  batch holds them (``jobico_worker.heartbeat``).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from sqlalchemy import ARRAY, String, any_, bindparam, insert, select, text, update

from jobico_core import metrics, tracing
from jobico_core.broker import publish
from jobico_core.db import TERMINAL_STATUSES, Execution, ExecutionLog, as_signed64, next_seq, utcnow
from jobico_core.services.context import Context
from jobico_core.services.executions import fence_chained, task_message, task_messages, to_dict
from jobico_core.services.leases import until as lease_until

from .announcer import announce_many
from .executor import INFRA_ERRORS, RECORD_SEQ, Outcome, chained_row, run_claimed
from .heartbeat import holding

log = logging.getLogger("jobico.worker")

FLUSH_S = 0.1  # seconds of running after which the outcomes gathered so far are recorded

_EX = Execution.__table__
_TERMINAL = sorted(TERMINAL_STATUSES)
_CLAIM_VALUES = {"status": "running", "attempts": _EX.c.attempts + 1, "started_at": bindparam("b_now"),
                 "worker": bindparam("b_worker"), "waiting_for": None, "lease_until": bindparam("b_lease_until")}
_CLAIM_MANY_PG = (update(_EX).where(_EX.c.id == any_(bindparam("b_ids", type_=ARRAY(String))),
                                    _EX.c.status == "queued")
                  .values(**_CLAIM_VALUES).returning(*_EX.c))
_CLAIM_MANY = (update(_EX).where(_EX.c.id.in_(bindparam("b_ids", expanding=True)), _EX.c.status == "queued")
               .values(**_CLAIM_VALUES).returning(*_EX.c))
_ROWS_PG = select(_EX).where(_EX.c.id == any_(bindparam("b_ids", type_=ARRAY(String))))
_ROWS = select(_EX).where(_EX.c.id.in_(bindparam("b_ids", expanding=True)))
# the claim undone for rows claimed at b_now and never started (the budget ran out)
_UNCLAIM = (update(_EX).where(_EX.c.id.in_(bindparam("b_ids", expanding=True)), _EX.c.status == "running",
                              _EX.c.started_at == bindparam("b_now"))
            .values(status="queued", attempts=_EX.c.attempts - 1, started_at=None, worker=None)
            .returning(_EX.c.id))
_QUEUED_CHILDREN = select(_EX).where(_EX.c.chained_from.in_(bindparam("b_ids", expanding=True)),
                                     _EX.c.status == "queued")
_INSERT_LOGS = insert(ExecutionLog)

# PostgreSQL: every outcome of a flush in one guarded statement; the stream position from the
# sequence, per row. Only rows not final yet are updated (and returned).
_COLUMNS = ", ".join(f'executions."{c.name}"' for c in _EX.c)
_RECORD_MANY_PG = text(f"""
UPDATE executions SET status = v.status, code = v.code, result = v.result, stdout = v.stdout,
       "limit" = v.lim, dead_lettered = v.dl, finished_at = v.fin, duration_ms = v.dur,
       message = v.msg, seq = nextval('execution_seq')
FROM unnest(CAST(:ids AS varchar[]), CAST(:status AS varchar[]), CAST(:code AS bigint[]),
            CAST(:result AS text[]), CAST(:stdout AS text[]), CAST(:lim AS varchar[]),
            CAST(:dl AS boolean[]), CAST(:fin AS timestamptz[]), CAST(:dur AS float8[]),
            CAST(:msg AS text[])) AS v(id, status, code, result, stdout, lim, dl, fin, dur, msg)
WHERE executions.id = v.id AND executions.status NOT IN ({", ".join(f"'{t}'" for t in _TERMINAL)})
RETURNING {_COLUMNS}""").columns(*_EX.c)


class BatchFailed(Exception):
    """Any other exception in a batch: ``unfinished`` are the ids of the executions it had not
    finished (recorded, requeued or handed back), every one of them if the claim itself failed."""

    def __init__(self, cause: Exception, unfinished: list[str]):
        super().__init__(str(cause))
        self.cause = cause
        self.unfinished = unfinished


class BatchInterrupted(Exception):
    """An infrastructure failure after the claim: ``unfinished`` rows (claimed, or recorded but
    with their chained task maybe unpublished) must each go back as their own task."""

    def __init__(self, cause: Exception, unfinished: list):
        super().__init__(str(cause))
        self.cause = cause
        self.unfinished = unfinished


@dataclass
class BatchResult:
    recorded: list[dict] = field(default_factory=list)   # records this delivery wrote
    skipped: int = 0          # missing, already final, or recorded by another delivery
    isolated: int = 0         # found running: republished as their own tasks
    requeued: int = 0         # guest retries
    handed_back: int = 0      # budget exhausted: republished as a new batch


def _pg(ctx: Context) -> bool:
    return ctx.db.engine.dialect.name == "postgresql"


def claim_many(ctx: Context, ids: list[str], worker: str, now=None) -> list:
    """Flip the ``queued`` rows among ``ids`` to ``running`` (leased) in one statement; returns them."""
    now = now or utcnow()
    params = {"b_ids": list(ids), "b_now": now, "b_worker": worker, "b_lease_until": lease_until(ctx, now)}
    with ctx.db.autocommit() if _pg(ctx) else ctx.db.session() as conn:
        return list(conn.execute(_CLAIM_MANY_PG if _pg(ctx) else _CLAIM_MANY, params))


def rows_by_id(ctx: Context, ids: list[str]) -> dict:
    with ctx.db.session() as s:
        return {r.id: r for r in s.execute(_ROWS_PG if _pg(ctx) else _ROWS, {"b_ids": list(ids)})}


def republish_chains(ctx: Context, ids: list[str]) -> None:
    """After a redelivery of recorded executions: make sure their chained tasks exist."""
    with ctx.db.session() as s:
        children = list(s.execute(_QUEUED_CHILDREN, {"b_ids": list(ids)}))
    if children:
        publish(ctx.celery, [task_message(c) for c in children])


def record_many(ctx: Context, outcomes: list[Outcome]) -> tuple[list[dict], list[str]]:
    """Record every outcome in one transaction; returns (records written now, ids another
    delivery had recorded first). Chained tasks are published after the commit."""
    chained = {o.row.id: chained_row(ctx, o.info, o.row, o.status, o.code, o.result, o.trace) if o.info and o.chain
               else (None, None) for o in outcomes}
    now = utcnow()
    messages = {o.row.id: "; ".join(m for m in (o.message, chained[o.row.id][1]) if m) or None for o in outcomes}
    children = [c for c, _ in chained.values() if c is not None]
    alone = _pg(ctx) and not children and not any(o.logs for o in outcomes)
    # outcomes alone (no logs, no chained rows): one statement in autocommit, one round trip
    with ctx.db.autocommit() if alone else ctx.db.session() as s:
        live = {c.id for c in fence_chained(s, children)}  # first: their versions were deleted meanwhile
        if _pg(ctx):
            rows = s.execute(_RECORD_MANY_PG, {
                "ids": [o.row.id for o in outcomes], "status": [o.status for o in outcomes],
                "code": [None if o.code is None else as_signed64(o.code) for o in outcomes],
                "result": [o.result for o in outcomes], "stdout": [o.stdout or "" for o in outcomes],
                "lim": [o.limit for o in outcomes], "dl": [o.dead_lettered for o in outcomes],
                "fin": [now] * len(outcomes), "dur": [o.duration_ms for o in outcomes],
                "msg": [messages[o.row.id] for o in outcomes]}).all()
        else:
            rows = []
            for o in outcomes:
                row = s.execute(RECORD_SEQ, {
                    "b_id": o.row.id, "b_status": o.status, "b_code": o.code, "b_result": o.result,
                    "b_stdout": o.stdout or "", "b_limit": o.limit, "b_dead_lettered": o.dead_lettered,
                    "b_finished_at": now, "b_duration_ms": o.duration_ms, "b_message": messages[o.row.id],
                    "b_seq": next_seq(s)}).first()
                if row is not None:
                    rows.append(row)
        written = {r.id: r for r in rows}
        by_id = {o.row.id: o for o in outcomes}
        logs = [{"execution_id": rid, "idx": i, "level": rec.level, "message": rec.message}
                for rid in written for i, rec in enumerate(by_id[rid].logs)]
        if logs:
            s.execute(_INSERT_LOGS, logs)
        children = [c for rid in written if (c := chained[rid][0]) is not None and c.id in live]
        if children:
            s.add_all(children)
        records = []
        for rid, row in written.items():
            data = to_dict(row, logs=False)
            data["logs"] = [{"level": r.level, "message": r.message} for r in by_id[rid].logs]
            records.append(data)
    if children:
        publish(ctx.celery, task_messages(children, ctx.settings.task_batch))
    return records, [o.row.id for o in outcomes if o.row.id not in written]


def hand_back(ctx: Context, rows: list, claimed_at) -> int:
    """Undo the claim of rows never started and publish them as a new batch at the queue's end."""
    with ctx.db.session() as s:
        back = set(s.scalars(_UNCLAIM, {"b_ids": [r.id for r in rows], "b_now": claimed_at}))
    rows = [r for r in rows if r.id in back]
    if rows:
        publish(ctx.celery, task_messages(rows, ctx.settings.task_batch))
    return len(rows)


def run_batch(ctx: Context, runtime, ids: list[str], worker: str = "worker", clock=time.monotonic) -> BatchResult:
    """Claim, run and record the executions ``ids`` (a ``jobico.execute_batch`` task).

    Raises infrastructure errors met before anything was claimed (the task retries the whole
    batch), ``BatchInterrupted`` for those met after, and ``BatchFailed`` for any other
    exception (after recording what ran, if it can).
    """
    res = BatchResult()
    claimed: list | None = None
    done: set[str] = set()   # recorded (by anyone) with chained tasks published, or requeued
    try:
        claimed_at, claim_ns = utcnow(), tracing.now_ns()
        claimed = claim_many(ctx, ids, worker, claimed_at)
        claim = tracing.claimed(claim_ns)  # the batch's one claim: a jobico.claim child of each execution's span
        with holding(ctx, claimed):  # their leases are renewed until each is recorded
            _run_claimed(ctx, runtime, ids, claimed, claimed_at, res, done, clock, worker, claim)
    except INFRA_ERRORS as exc:
        if claimed is None:
            raise
        raise BatchInterrupted(exc, [r for r in claimed if r.id not in done]) from exc
    except Exception as exc:  # a defect, or a corrupt row: what is not final gets that fate
        unfinished = list(ids) if claimed is None else [r.id for r in claimed if r.id not in done]
        raise BatchFailed(exc, unfinished) from exc
    return res


def _run_claimed(ctx: Context, runtime, ids: list[str], claimed: list, claimed_at, res: BatchResult,
                 done: set[str], clock, worker: str = "worker", claim: tuple[int, int] | None = None) -> None:
    started = clock()
    if len(claimed) < len(ids):  # from here on, an infrastructure failure puts each claimed row
        taken = {r.id for r in claimed}  # back as its own task (BatchInterrupted)
        _not_claimed(ctx, [i for i in ids if i not in taken], res)
    locked = [r for r in claimed if r.locks]
    if locked:  # never batched (task_messages): must take their locks first, each in its own task
        res.handed_back += hand_back(ctx, locked, claimed_at)
        done.update(r.id for r in locked)
    order = {i: n for n, i in enumerate(ids)}
    todo = sorted((r for r in claimed if not r.locks), key=lambda r: order[r.id])
    budget = ctx.settings.batch_budget_s
    pending: list[Outcome] = []
    last_flush = started

    def flush(after_failure: bool = False):
        nonlocal last_flush
        if pending:
            records, lost_race = record_many(ctx, pending)
            for data in records:
                metrics.finished(data["tenant"], data["status"], data.get("duration_ms"),
                                 bool(data.get("dead_lettered")))
            announce_many(ctx, records)
            res.recorded += records
            res.skipped += len(lost_race)
            done.update(d["id"] for d in records)
            if not after_failure:
                done.update(lost_race)  # recorded by another delivery, which publishes their chains
            # after a failure, a row "recorded by another delivery" may be ours: the failed flush
            # committed it and then could not publish its chained task. It stays unfinished, so
            # its own task finds it final and publishes the chained task (republish_chain).
            pending.clear()
        last_flush = clock()

    try:
        for n, row in enumerate(todo):
            if n and clock() - started >= budget:
                flush()
                res.handed_back += hand_back(ctx, todo[n:], claimed_at)
                done.update(r.id for r in todo[n:])  # back to queued or taken by another delivery
                break
            with tracing.execution(row, worker, claim):  # each its own span, in its own request's trace
                outcome = run_claimed(ctx, runtime, row, row.payload)
                if outcome is not None:
                    outcome.trace = tracing.current_ids()
            if outcome is None:
                res.requeued += 1
                done.add(row.id)
            else:
                pending.append(outcome)
            if clock() - last_flush >= FLUSH_S:
                flush()
        flush()
    except Exception:  # what ran is recorded if the database allows; the caller says what else
        with _suppress_logged("record the outcomes gathered before the failure"):
            flush(after_failure=True)
        raise


def _not_claimed(ctx: Context, ids: list[str], res: BatchResult) -> None:
    """Rows the claim did not take: missing (dropped), final (chain re-published), or running
    (an earlier delivery died holding them: each republished as its own task)."""
    rows = rows_by_id(ctx, ids)
    final = [i for i, r in rows.items() if r.status in TERMINAL_STATUSES]
    running = [r for r in rows.values() if r.status == "running"]
    res.skipped += len(ids) - len(running)
    if len(rows) < len(ids):
        log.info("%d executions of a batch have no record (their request was aborted): dropped",
                 len(ids) - len(rows))
    if final:
        republish_chains(ctx, final)
    if running:
        log.info("%d executions of a redelivered batch were running: each requeued as its own task",
                 len(running), extra={"execution_ids": [r.id for r in running]})
        publish(ctx.celery, [task_message(r) for r in running])
        res.isolated = len(running)


class _suppress_logged:
    def __init__(self, what: str):
        self.what = what

    def __enter__(self):
        return self

    def __exit__(self, typ, exc, tb):
        if exc is not None and isinstance(exc, Exception):
            log.warning("batch: could not %s: %s", self.what, exc)
            return True
        return False



_DEAD_LETTER_MANY = (update(_EX).where(_EX.c.id.in_(bindparam("b_ids", expanding=True)),
                                       _EX.c.status.notin_(_TERMINAL))
                     .values(status="queued", dead_lettered=True, message=bindparam("b_message"))
                     .returning(_EX.c.tenant_id))


def dead_letter_many(ctx: Context, ids: list[str], reason: str) -> None:
    """Infrastructure retries of a batch exhausted: park its unfinished executions."""
    with ctx.db.session() as s:
        tenants = s.execute(_DEAD_LETTER_MANY, {"b_ids": list(ids),
                                                "b_message": f"dead-lettered: {reason}"}).scalars().all()
    for tenant in set(tenants):
        metrics.dead_letters(tenant, tenants.count(tenant))
