"""Batch tasks (``jobico.execute_batch``): several executions per task, each with its own
status, attempts, guest retries, exactly-once record and dead letter.

Real PostgreSQL, Redis and S3 (and SQLite for `make run`), real WASM: the events go
through the webhook, the tasks are read back from the tenant's Redis list and run with
``jobico_worker.batch.run_batch`` / ``executor.run_execution`` in this process, so a crash
can be placed exactly between two executions of a batch.
"""
from __future__ import annotations

import base64
import json

import pytest
from sqlalchemy import select

from jobico_core.broker import EXECUTE_BATCH_TASK, EXECUTE_TASK, results_channel
from jobico_core.db import Execution, ExecutionLog
from jobico_core.errors import Unavailable
from jobico_worker import batch as batch_mod
from jobico_worker.announcer import announcer
from jobico_worker.batch import BatchInterrupted, claim_many, record_many, run_batch
from jobico_worker.executor import Outcome, record, run_execution
from tests.waiting import wait_until

from .helpers import ROOT, wait_for_lock_waits, wat

# echo (Rust-SDK style, as examples/jobicolets/echo.wat) that logs its input at info level
# and traps when the event is an object whose first key starts with "f" ({"fail": ...}).
FLAKY = wat((ROOT / "examples/jobicolets/echo.wat").read_text().replace(
    "(if (i32.eqz (global.get $ready)) (then unreachable))   ;; init was not called",
    """(if (i32.eqz (global.get $ready)) (then unreachable))
    (call $log (i32.const 1) (local.get $in) (local.get $len))
    (if (i32.eq (i32.load8_u offset=2 (local.get $in)) (i32.const 102)) (then unreachable))"""))

PACKAGE = """\
id: batchy
queues: [{{id: main}}]
jobs:
  - event:
      id: go
      schema: {{id: any, schemaref: any.json}}
      supplierqueue: main
      runtime: flaky
      retries: {retries}
    result:
      ok: {{id: went, schema: {{id: any, schemaref: any.json}}, supplierqueue: main, runtime: flaky}}
      error: {{id: failed, schema: {{id: any, schemaref: any.json}}, supplierqueue: main, runtime: flaky}}
runtimes:
  - {{id: flaky, moduleref: flaky.wasm}}
"""
QUEUE = "jobico.t1.batchy.main"


class WorkerDied(BaseException):
    """Stands for the process dying (SIGKILL): nothing after it runs, no handler sees it."""


class Runtime:
    """The real runtime; ``fail_at``: the call number (1-based) that raises ``exc`` instead."""

    def __init__(self, fail_at: int | None = None, exc: BaseException | None = None):
        from jobico_runtime import get_runtime
        self.real, self.calls, self.fail_at, self.exc = get_runtime(), 0, fail_at, exc

    def load(self, *a, **kw):
        return self.real.load(*a, **kw)

    def run(self, *a, **kw):
        self.calls += 1
        if self.calls == self.fail_at:
            raise self.exc
        return self.real.run(*a, **kw)


def flaky_tenant(make_api):
    """A tenant t1 with this module's package files: the flaky module (traps on {"fail": ...}) and
    a schema (``deploy()`` deploys the package); other test modules' fixtures use it too."""
    api = make_api()
    api.t = api.tenant("t1")
    assert api.upload(api.t, "flaky.wasm", FLAKY).status_code == 201
    assert api.upload(api.t, "any.json", {}).status_code == 201
    return api


@pytest.fixture
def h(make_api):
    return flaky_tenant(make_api)


def deploy(h, retries: int = 0):
    r = h.deploy(h.t, PACKAGE.format(retries=retries))
    assert r.status_code == 201, r.get_json()


def post(h, events: list) -> list[str]:
    r = h.post_events("t1", "go", {"data": events}, headers=h.t.headers)
    assert r.status_code == 200, r.get_json()
    return r.get_json()["executions"]


