"""Cancel and resubmit (``POST /api/v1/executions/<id>/cancel|resubmit``) on real PostgreSQL,
Redis and S3 with real WASM. The tasks are read back from the tenant's Redis list and run in
this process (``executor.run_execution``, ``batch.run_batch``), so each state can be placed
exactly; a running execution runs in a thread of this process, with this process's cancel
listener (``jobico_worker.cancellation``) subscribed as a pool process's is. The real worker
processes' path is in tests/e2e/test_cancel.py."""
from __future__ import annotations

import base64
import json
import threading
import time

import pytest
from sqlalchemy import select, update

from jobico_core.db import Execution
from jobico_worker import cancellation
from jobico_worker.batch import run_batch
from jobico_worker.executor import claim, run_execution
from tests.waiting import wait_until

from .helpers import wasm

pytestmark = pytest.mark.services

PACKAGE = """\
id: naps
queues: [{id: q}]
jobs:
  - event:
      id: nap
      schema: {id: s, schemaref: any.json}
      supplierqueue: q
      runtime: sleeper
      retries: 2
      limits: {timeout_ms: 10000, fuel: 10000000000}
    result:
      ok: {id: woke, schema: {id: s, schemaref: any.json}, supplierqueue: q, runtime: echo}
      error: {id: grumpy, schema: {id: s, schemaref: any.json}, supplierqueue: q, runtime: echo}
  - event:
      id: say
      schema: {id: p, schemaref: person.json}
      supplierqueue: q
      runtime: echo
runtimes:
  - {id: sleeper, moduleref: sleeper.wasm}
  - {id: echo, moduleref: echo.wasm}
"""
QUEUE = "jobico.t1.naps.q"
PERSON = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


@pytest.fixture
def h(api):
    t = api.tenant("t1")
    for name, data in (("sleeper.wasm", wasm("sleeper")), ("echo.wasm", wasm("echo")), ("any.json", {}),
                       ("person.json", PERSON)):
        assert api.upload(t, name, data).status_code == 201
    r = api.deploy(t, PACKAGE)
    assert r.status_code == 201, r.get_json()
    api.t = t
    return api


@pytest.fixture
def listener(h):
    """This process listens for cancel requests like a worker pool process."""
    thread = cancellation.start(h.settings.redis_url)
    assert thread.subscribed.is_set()
    yield thread
    cancellation.stop()


def runtime():
    from jobico_runtime import get_runtime
    return get_runtime()


def post(h, event: str, events: list) -> list[str]:
    r = h.post_events("t1", event, {"data": events}, headers=h.t.headers)
    assert r.status_code == 200, r.get_json()
    return r.get_json()["executions"]


def take(h, queue: str = QUEUE) -> list[tuple[str, list]]:
    out = []
    while (raw := h.redis.rpop(queue)) is not None:
        msg = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(msg["body"]))
        out.append((msg["headers"]["task"], args))
    return out


def cancel(h, eid: str, query: str = "", **kw):
    return h.client.post(f"/api/v1/executions/{eid}/cancel{query}", headers=h.t.headers, **kw)


def get(h, eid: str) -> dict:
    r = h.client.get(f"/api/v1/executions/{eid}", headers=h.t.headers)
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def test_a_cancelled_queued_execution_never_starts_on_either_task_path(h):
    ps = h.redis.pubsub()
    ps.subscribe("jobico:tenant:t1:executions")
    assert ps.get_message(timeout=5)["type"] == "subscribe"
    [alone] = post(h, "nap", [{}])
    batch = post(h, "say", [{"name": "a"}, {"name": "b"}, {"name": "c"}])
    tasks = take(h)
    assert [n for n, _ in tasks] == ["jobico.execute", "jobico.execute_batch"]

    r = cancel(h, alone)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert (body["cancel"], body["status"], body["cancelled_by"]) == ("cancelled_queued", "cancelled", "default")
    assert body["message"] == "cancelled by default before it started" and body["seq"] > 0
    assert body["detail"] == f"execution {alone} cancelled before it started" and body["cancel_ms"] >= 0
    assert body["finished_at"] and body["started_at"] is None and body["payload"] == "{}"
    streamed = ps.get_message(timeout=5)  # announced like a recorded outcome (the stream replays it too)
    assert json.loads(streamed["data"])["id"] == alone and json.loads(streamed["data"])["status"] == "cancelled"
    r = cancel(h, batch[1], json={"wait": 0})  # the body form of ?wait=
    assert r.status_code == 200 and r.get_json()["cancel"] == "cancelled_queued"

    # the tasks arrive later: the cancelled rows are not claimed, the others run
    rec = run_execution(h.ctx, runtime(), alone, "{}", worker="w")
    assert (rec["status"], rec["attempts"], rec["started_at"]) == ("cancelled", 0, None)
    res = run_batch(h.ctx, runtime(), tasks[1][1][0], worker="w")
    assert sorted(d["id"] for d in res.recorded) == sorted([batch[0], batch[2]]) and res.skipped == 1
    assert [get(h, i)["status"] for i in batch] == ["succeeded", "cancelled", "succeeded"]
    assert get(h, batch[1])["attempts"] == 0
    assert take(h) == []  # nothing chained from a cancelled execution
    ps.close()


