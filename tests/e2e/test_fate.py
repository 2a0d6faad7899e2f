"""Every accepted event reaches a final record, on the real platform (the API in a thread,
Celery worker processes, real Redis, PostgreSQL and S3): an unexpected exception in a task is
recorded ``failed``/``internal_error`` with the error id of its log line, dead-lettered and
replayable; a worker SIGKILLed mid-run whose task is gone is recovered within the lease; a
cancel of such an execution ends ``cancelled``.

The unexpected exception comes from a corrupt stored row: the row's ``event`` names an event
its package version does not have (what a damaged database or a bad manual edit leaves). The
worker's code meets it unprepared (a ``KeyError``), as it would any defect; repairing the row
is "fixing the cause". Nothing in the platform knows about this test.

"The task is gone" is made exactly: a whole worker is SIGKILLed (main and pool processes), and
its task's message is deleted from kombu's ``unacked`` hash, which is what an acknowledged (or
lost) message amounts to: nothing in Redis will ever deliver it again.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select, update

from jobico_core.db import Execution, utcnow
from tests.waiting import wait_until

from .helpers import example

JOBICO = Path(sys.executable).parent / "jobico"

YAML = """
id: fate
queues: [{id: q}]
jobs:
  - event: {id: go, schema: {id: s, schemaref: any.json}, supplierqueue: q, runtime: echo}
  - event: {id: nap, schema: {id: s, schemaref: any.json}, supplierqueue: q, runtime: nap,
            limits: {timeout_ms: 20000}}
runtimes:
  - {id: echo, moduleref: echo.wasm}
  - {id: nap, moduleref: nap.wasm}