def take(h, queue: str = QUEUE) -> list[tuple[str, list, dict]]:
    """Every task message on ``queue`` (removed): (task name, args, headers)."""
    out = []
    while (raw := h.redis.rpop(queue)) is not None:
        msg = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(msg["body"]))
        out.append((msg["headers"]["task"], args, msg["headers"]))
    return out


def rows(h, ids) -> dict[str, Execution]:
    with h.ctx.db.session() as s:
        return {e.id: e for e in s.scalars(select(Execution).where(Execution.id.in_(list(ids))))}


def logs_of(h, eid: str) -> list[str]:
    with h.ctx.db.session() as s:
        return list(s.scalars(select(ExecutionLog.message).where(ExecutionLog.execution_id == eid)))


def test_one_request_is_one_batch_task_and_each_event_keeps_its_own_record(h):
    deploy(h)
    ids = post(h, [{"n": 0}, {"fail": 1}, {"n": 2}, {"n": 3}, {"fail": 4}])
    tasks = take(h)
    assert [(name, args) for name, args, _ in tasks] == [(EXECUTE_BATCH_TASK, [ids])]

    res = run_batch(h.ctx, Runtime(), ids, worker="w")
    got = rows(h, ids)
    assert [got[i].status for i in ids] == ["succeeded", "trapped", "succeeded", "succeeded", "trapped"]
    assert all(got[i].attempts == 1 and not got[i].dead_lettered for i in ids)
    assert len({got[i].seq for i in ids}) == 5 and None not in {got[i].seq for i in ids}
    assert got[ids[0]].result == '{"n":0}'
    assert [logs_of(h, i) for i in ids] == [['{"n":0}'], ['{"fail":1}'], ['{"n":2}'], ['{"n":3}'], ['{"fail":4}']]
    assert sorted(r["id"] for r in res.recorded) == sorted(ids)

    # chained events: one per execution, their tasks grouped by event in message order
    with h.ctx.db.session() as s:
        children = {e.chained_from: e for e in s.scalars(select(Execution).where(Execution.chained_from.in_(ids)))}
    assert {k: c.event for k, c in children.items()} == {
        ids[0]: "went", ids[1]: "failed", ids[2]: "went", ids[3]: "went", ids[4]: "failed"}
    chained_tasks = take(h)
    flat = [x for _, a, _ in chained_tasks for x in (a[0] if isinstance(a[0], list) else [a[0]])]
    assert sorted(flat) == sorted(c.id for c in children.values())
    assert {n for n, _, _ in chained_tasks} == {EXECUTE_TASK, EXECUTE_BATCH_TASK}

    # the same batch delivered again records nothing a second time
    seqs = {i: got[i].seq for i in ids}
    again = run_batch(h.ctx, Runtime(), ids, worker="w2")
    assert again.recorded == [] and again.skipped == 5
    after = rows(h, ids)
    assert {i: after[i].seq for i in ids} == seqs and all(after[i].attempts == 1 for i in ids)
    assert [len(logs_of(h, i)) for i in ids] == [1] * 5
    # ...but makes sure every chained task exists (they are still queued)
    assert sorted(a[0] for _, a, _ in take(h)) == sorted(c.id for c in children.values())


def test_redelivery_of_a_half_recorded_batch_reruns_only_the_unfinished(h, monkeypatch):
    deploy(h)
    monkeypatch.setattr(batch_mod, "FLUSH_S", 0.0)  # record after every execution
    ids = post(h, [{"n": i} for i in range(6)])
    take(h)
    with pytest.raises(WorkerDied):  # the process dies while running the 4th event
        run_batch(h.ctx, Runtime(fail_at=4, exc=WorkerDied()), ids, worker="w1")
    got = rows(h, ids)
    assert [got[i].status for i in ids] == ["succeeded"] * 3 + ["running"] * 3
    seqs = [got[i].seq for i in ids[:3]]
    take(h)  # chained tasks of the first three

    # the broker redelivers the batch: the three running rows go back each as its own task
    res = run_batch(h.ctx, Runtime(), ids, worker="w2")
    assert (len(res.recorded), res.skipped, res.isolated) == (0, 3, 3)
    tasks = take(h)
    singles = [t for t in tasks if t[1][0] in ids]
    assert [(n, a[0]) for n, a, _ in singles] == [(EXECUTE_TASK, i) for i in ids[3:]]
    assert len(tasks) == 6  # and the first three's chained tasks, published again (still queued)
    for _, (eid, payload), _ in singles:  # each counts its own deliveries
        rec = run_execution(h.ctx, Runtime(), eid, payload, worker="w2")
        assert rec["status"] == "succeeded" and rec["attempts"] == 2
    got = rows(h, ids)
    assert [got[i].status for i in ids] == ["succeeded"] * 6
    assert [got[i].seq for i in ids[:3]] == seqs and [got[i].attempts for i in ids] == [1, 1, 1, 2, 2, 2]
    assert [len(logs_of(h, i)) for i in ids] == [1] * 6


