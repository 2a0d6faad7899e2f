"""Scenario 5: one tenant's flood or slow module holds no other tenant's work hostage.

Every tenant queue is its own Redis list; a worker BRPOPs all of them and
kombu rotates the one it just served to the end of the key list, so with
``worker_prefetch_multiplier = 1`` a worker takes tenant B's task within a
few tasks of A's, however many A has queued.
"""
from __future__ import annotations

import base64
import json
import os
import time
import uuid

from sqlalchemy import insert

from jobico_core.db import Execution
from jobico_core.ids import uuid7
from jobico_core.services.executions import enqueue, new_execution
from jobico_core.services.packages import route

from .helpers import MAX_TIMEOUT_MS

SLOW_BOUND = 3 * MAX_TIMEOUT_MS / 1000 + 7   # s: B waits for at most one A execution per pool slot
FLOOD = int(os.environ.get("JOBICO_CHAOS_FLOOD", "50000"))
FLOOD_BOUND = 10.0                           # s: B's event behind 50,000 queued A events


def _flood(p, info, n: int, batch: int = 2000) -> None:
    """Queue ``n`` events of tenant t's ``fast`` event the way ingest does (rows ``queued`` first,
    then the tasks), in bulk: the first through ``enqueue`` itself, the others as bulk INSERTs and
    pipelined LPUSHes of that first message with its ids swapped (the real ingest publishes one
    message per round trip, ~4 ms each here: 50,000 would take minutes)."""
    first = new_execution(info, "fast", '{"n":0}', submitter="chaos", trigger="webhook")
    enqueue(p.ctx, [first])
    queue = info.queue_for("fast")
    template = json.loads(p.ctx.redis.lindex(queue, 0))
    _, kwargs, embed = json.loads(base64.b64decode(template["body"]))
    cols = {c.name for c in Execution.__table__.columns}
    base = {k: v for k, v in vars(first).items() if k in cols}
    for start in range(1, n, batch):
        rows = [{**base, "id": uuid7(), "payload": f'{{"n":{i}}}'} for i in range(start, min(n, start + batch))]
        with p.ctx.db.session() as s:
            s.execute(insert(Execution), rows)
        pipe = p.ctx.redis.pipeline(transaction=False)
        for r in rows:
            rid, payload = r["id"], r["payload"]
            pipe.lpush(queue, json.dumps({
                **template,
                "body": base64.b64encode(json.dumps([[rid, payload], kwargs, embed]).encode()).decode(),
                "headers": {**template["headers"], "id": rid, "root_id": rid, "argsrepr": repr((rid, payload))},
                "properties": {**template["properties"], "correlation_id": rid, "delivery_tag": str(uuid.uuid4())},
            }))
        pipe.execute()


def _b_once(p, key_b) -> tuple[float, dict]:
    t0 = time.monotonic()
    r = p.post(key_b, "b", "spin", [{"pad": "x"}])
    assert r.status_code == 200, r.text
    e = p.wait(key_b, r.json()["executions"][0], timeout=120)
    took = time.monotonic() - t0
    p.wait_all([e["id"]], timeout=60)  # and its chained execution, for the tally
    return took, e


def test_slow_module_does_not_hold_other_tenants(chaos, spin_wasm):
    p = chaos
    key_b = p.setup_tenant(spin_wasm, "b")
    p.start_worker("w1", concurrency=2)
    ids = []
    for _ in range(4):  # 40 executions that each run until the 2.5 s deadline: ~50 s of work for 2 slots
        r = p.post(p.key, "t", "sleep", [{} for _ in range(10)])
        assert r.status_code == 200, r.text
        ids += r.json()["executions"]
    p.wait(p.key, ids[0], timeout=60, until=lambda e: e["status"] != "queued")  # A occupies the worker
    took, e = _b_once(p, key_b)
    rows = p.db_rows(ids)
    a_pending = sum(1 for r in rows.values() if r.status in ("queued", "running"))
    p.tally("5 slow tenant A, B's event", 1, [e["id"]], b_latency_s=round(took, 1), a_still_pending=a_pending,
            bound_s=SLOW_BOUND)
    assert e["status"] == "succeeded"
    assert a_pending > 20, a_pending  # A was still flooding when B's event ran
    assert took < SLOW_BOUND, took


def test_fifty_thousand_queued_for_a_tenant(chaos, spin_wasm):
    p = chaos
    key_b = p.setup_tenant(spin_wasm, "b")
    info = route(p.ctx, "t", "fast")
    t0 = time.monotonic()
    _flood(p, info, FLOOD)
    enqueue_s = time.monotonic() - t0
    depth = p.ctx.redis.llen(info.queue_for("fast"))
    assert depth == FLOOD, depth
    p.start_worker("w1", concurrency=2)
    time.sleep(2)  # A's queue is being drained
    took, e = _b_once(p, key_b)
    behind = p.ctx.redis.llen(info.queue_for("fast"))
    p.tally("5 B behind 50,000 queued for A", 1, [e["id"]], b_latency_s=round(took, 2),
            a_queued_when_b_done=behind, enqueue_50k_s=round(enqueue_s, 1), bound_s=FLOOD_BOUND)
    assert e["status"] == "succeeded"
    assert behind > FLOOD - 5000, behind  # B did not wait for A's backlog
    assert took < FLOOD_BOUND, took