"""
ERROR_ID = re.compile(r"^internal_error: the worker failed unexpectedly \(KeyError; error id ([0-9a-f]{16})\)")


def _setup(p, tenant: str) -> str:
    key = p.tenant(tenant)
    for f in ("jobicolets/echo.wasm", "jobicolets/nap.wasm", "schemas/any.json"):
        p.upload(key, example(f))
    p.deploy(key, YAML)
    return key


def _cli(p, key: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(JOBICO), "--api-url", p.url, "--token", key, *args], capture_output=True, text=True,
                          timeout=60)


def _set_event(p, ids: list[str], event: str) -> None:
    with p.ctx.db.session() as s:
        s.execute(update(Execution).where(Execution.id.in_(ids)).values(event=event))


def _row(p, eid: str) -> Execution:
    with p.ctx.db.session() as s:
        return s.scalar(select(Execution).where(Execution.id == eid))


def _poll(what: str, check, timeout: float = 30.0, every: float = 0.02):
    return wait_until(check, timeout, what=what, interval=every)


def _forget_task(p, eid: str) -> None:
    """Delete ``eid``'s message from kombu's ``unacked`` hash: as if it had been acknowledged."""
    r = p.ctx.redis
    gone = 0
    for tag, raw in r.hgetall("unacked").items():
        message = json.loads(raw)[0]
        if eid in base64.b64decode(message["body"]).decode("utf-8", "replace"):
            gone += r.hdel("unacked", tag)
            r.zrem("unacked_index", tag)
    assert gone == 1, "the killed worker's task was not in unacked"


def _holder(p, rec: dict):
    [w] = [w for w in p.workers if rec["worker"].startswith(f"{w.name}@")]
    return w


def test_an_unexpected_exception_is_recorded_with_its_error_id_dead_lettered_and_retried(platform):
    p = platform
    key = _setup(p, "fate1")
    [single] = p.post(key, "fate1", "go", [{"n": 0}]).json()["executions"]  # a jobico.execute task
    batch = p.post(key, "fate1", "go", [{"n": i} for i in range(4)]).json()["executions"]  # one execute_batch
    _set_event(p, [single, batch[2]], "vanished")  # corrupt rows, before any worker takes them
    w = p.start_worker("w1", concurrency=1)

    rec = p.wait(key, single)
    assert (rec["status"], rec["dead_lettered"], rec["attempts"]) == ("failed", True, 1), rec
    single_error = ERROR_ID.match(rec["message"]).group(1)
    recs = [p.wait(key, i) for i in batch]
    # the batch: what ran before the exception keeps its outcome; the rest gets that fate
    assert [r["status"] for r in recs] == ["succeeded", "succeeded", "failed", "failed"], recs
    assert recs[0]["result"] == '{"n":0}' and recs[1]["dead_lettered"] is False
    batch_errors = {ERROR_ID.match(r["message"]).group(1) for r in recs[2:]}
    assert len(batch_errors) == 1 and all(r["dead_lettered"] for r in recs[2:])
    [batch_error] = batch_errors
    assert batch_error != single_error

    # the worker's log line carries the same id, the executions and the traceback
    log = w.log_path.read_text(errors="replace")
    for error_id, ids in ((single_error, [single]), (batch_error, batch[2:])):
        [line] = [ln for ln in log.splitlines() if f"internal error {error_id}" in ln]
        assert "KeyError: 'vanished'" in line and all(i in line for i in ids), line
        after = log[log.index(line):]
        assert "Traceback (most recent call last)" in after.split("\n", 2)[1]
    # dead letters, where an operator looks for them
    failed = p.call(key, "GET", "/api/v1/executions?status=failed").json()["items"]
    assert sorted(e["id"] for e in failed if e["dead_lettered"]) == sorted([single, *batch[2:]])
    res = _cli(p, key, "executions", "show", single)
    assert res.returncode == 0 and single_error in res.stdout.replace("\n", ""), res.stdout

    # the cause is fixed (the rows repaired): the tenant's retry runs them to success
    _set_event(p, [single, batch[2]], "go")
    for eid in (single, batch[2], batch[3]):
        res = _cli(p, key, "executions", "retry", eid, "--json")
        assert res.returncode == 0, res.stderr
    for eid in (single, batch[2], batch[3]):
        rec = p.wait(key, eid)
        assert (rec["status"], rec["dead_lettered"], rec["attempts"]) == ("succeeded", False, 2), rec


def test_a_killed_workers_execution_is_recovered_within_the_lease_and_a_cancel_of_one_ends(platform):
    p = platform
    key = _setup(p, "fate2")
    lease = 4.0
    env = {"JOBICO_EXECUTION_LEASE_SECONDS": f"{lease:g}"}
    bound = 1.5 * lease  # from the last renewal (at most a third of a lease before the kill)
    p.ready(p.start_worker("w1", concurrency=1, extra_env=env, wait=False),
            p.start_worker("w2", concurrency=1, extra_env=env, wait=False))

    # 1. the worker running it dies and its task is gone: the other worker's recovery requeues it
    [lost] = p.post(key, "fate2", "nap", [{"seconds": 6}]).json()["executions"]
    rec = p.wait(key, lost, until=lambda e: e["status"] == "running")
    holder = _holder(p, rec)
    # its worker renews the lease while it runs (every lease / 3): renewed past the claim's lease
    _poll("a lease renewal", lambda: (lambda r: r.lease_until > r.started_at + dt.timedelta(seconds=lease))(
        _row(p, lost)), timeout=lease + 10)
    holder.stop(signal.SIGKILL)
    killed = time.monotonic()
    _forget_task(p, lost)
    _poll("the recovery", lambda: _row(p, lost).status != "running" or _row(p, lost).attempts > 1,
          timeout=bound + 30)
    recovered_s = time.monotonic() - killed
    assert recovered_s < bound + 3, f"recovered {recovered_s:.1f} s after the kill (lease {lease:g} s)"
    rec = p.wait(key, lost, timeout=60)
    survivor = [w for w in p.workers if w is not holder][0]
    assert (rec["status"], rec["attempts"], rec["result"]) == ("succeeded", 2, "slept 6 s"), rec
    assert rec["worker"].startswith(f"{survivor.name}@")
    print(f"\nrecovered {recovered_s:.2f} s after the SIGKILL (lease {lease:g} s, bound {bound:g} s)")

    # 2. the last worker dies too while running one; its cancel is asked while the lease runs on
    #    (202: the request stands), and the next worker's recovery records it cancelled
    [asked] = p.post(key, "fate2", "nap", [{"seconds": 9}]).json()["executions"]
    p.wait(key, asked, until=lambda e: e["status"] == "running")
    survivor.stop(signal.SIGKILL)
    _forget_task(p, asked)
    res = _cli(p, key, "executions", "cancel", asked, "--wait", "0", "--json")
    assert res.returncode == 4, (res.returncode, res.stdout, res.stderr)
    assert (json.loads(res.stdout)["cancel"], json.loads(res.stdout)["status"]) == ("requested", "running")
    api_bound = 1.5 * p.settings.execution_lease_s  # the API's setting (this test's API has the default)
    assert f"recorded cancelled within {api_bound:g} s" in json.loads(res.stdout)["detail"]
    w3 = p.start_worker("w3", concurrency=1, extra_env=env)
    started = time.monotonic()
    rec = p.wait(key, asked, timeout=bound + 30)
    took = time.monotonic() - started
    assert (rec["status"], rec["cancelled_by"], rec["dead_lettered"]) == ("cancelled", "default", False), rec
    assert rec["message"].startswith("cancelled by default: its worker ") and "stopped renewing its lease" in \
        rec["message"] and took < lease / 2 + 5

    # 3. once the lease of a lost execution ran out, its cancel ends it at once
    [late] = p.post(key, "fate2", "nap", [{"seconds": 9}]).json()["executions"]
    p.wait(key, late, until=lambda e: e["status"] == "running")
    w3.stop(signal.SIGKILL)
    _forget_task(p, late)
    _poll("the lease to run out", lambda: _row(p, late).lease_until < utcnow(), timeout=lease + 10, every=0.1)
    assert _row(p, late).status == "running"  # no worker left to recover it
    r = p.call(key, "POST", f"/api/v1/executions/{late}/cancel")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["cancel"], body["status"]) == ("cancelled_running", "cancelled")
    assert body["message"] == "cancelled by default: its worker stopped renewing its lease while it ran"
    assert body["cancel_ms"] < 3000