def test_a_batch_member_that_keeps_killing_its_worker_is_dead_lettered_alone(h, monkeypatch):
    deploy(h)
    monkeypatch.setattr(batch_mod, "FLUSH_S", 0.0)
    ids = post(h, [{"n": 0}, {"n": 1}, {"n": 2}])
    take(h)
    with pytest.raises(WorkerDied):
        run_batch(h.ctx, Runtime(fail_at=2, exc=WorkerDied()), ids, worker="w")  # killed by the 2nd
    run_batch(h.ctx, Runtime(), ids, worker="w")  # redelivered: 2nd and 3rd requeued alone
    singles = {a[0]: a for n, a, _ in take(h) if a[0] in ids}  # (not the 1st's chained task)
    assert sorted(singles) == sorted(ids[1:])
    rec = run_execution(h.ctx, Runtime(), *singles[ids[2]], worker="w")  # the innocent one runs
    assert (rec["status"], rec["attempts"]) == ("succeeded", 2)
    killer = ids[1]
    for _ in range(h.settings.max_attempts - 1):  # the killer keeps killing its worker (the batch
        with pytest.raises(WorkerDied):                # delivery was its 1st attempt)
            run_execution(h.ctx, Runtime(fail_at=1, exc=WorkerDied()), *singles[killer], worker="w")
    rec = run_execution(h.ctx, Runtime(), *singles[killer], worker="w")
    assert (rec["status"], rec["dead_lettered"], rec["attempts"]) == ("trapped", True, h.settings.max_attempts + 1)
    got = rows(h, ids)
    assert [got[i].status for i in ids] == ["succeeded", "trapped", "succeeded"]


def test_guest_retries_are_per_event(h):
    deploy(h, retries=2)
    ids = post(h, [{"n": 0}, {"fail": 1}, {"n": 2}])
    take(h)
    res = run_batch(h.ctx, Runtime(), ids, worker="w")
    assert (len(res.recorded), res.requeued) == (2, 1)
    got = rows(h, ids)
    assert [got[i].status for i in ids] == ["succeeded", "queued", "succeeded"]
    assert got[ids[1]].message.startswith("attempt 1 trapped; retrying in")
    for attempt in (2, 3):
        (name, (eid, payload), headers), = [t for t in take(h) if t[0] == EXECUTE_TASK]
        assert (name, eid) == (EXECUTE_TASK, ids[1]) and headers["eta"]  # its own task, with a backoff
        rec = run_execution(h.ctx, Runtime(), eid, payload, worker="w")
        assert rec["attempts"] == attempt
    assert (rec["status"], rec["dead_lettered"]) == ("trapped", True)  # retries: 2 spent
    got = rows(h, ids)
    assert [got[i].attempts for i in ids] == [1, 3, 1]
    assert [len(logs_of(h, i)) for i in ids] == [1, 1, 1]  # the recorded attempt's logs only