def test_cancel_of_a_running_execution_stops_it_records_it_and_fires_no_chain(h, listener):
    [eid] = post(h, "nap", [{}])
    [(_, (tid, payload))] = take(h)
    out: dict = {}
    thread = threading.Thread(target=lambda: out.update(run_execution(h.ctx, runtime(), tid, payload,
                                                                       worker="w")))
    thread.start()
    wait_until(lambda: get(h, eid)["status"] == "running", 10, what="the execution started")
    wait_until(lambda: runtime().ticker.active > 0, 10, what="the guest running")
    guest_seen = time.monotonic()  # the guest's run (duration_ms) began before this
    wait_until(lambda: time.monotonic() - guest_seen >= 0.2, 10, what="0.2 s into the guest's endless loop")
    t0 = time.monotonic()
    r = cancel(h, eid)
    elapsed = time.monotonic() - t0
    thread.join(15)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert (body["cancel"], body["status"], body["cancelled_by"]) == ("cancelled_running", "cancelled", "default")
    assert body["message"].startswith("cancelled by default after ") and body["message"].endswith(" ms")
    assert body["detail"] == f"execution {eid} {body['message']}"
    assert elapsed < 5 and body["cancel_ms"] < 5000  # generous: the guest stops within a tick
    assert body["duration_ms"] >= 200 and body["attempts"] == 1 and body["dead_lettered"] is False
    assert out["status"] == "cancelled"
    # stopping stops the workflow: no error chain, and no guest retry although retries: 2
    assert body["chain"] == [] and take(h) == []
    assert get(h, eid)["status"] == "cancelled" and listener.heard >= 1


def test_members_of_a_batch_task_are_cancelled_one_by_one(h, make_api, listener):
    """The batch path: a request for a claimed member that has not started yet is heard early
    and applied when it starts; the running one is stopped; neither chains nor is retried."""
    worker = make_api(task_batch_ms=20_000)  # its batches start every member, whatever the box's speed
    first, second = post(h, "nap", [{"n": 0}, {"n": 1}])
    [(name, (ids,))] = take(h)
    assert (name, ids) == ("jobico.execute_batch", [first, second])
    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(res=run_batch(worker.ctx, runtime(), ids, worker="w")))
    thread.start()
    wait_until(lambda: first in cancellation.running_here(), 10, what="the first execution started", interval=0.01)
    assert get(h, second)["status"] == "running"  # claimed with the batch, not started
    r = cancel(h, second, "?wait=0")
    assert r.status_code == 202 and r.get_json()["cancel"] == "requested"
    r = cancel(h, first)
    assert r.status_code == 200 and r.get_json()["cancel"] == "cancelled_running", r.get_json()
    thread.join(15)
    assert sorted(d["id"] for d in box["res"].recorded) == sorted(ids) and box["res"].requeued == 0
    late = get(h, second)
    assert (late["status"], late["cancelled_by"], late["attempts"]) == ("cancelled", "default", 1)
    assert late["message"].startswith("cancelled by default after ") and late["duration_ms"] < 1000
    assert take(h) == []  # no error chain, no guest retry (retries: 2)



def test_a_cancel_that_finds_no_worker_is_kept_and_honoured_at_redelivery(h):
    [eid] = post(h, "nap", [{}])
    take(h)
    state, _row = claim(h.ctx, eid, "w-that-dies")  # its worker dies while running it: nobody listens
    assert state == "run"
    r = cancel(h, eid, "?wait=0.3")
    assert r.status_code == 202, r.get_json()
    body = r.get_json()
    assert (body["cancel"], body["status"], body["cancelled_by"]) == ("requested", "running", "default")
    assert "still running after 0.3 s" in body["detail"] and body["cancel_ms"] >= 300
    # the task is redelivered: recorded cancelled without running it (no chain, not dead-lettered)
    rec = run_execution(h.ctx, runtime(), eid, "{}", worker="w2")
    assert (rec["status"], rec["message"], rec["attempts"]) == ("cancelled", "cancelled by default before it ran "
                                                                             "again", 2)
    assert rec["duration_ms"] is None and take(h) == []
    r = cancel(h, eid)  # again: nothing to do
    assert r.status_code == 200 and r.get_json()["cancel"] == "already_finished"


