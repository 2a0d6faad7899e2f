"""Every accepted event reaches a final record: running executions' leases and their recovery
(jobico_core/services/leases.py, jobico_worker/heartbeat.py) and unexpected exceptions in a
task (jobico_worker/failures.py).

Real PostgreSQL, Redis and S3 (and SQLite for `make run`), real WASM: events go through the
webhook, their tasks are read back from Redis and run in this process, so a worker's death
can be placed exactly (a claimed row that nothing runs any more is what a SIGKILL leaves).
tests/e2e/test_fate.py does the same with real worker processes and signals.
"""
from __future__ import annotations

import datetime as dt
import logging
import re

import pytest
from sqlalchemy import update

from jobico_core.db import Execution, utcnow
from jobico_core.services import leases
from jobico_core.services.executions import retry_execution
from jobico_worker import heartbeat
from jobico_worker.batch import BatchFailed, run_batch
from jobico_worker.executor import claim, run_execution
from jobico_worker.failures import record_internal_error
from tests.waiting import wait_until

from .test_batch import FLAKY, Runtime, deploy, flaky_tenant, post, rows, take


@pytest.fixture
def h(make_api):
    """A tenant t1 with test_batch's package files (deploy() deploys it)."""
    return flaky_tenant(make_api)


def _set(h, eid: str, **values) -> None:
    with h.ctx.db.session() as s:
        s.execute(update(Execution).where(Execution.id == eid).values(**values))


def _record(h, eid: str) -> dict:
    r = h.client.get(f"/api/v1/executions/{eid}", headers=h.t.headers)
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def test_a_claim_leases_the_row_and_only_the_attempt_it_claimed_renews_it(h, make_api):
    deploy(h)
    [eid] = post(h, [{"n": 0}])
    take(h)
    state, row = claim(h.ctx, eid, "w1")
    assert state == "run"
    lease = h.settings.execution_lease_s
    assert abs((row.lease_until - row.started_at).total_seconds() - lease) < 1
    _set(h, eid, lease_until=utcnow())
    leases.renew(h.ctx, [(eid, row.attempts - 1)])  # a delivery a later claim superseded: renews nothing
    assert rows(h, [eid])[eid].lease_until <= utcnow()
    leases.renew(h.ctx, [(eid, row.attempts)])
    assert rows(h, [eid])[eid].lease_until > utcnow() + dt.timedelta(seconds=lease - 5)

    # an infrastructure retry's countdown: the lease covers it (a row not running is left alone)
    [other] = post(h, [{"n": 1}])
    take(h)
    leases.extend(h.ctx, [eid, other], 45)
    assert rows(h, [eid])[eid].lease_until > utcnow() + dt.timedelta(seconds=lease + 40)
    assert rows(h, [other])[other].lease_until is None

    # the process's heartbeat thread renews what it holds, every third of the lease, and stops after
    quick = make_api(execution_lease_s=1.5)
    _set(h, eid, lease_until=utcnow())
    with heartbeat.holding(quick.ctx, [row]):
        wait_until(lambda: rows(h, [eid])[eid].lease_until > utcnow(), 10, what="the heartbeat renewing the lease")
    assert heartbeat.heartbeat(quick.ctx).held() == []