def test_budget_puts_the_unstarted_rest_back_as_a_new_batch(h):
    deploy(h)
    h.ctx.settings = h.ctx.settings.replace(task_batch_ms=1)
    ids = post(h, [{"n": i} for i in range(5)])
    take(h)
    ticks = iter(range(0, 1000))
    res = run_batch(h.ctx, Runtime(), ids, worker="w", clock=lambda: next(ticks))  # 1 s per look at the clock
    assert (len(res.recorded), res.handed_back) == (1, 4)
    got = rows(h, ids)
    assert got[ids[0]].status == "succeeded"
    assert [(got[i].status, got[i].attempts, got[i].worker, got[i].started_at) for i in ids[1:]] == \
        [("queued", 0, None, None)] * 4  # the claim undone: never started, not counted
    assert [(name, args) for name, args, _ in take(h) if args[0] != [] and args[0][0] in ids] == \
        [(EXECUTE_BATCH_TASK, [ids[1:]])]
    h.ctx.settings = h.ctx.settings.replace(task_batch_ms=1000)
    res = run_batch(h.ctx, Runtime(), ids[1:], worker="w")
    assert len(res.recorded) == 4 and all(r.attempts == 1 for r in rows(h, ids).values())


def test_infrastructure_failure_records_what_ran_and_returns_the_rest(h):
    deploy(h)
    ids = post(h, [{"n": i} for i in range(5)])
    take(h)
    with pytest.raises(BatchInterrupted) as info:
        run_batch(h.ctx, Runtime(fail_at=3, exc=Unavailable("object store down")), ids, worker="w")
    assert [r.id for r in info.value.unfinished] == ids[2:]
    got = rows(h, ids)
    assert [got[i].status for i in ids] == ["succeeded", "succeeded", "running", "running", "running"]
    # the worker task publishes each unfinished row as its own task; a later delivery of one:
    rec = run_execution(h.ctx, Runtime(), ids[2], '{"n":2}', worker="w", infra_retries=1)
    assert (rec["status"], rec["attempts"]) == ("succeeded", 2)


def test_a_delivery_that_loses_the_recording_race_writes_nothing(h):
    deploy(h)
    ids = post(h, [{"n": 0}, {"n": 1}])
    take(h)
    claimed = claim_many(h.ctx, ids, "w")
    assert sorted(r.id for r in claimed) == sorted(ids)
    assert claim_many(h.ctx, ids, "w2") == []  # claimed rows are not claimed twice
    first = record(h.ctx, claimed[0], None, status="succeeded", result='"first"')  # another delivery wins
    assert first.recorded
    records, lost = record_many(h.ctx, [Outcome(r, None, "failed", result='"second"') for r in claimed])
    assert lost == [claimed[0].id] and [r["id"] for r in records] == [claimed[1].id]
    got = rows(h, ids)
    assert (got[claimed[0].id].status, got[claimed[0].id].result) == ("succeeded", '"first"')
    assert got[claimed[1].id].status == "failed"


def test_batches_on_sqlite(sqlite_ctx, redis_url):
    """`make run`'s database: the same batch path on SQLite."""
    from jobico_core.services import files, packages
    from jobico_core.services.executions import enqueue, new_execution
    ctx = sqlite_ctx
    files.upload(ctx, "t1", "flaky.wasm", FLAKY)
    files.upload(ctx, "t1", "any.json", b"{}")
    packages.deploy(ctx, "t1", PACKAGE.format(retries=0))
    info = packages.route(ctx, "t1", "go")
    new = [new_execution(info, "go", p, submitter="t", trigger="webhook") for p in ('{"n":0}', '{"fail":1}', '{"n":2}')]
    ids = enqueue(ctx, new)
    import redis
    r = redis.Redis.from_url(redis_url)
    assert r.llen(QUEUE) == 1
    r.delete(QUEUE)
    res = run_batch(ctx, Runtime(), ids, worker="w")
    assert len(res.recorded) == 3
    with ctx.db.session() as s:
        got = {e.id: e for e in s.scalars(select(Execution).where(Execution.id.in_(ids)))}
        assert [got[i].status for i in ids] == ["succeeded", "trapped", "succeeded"]
        assert len({got[i].seq for i in ids}) == 3
    assert run_batch(ctx, Runtime(), ids, worker="w").skipped == 3  # redelivered: nothing recorded twice
    ctx.db.engine.dispose()