def test_a_queued_guest_retry_or_dead_letter_is_cancelled_as_queued(h):
    [eid] = post(h, "nap", [{}])
    take(h)
    with h.ctx.db.session() as s:  # as requeue() leaves it after a failed attempt (dead-lettered: parked)
        s.execute(update(Execution).where(Execution.id == eid).values(
            attempts=1, message="attempt 1 timed_out; retrying in 1.0s", dead_lettered=True))
    body = cancel(h, eid).get_json()
    assert (body["cancel"], body["message"]) == ("cancelled_queued", "cancelled by default while queued for "
                                                                     "another attempt")
    assert body["detail"] == f"execution {eid} cancelled while it was queued for another attempt"
    assert body["dead_lettered"] is False  # a cancelled execution is not replayed by `retry`
    r = h.client.post(f"/api/v1/executions/{eid}/retry", headers=h.t.headers)
    assert r.status_code == 409 and "not dead-lettered" in r.get_json()["message"]


def test_a_listener_that_lost_its_connection_reads_missed_requests_from_the_database(h):
    from jobico_core.db import utcnow
    [eid] = post(h, "nap", [{}])
    take(h)
    assert claim(h.ctx, eid, "w")[0] == "run"
    thread = cancellation.start(h.settings.redis_url, check=lambda ids: cancellation.asked_to_stop(h.ctx, ids))
    try:
        assert thread.connections == 1
        with cancellation.watch(eid) as token:
            # the request is written while the listener cannot hear it: its connection is gone
            with h.ctx.db.session() as s:
                s.execute(update(Execution).where(Execution.id == eid).values(cancel_requested_at=utcnow(),
                                                                               cancelled_by="ops"))
            assert h.redis.client_kill_filter(_type="pubsub") >= 1
            wait_until(lambda: token.cancelled, 10, what="the listener catching up", interval=0.01)
            assert token.reason == "cancelled by ops" and thread.connections == 2
    finally:
        cancellation.stop()


def test_finished_unknown_malformed_and_other_tenants_executions(h):
    [eid] = post(h, "say", [{"name": "a"}])
    [(_, (tid, payload))] = take(h)
    done = run_execution(h.ctx, runtime(), tid, payload, worker="w")
    r = cancel(h, eid)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert (body["cancel"], body["status"], body["cancelled_by"]) == ("already_finished", "succeeded", None)
    assert body["detail"] == f"execution {eid} already finished (succeeded): nothing to cancel"
    assert body["seq"] == done["seq"] and body["result"] == '{"name":"a"}'

    for bad in ("01890a5d-ac96-774b-bcce-b302099a8057", "not-a-uuid"):
        r = cancel(h, bad)
        assert r.status_code == 404 and r.get_json()["message"] == f"execution {bad!r} does not exist"
        r = h.client.post(f"/api/v1/executions/{bad}/resubmit", headers=h.t.headers)
        assert r.status_code == 404 and "does not exist" in r.get_json()["message"]
    other = h.tenant("t2")
    for action in ("cancel", "resubmit"):
        assert h.client.post(f"/api/v1/executions/{eid}/{action}", headers=other.headers).status_code == 404
        assert h.client.post(f"/api/v1/executions/{eid}/{action}").status_code == 401
        r = h.client.post(f"/api/v1/executions/{eid}/{action}", headers=h.admin)
        assert r.status_code == 403
    r = cancel(h, eid, "?wait=31")
    assert r.status_code == 422 and "wait" in r.get_json()["errors"]["query"]
    r = cancel(h, eid, json={"wait": "soon"})
    assert r.status_code == 422 and "wait" in r.get_json()["errors"]["json"]