def test_the_recovery_requeues_fails_or_cancels_what_no_worker_holds(h):
    deploy(h)
    plain, spent, asked, leased, ignored = post(h, [{"n": i} for i in range(5)])
    take(h)
    claimed = {eid: claim(h.ctx, eid, "w-dead")[1] for eid in (plain, spent, asked, leased, ignored)}
    past = utcnow() - dt.timedelta(seconds=1)
    for eid in (plain, spent, asked):  # as if claimed a lease ago and never renewed
        _set(h, eid, lease_until=past, started_at=past - dt.timedelta(seconds=h.settings.execution_lease_s))
    _set(h, spent, attempts=h.settings.max_attempts)
    long_ago = utcnow() - dt.timedelta(seconds=h.settings.execution_lease_s + 1)
    _set(h, asked, cancel_requested_at=utcnow(), cancelled_by="ops")
    _set(h, ignored, cancel_requested_at=long_ago, cancelled_by="ops")  # its worker lives but does not act

    # claimed by a worker older than leases: no lease, or an earlier claim's; its start + a lease stands
    [legacy, relic] = post(h, [{"n": 5}, {"n": 6}])
    take(h)
    for eid in (legacy, relic):
        claim(h.ctx, eid, "w-old")
    _set(h, legacy, lease_until=None, started_at=long_ago)
    _set(h, relic, lease_until=utcnow() - dt.timedelta(seconds=3600))  # its start is now: leased 60 s more

    done = leases.recover(h.ctx)
    assert done == {"requeued": sorted([plain, legacy]), "cancelled": sorted([asked, ignored]), "failed": [spent]}
    assert rows(h, [relic])[relic].status == "running"
    got = rows(h, [plain, spent, asked, leased, ignored])
    assert got[leased].status == "running"  # its worker renews its lease: left alone
    assert (got[plain].status, got[plain].attempts) == ("queued", 1)
    assert got[plain].message.startswith("requeued: its worker w-dead stopped renewing its lease during attempt 1")
    assert (got[spent].status, got[spent].dead_lettered) == ("failed", True)
    assert f"attempt {h.settings.max_attempts} of {h.settings.max_attempts}" in got[spent].message
    assert (got[asked].status, got[asked].chained_from) == ("cancelled", None)
    assert got[asked].message.startswith("cancelled by ops: its worker w-dead stopped renewing its lease")
    assert got[ignored].message == (f"cancelled by ops: its worker w-dead did not stop it within "
                                    f"{h.settings.execution_lease_s:g} s")
    assert all(got[e].seq is not None and got[e].finished_at is not None for e in (spent, asked, ignored))

    # the requeued one's task is published again (alone: one lost row), and runs (attempt 2)
    # their tasks are published again (the two of one event as one batch task), and run (attempt 2)
    [(name, args, _headers)] = take(h)
    assert (name, sorted(args[0])) == ("jobico.execute_batch", sorted([plain, legacy]))
    assert len(run_batch(h.ctx, Runtime(), args[0], worker="w2").recorded) == 2
    rec = _record(h, plain)
    assert (rec["status"], rec["attempts"], rec["message"], rec["worker"]) == ("succeeded", 2, None, "w2")
    assert leases.recover(h.ctx) == {"requeued": [], "cancelled": [], "failed": []}
    assert (claimed[leased].id, rows(h, [leased])[leased].status) == (leased, "running")
    assert leases.recover(h.ctx, now=utcnow() + dt.timedelta(seconds=h.settings.execution_lease_s + 1)) \
        == {"requeued": sorted([leased, relic]), "cancelled": [], "failed": []}
    # one sweep per period across workers (a Redis lock)
    h.redis.delete(leases.LOCK_KEY)
    assert leases.sweep(h.ctx) is not None and leases.sweep(h.ctx) is None


def test_a_cancel_of_a_running_row_whose_lease_ran_out_ends_at_once(h):
    deploy(h)
    lost, alive = post(h, [{"n": 0}, {"n": 1}])
    take(h)
    claim(h.ctx, lost, "w-dead")
    claim(h.ctx, alive, "w-alive")
    past = utcnow() - dt.timedelta(seconds=1)
    _set(h, lost, lease_until=past, started_at=past - dt.timedelta(seconds=h.settings.execution_lease_s))
    r = h.client.post(f"/api/v1/executions/{lost}/cancel", headers=h.t.headers)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert (body["cancel"], body["status"], body["cancelled_by"]) == ("cancelled_running", "cancelled", "default")
    assert body["message"] == "cancelled by default: its worker stopped renewing its lease while it ran"
    assert "its worker was lost" in body["detail"] and body["seq"] is not None
    # a leased one is asked (202); the answer says when it ends at the latest
    r = h.client.post(f"/api/v1/executions/{alive}/cancel?wait=0", headers=h.t.headers)
    assert r.status_code == 202 and r.get_json()["cancel"] == "requested"
    assert f"recorded cancelled within {1.5 * h.settings.execution_lease_s:g} s" in r.get_json()["detail"]


def test_an_unexpected_exception_in_a_batch_records_what_ran_and_fails_the_rest(h, caplog):
    deploy(h)
    ids = post(h, [{"n": i} for i in range(4)])
    take(h)
    boom = KeyError("a defect")
    try:
        run_batch(h.ctx, Runtime(fail_at=2, exc=boom), ids, worker="w")
    except BatchFailed as failed:
        assert failed.cause is boom and failed.unfinished == ids[1:]
    else:
        raise AssertionError("no BatchFailed")
    assert rows(h, ids)[ids[0]].status == "succeeded"  # it ran before: recorded with its outcome
    with caplog.at_level(logging.ERROR, logger="jobico.worker"):
        error_id = record_internal_error(h.ctx, ids, boom, "batch of 4", {})  # the first keeps its outcome
    got = rows(h, ids)
    assert got[ids[0]].status == "succeeded"
    for eid in ids[1:]:
        assert (got[eid].status, got[eid].dead_lettered) == ("failed", True)
        assert got[eid].message.startswith("internal_error: the worker failed unexpectedly (KeyError; error id ")
        assert re.search(r"error id ([0-9a-f]{16})\)", got[eid].message).group(1) == error_id
        assert got[eid].seq is not None
    [line] = [r for r in caplog.records if getattr(r, "error_id", None) == error_id]
    assert error_id in line.getMessage() and all(eid in line.getMessage() for eid in ids)
    assert line.exc_info[1] is boom

    # the tenant's retry replays it once the cause is gone
    retry_execution(h.ctx, "t1", ids[1])
    [args] = [a for _name, a, _headers in take(h) if a[0] == ids[1]]  # (besides the first's ok chain)
    rec = run_execution(h.ctx, Runtime(), args[0], args[1], worker="w")
    assert (rec["status"], rec["dead_lettered"]) == ("succeeded", False)
    assert _record(h, ids[1])["status"] == "succeeded"