def test_outcomes_without_logs_or_chains_are_recorded_in_one_autocommit_statement(h):
    """The bench's shape (echo, no logs, no chain): the lighter recording path, same guarantees."""
    from .helpers import wasm
    assert h.upload(h.t, "echo.wasm", wasm("echo")).status_code == 201
    r = h.deploy(h.t, "id: plain\nqueues: [{id: main}]\njobs:\n  - event: {id: p, schema: {id: any, "
                      "schemaref: any.json}, supplierqueue: main, runtime: echo}\n"
                      "runtimes:\n  - {id: echo, moduleref: echo.wasm}\n")
    assert r.status_code == 201, r.get_json()
    r = h.post_events("t1", "p", {"data": [{"n": i} for i in range(4)]}, headers=h.t.headers)
    ids = r.get_json()["executions"]
    (name, args, _), = take(h, "jobico.t1.plain.main")
    res = run_batch(h.ctx, Runtime(), args[0], worker="w")
    assert len(res.recorded) == 4 and [d["logs"] for d in res.recorded] == [[]] * 4
    got = rows(h, ids)
    assert {got[i].status for i in ids} == {"succeeded"} and len({got[i].seq for i in ids}) == 4
    claimed = claim_many(h.ctx, ids, "w")  # nothing left to claim
    assert claimed == []
    fake = [Outcome(got[i], None, "failed") for i in ids]  # a late duplicate delivery's outcomes
    assert record_many(h.ctx, fake) == ([], ids)
    assert {rows(h, ids)[i].status for i in ids} == {"succeeded"}
    # the single-execution task's lone-outcome path, likewise
    (eid,) = h.post_events("t1", "p", {"data": [{"n": 9}]}, headers=h.t.headers).get_json()["executions"]
    (name, (tid, payload), _), = take(h, "jobico.t1.plain.main")
    assert (name, tid) == (EXECUTE_TASK, eid)
    rec = run_execution(h.ctx, Runtime(), eid, payload, worker="w")
    assert (rec["status"], rec["logs"], rec["attempts"]) == ("succeeded", [], 1)
    again = run_execution(h.ctx, Runtime(), eid, payload, worker="w")  # redelivered: not recorded twice
    assert again["seq"] == rec["seq"] and again["attempts"] == 1


def test_recorded_but_chain_unpublished_goes_back_to_its_own_task(h, monkeypatch):
    """The broker fails right after a flush committed: the recorded executions' chained tasks
    are not lost: each execution goes back as its own task, which finds it final and publishes
    the chained task."""
    deploy(h)
    ids = post(h, [{"n": 0}, {"n": 1}])
    take(h)
    real, calls = batch_mod.publish, []

    def broker_down_once(app, messages, **kw):
        calls.append(messages)
        if len(calls) == 1:
            raise Unavailable("the message broker is unavailable")
        return real(app, messages, **kw)

    monkeypatch.setattr(batch_mod, "publish", broker_down_once)
    with pytest.raises(BatchInterrupted) as info:
        run_batch(h.ctx, Runtime(), ids, worker="w")
    assert sorted(r.id for r in info.value.unfinished) == sorted(ids)
    got = rows(h, ids)
    assert {got[i].status for i in ids} == {"succeeded"}  # recorded (once)
    assert take(h) == []  # but no chained task got out
    for r in info.value.unfinished:  # what the task publishes: each its own task
        rec = run_execution(h.ctx, Runtime(), r.id, r.payload, worker="w", infra_retries=1)
        assert rec["status"] == "succeeded" and rec["seq"] == got[r.id].seq
    with h.ctx.db.session() as s:
        children = set(s.scalars(select(Execution.id).where(Execution.chained_from.in_(ids))))
    assert len(children) == 2 and {a[0] for _, a, _ in take(h)} == children