def test_resubmit_links_both_ways_uses_the_active_version_and_checks_the_schema(h, make_api):
    r = h.client.post("/api/v1/tenants/t1/keys", json={"name": "ops-bot"}, headers=h.admin)
    ops = {"Authorization": f"Bearer {r.get_json()['key']}"}
    [eid] = post(h, "say", [{"name": "Ada", "n": 1}])
    take(h)
    assert cancel(h, eid).get_json()["cancel"] == "cancelled_queued"  # any status may be resubmitted

    r = h.client.post(f"/api/v1/executions/{eid}/resubmit", headers=ops)
    assert r.status_code == 201, r.get_json()
    new = r.get_json()
    assert new["id"] != eid and (new["status"], new["trigger"], new["submitter"]) == ("queued", "resubmit", "ops-bot")
    assert (new["resubmitted_from"], new["payload"], new["event"], new["version"]) == (eid, '{"n":1,"name":"Ada"}',
                                                                                       "say", 1)
    [(name, (tid, payload))] = take(h)
    assert (name, tid) == ("jobico.execute", new["id"])  # enqueued like a webhook event
    rec = run_execution(h.ctx, runtime(), tid, payload, worker="w")
    assert (rec["status"], rec["result"]) == ("succeeded", '{"n":1,"name":"Ada"}')
    assert get(h, eid)["resubmissions"] == [new["id"]] and get(h, new["id"])["resubmissions"] == []

    # the package's active version: a redeploy with another schema applies; a payload it refuses is 422
    h.upload(h.t, "strict.json", {"type": "object", "properties": {"name": {"type": "string", "maxLength": 2}},
                                  "required": ["name"]})
    assert h.deploy(h.t, PACKAGE.replace("schemaref: person.json", "schemaref: strict.json"),
                    package="naps").status_code == 201
    r = h.client.post(f"/api/v1/executions/{eid}/resubmit", headers=h.t.headers)
    assert r.status_code == 422, r.get_json()
    assert r.get_json()["message"].startswith(f"execution {eid} cannot be resubmitted: its payload no longer "
                                              "matches the schema of event 'say' of package 'naps' version 2: "
                                              "$.name: ")
    assert r.get_json()["errors"]["payload"][0]["path"] == "$.name"
    [short] = post(h, "say", [{"name": "Al"}])
    take(h)
    r = h.client.post(f"/api/v1/executions/{short}/resubmit", headers=h.t.headers)
    assert r.status_code == 201 and r.get_json()["version"] == 2
    again = r.get_json()["id"]
    take(h)

    # a queue at its cap refuses like the webhook (429), and nothing is created
    capped = make_api(max_queued=1)  # another API process of the same platform, with a cap of 1 task
    post(h, "say", [{"name": "B"}])
    r = capped.client.post(f"/api/v1/executions/{short}/resubmit", headers=h.t.headers)
    assert r.status_code == 429 and "already holds" in r.get_json()["message"]
    assert get(h, short)["resubmissions"] == [again]

    # the event is no longer deployed: 409
    assert h.client.delete("/api/v1/packages/naps", headers=h.t.headers).status_code == 204
    r = h.client.post(f"/api/v1/executions/{short}/resubmit", headers=h.t.headers)
    assert r.status_code == 409 and r.get_json()["message"] == (
        f"execution {short} cannot be resubmitted: event 'say' is no longer deployed")


def test_cancel_and_resubmit_on_sqlite(sqlite_ctx):
    """`make run`'s database: the stream position of a queued cancel comes from the counter row."""
    from jobico_core.services import controls, files, packages
    ctx = sqlite_ctx
    for name, data in (("sleeper.wasm", wasm("sleeper")), ("echo.wasm", wasm("echo")), ("any.json", b"{}"),
                       ("person.json", json.dumps(PERSON).encode())):
        files.upload(ctx, "t1", name, data)
    packages.deploy(ctx, "t1", PACKAGE)
    from jobico_core.services.ingest import submit
    info = packages.route(ctx, "t1", "say")
    a, b = submit(ctx, info, "say", ['{"name":"a"}', '{"name":"b"}'], submitter="k", trigger="webhook")
    first = controls.cancel_execution(ctx, "t1", a, by="k")
    second = controls.cancel_execution(ctx, "t1", b, by="k")
    assert (first.cancel, second.cancel) == ("cancelled_queued", "cancelled_queued")
    assert 0 < first.record["seq"] < second.record["seq"]
    again = controls.cancel_execution(ctx, "t1", a, by="k")
    assert (again.cancel, again.record["seq"]) == ("already_finished", first.record["seq"])
    copy = controls.resubmit_execution(ctx, "t1", a, submitter="k")
    assert (copy["resubmitted_from"], copy["status"]) == (a, "queued")
    with ctx.db.session() as s:
        assert s.scalar(select(Execution.resubmitted_from).where(Execution.id == copy["id"])) == a
    ctx.db.engine.dispose()