def test_leases_and_the_recovery_on_sqlite(sqlite_ctx, redis_url):
    """`make run`'s database: the same recovery and internal-error record on SQLite."""
    import redis

    from jobico_core.services import files, packages
    from jobico_core.services.executions import enqueue, new_execution

    from .test_batch import PACKAGE, QUEUE
    ctx = sqlite_ctx
    files.upload(ctx, "t1", "flaky.wasm", FLAKY)
    files.upload(ctx, "t1", "any.json", b"{}")
    packages.deploy(ctx, "t1", PACKAGE.format(retries=0))
    info = packages.route(ctx, "t1", "go")
    ids = enqueue(ctx, [new_execution(info, "go", '{"n":0}', submitter="t", trigger="webhook"),
                        new_execution(info, "go", '{"n":1}', submitter="t", trigger="webhook")])
    r = redis.Redis.from_url(redis_url)
    r.delete(QUEUE)
    for eid in ids:
        assert claim(ctx, eid, "w-dead")[0] == "run"
    later = utcnow() + dt.timedelta(seconds=ctx.settings.execution_lease_s + 1)
    assert leases.recover(ctx, now=later)["requeued"] == ids
    assert r.llen(QUEUE) == 1  # one batch task for the two
    r.delete(QUEUE)
    claim(ctx, ids[0], "w")
    record_internal_error(ctx, ids, RuntimeError("x"), "test")
    with ctx.db.session() as s:
        got = {e.id: e for e in s.query(Execution).filter(Execution.id.in_(ids))}
        assert {got[i].status for i in ids} == {"failed"} and all(got[i].dead_lettered for i in ids)
        assert len({got[i].seq for i in ids}) == 2
    ctx.db.engine.dispose()


def test_a_deleted_packages_queued_and_lost_executions_are_cancelled(h):
    """Found by the stateful suite: an execution queued (or claimed by a worker that died) when
    its package is deleted sat on a queue no worker consumes any more, for good. The delete
    records the queued ones ``cancelled`` at once; the recovery does the same for a lost running
    one (instead of putting it back on that queue) and for any the delete could not reach."""
    deploy(h)
    queued, lost, busy = post(h, [{"n": 0}, {"n": 1}, {"n": 2}])
    take(h)  # their tasks are gone with the queue nobody consumes
    assert claim(h.ctx, lost, "w-dead")[0] == "run"
    assert claim(h.ctx, busy, "w-alive")[0] == "run"
    r = h.client.delete("/api/v1/packages/batchy", headers=h.t.headers)
    assert r.status_code == 204, r.get_json()
    rec = _record(h, queued)
    assert rec["status"] == "cancelled" and "was deleted before the execution ran" in rec["message"], rec
    assert _record(h, lost)["status"] == "running"  # its lease still runs: its worker may be alive

    # the lost one's lease runs out: cancelled, not requeued; a live worker's (leased) row is left alone
    later = utcnow() + dt.timedelta(seconds=h.settings.execution_lease_s + 1)
    _set(h, busy, lease_until=later + dt.timedelta(seconds=60))  # its worker renews it
    done = leases.recover(h.ctx, now=later)
    assert done["cancelled"] == [lost] and done["requeued"] == [] and take(h) == []
    rec = _record(h, lost)
    assert rec["status"] == "cancelled" and "its worker was lost" in rec["message"], rec
    assert _record(h, busy)["status"] == "running"

    # a queued row the delete did not reach (its process stopped in between): the sweep ends it
    deploy(h)
    [late] = post(h, [{"n": 3}])
    take(h)
    with h.ctx.db.session() as s:  # the package goes as a delete stopped right after its commit leaves it
        from jobico_core.db import Package
        s.delete(s.query(Package).filter_by(tenant_id="t1", name="batchy").one())
    assert _record(h, late)["status"] == "queued"
    assert leases.recover(h.ctx)["cancelled"] == [late]
    assert _record(h, late)["status"] == "cancelled"