def test_records_are_streamed_once_each_in_recording_order_off_the_tasks_path(h):
    """The worker's announcer (jobico_worker.announcer): what single and batch tasks record is
    published on the tenant's channel after the task returned, in recording order, once; a
    redelivery that finds the row final streams nothing."""
    deploy(h)
    sub = h.redis.pubsub()
    sub.subscribe(results_channel("t1"))
    assert sub.get_message(timeout=5)["type"] == "subscribe"
    [one] = post(h, [{"n": 0}])
    many = post(h, [{"n": 1}, {"n": 2}])
    take(h)
    rec = run_execution(h.ctx, Runtime(), one, '{"n":0}', worker="w")
    assert rec["status"] == "succeeded"
    run_batch(h.ctx, Runtime(), many, worker="w")
    assert run_execution(h.ctx, Runtime(), one, '{"n":0}', worker="w2")["status"] == "succeeded"  # redelivered
    assert announcer(h.ctx).drain(10)
    seen: list[dict] = []

    def three() -> bool:
        while (m := sub.get_message(ignore_subscribe_messages=True, timeout=0.1)) is not None:
            seen.append(json.loads(m["data"]))
        return len(seen) >= 3

    wait_until(three, timeout=10, what="three records on the stream")
    assert seen[0]["id"] == one and sorted(d["id"] for d in seen[1:]) == sorted(many)  # one batch: any order
    assert [d["status"] for d in seen] == ["succeeded"] * 3 and seen[0]["result"] == '{"n":0}'
    assert sub.get_message(ignore_subscribe_messages=True, timeout=0.5) is None  # the redelivery: nothing
    sub.close()


def _record_chained(h, recorder: str, claimed, info, done: dict) -> None:
    """Record ``claimed`` succeeded (its ``ok`` event chained) by ``executor.record`` or ``batch.record_many``."""
    outcome = Outcome(claimed, info, "succeeded", result='{"n":0}')
    done["recorded"] = (record(h.ctx, claimed, info, status="succeeded", result=outcome.result).recorded
                        if recorder == "record" else bool(record_many(h.ctx, [outcome])[0]))


@pytest.mark.parametrize("recorder", ["record", "record_many"])
def test_a_chained_execution_racing_a_tenant_delete_leaves_nothing_under_the_name(h, recorder):
    """PostgreSQL, both orders, with the outcome's row held by another transaction so each side
    is stopped where the other must come: the delete is under way (versions gone, uncommitted)
    when the outcome and its chained row are recorded (the chained row goes in nowhere, the
    outcome finds its row deleted), or the recording is under way when the delete comes (the
    delete waits for its version fence, then deletes the chained row too). No deadlock either way."""
    import threading

    from jobico_core.services import packages, tenants
    for delete_first in (True, False):
        if delete_first is False:  # the tenant again, as the fixture made it
            h.t = h.tenant("t1")
            assert h.upload(h.t, "flaky.wasm", FLAKY).status_code == 201
            assert h.upload(h.t, "any.json", {}).status_code == 201
        deploy(h)
        info = packages.route(h.ctx, "t1", "go")
        (claimed,) = claim_many(h.ctx, post(h, [{"n": 0}]), "w")
        take(h)
        done: dict = {}
        recording = threading.Thread(target=_record_chained, args=(h, recorder, claimed, info, done))
        deleting = threading.Thread(target=tenants.delete_tenant, args=(h.ctx, "t1"))
        with h.ctx.db.engine.connect() as holder:  # holds the outcome's row
            holder.exec_driver_sql("SELECT 1 FROM executions WHERE id = %s FOR UPDATE", (claimed.id,))
            for n, t in enumerate((deleting, recording) if delete_first else (recording, deleting), start=1):
                t.start()
                wait_for_lock_waits(h.ctx.db.engine, n)
            holder.rollback()
        for t in (recording, deleting):
            t.join(60)
            assert not t.is_alive()
        assert done["recorded"] is not delete_first  # a delete first: its row is gone, nothing recorded
        with h.ctx.db.session() as s:
            assert list(s.scalars(select(Execution.id).where(Execution.tenant_id == "t1"))) == []
        # a delete first: no chained task; else the chained row's task went out before the delete
        # removed the row (a worker drops a task whose row is gone)
        assert len(take(h)) == (0 if delete_first else 1)
