"""Flow control per key under crashes: a SIGKILLed worker's concurrency slots free within the
lease and the key never runs more than its limit; a debounced burst, a concurrency line and
rate-limited executions survive a Redis SIGKILL + restart (every accepted event recorded exactly
once, the burst run once with its last payload, the limit and the rate kept); a SIGKILLed
worker's priority slot runs its pick once."""
from __future__ import annotations

import datetime as dt
import signal
import time

from tests.e2e.helpers import example, flow_package

from .helpers import VISIBILITY

FLOW_YAML = flow_package("flowchaos", rate_limit="key: api, per_second: 2, burst: 1", nap_timeout_ms=2500)
LEASE = {"JOBICO_LOCK_LEASE_SECONDS": "3", "JOBICO_LOCK_POLL_SECONDS": "1"}


def _deploy(p) -> None:
    p.upload(p.key, example("jobicolets/nap.wasm"))
    p.deploy(p.key, FLOW_YAML)


def _t(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _most_at_once(runs: list[dict]) -> int:
    edges = sorted([(_t(e["started_at"]), 1) for e in runs] + [(_t(e["finished_at"]), -1) for e in runs])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def _post(p, event: str, element: dict) -> str:
    r = p.post(p.key, "t", event, [element])
    assert r.status_code == 200, r.text
    return r.json()["executions"][0]


def test_a_killed_workers_concurrency_slots_free_within_the_lease(chaos):
    p = chaos
    _deploy(p)
    victim = p.start_worker("victim", concurrency=2, extra_env=LEASE)
    ids = [_post(p, "work", {"customer": "acme", "seconds": 2}) for _ in range(4)]
    for i in ids[:2]:
        p.wait(p.key, i, timeout=30, until=lambda e: e["status"] == "running")
    victim.stop(signal.SIGKILL)  # two slots held by a dead worker
    killed_at = dt.datetime.now(dt.UTC)
    p.start_worker("survivor", concurrency=3, extra_env=LEASE)
    runs = [p.wait(p.key, i, timeout=VISIBILITY + 60) for i in ids]
    assert all(e["status"] == "succeeded" for e in runs), [(e["status"], e["message"]) for e in runs]
    waiting = [e for e in runs if e["attempts"] == 1]  # the two that waited, never started by the victim
    assert waiting and min(_t(e["started_at"]) for e in waiting) - killed_at < dt.timedelta(seconds=3 + 5)
    assert _most_at_once(runs) <= 2
    res = p.tally("flow: worker SIGKILL holding concurrency slots", 4, ids, chained=False)
    assert res["recorded"] == res["accepted"] == 4 and res["duplicates"] == 0 and res["lost"] == 0, res


def test_debounce_and_a_concurrency_line_survive_a_redis_restart(chaos, chaos_redis):
    p = chaos
    _deploy(p)
    w1 = p.start_worker("w1", concurrency=3, extra_env=LEASE)
    work = [_post(p, "work", {"customer": "acme", "seconds": 2}) for _ in range(5)]
    burst = [_post(p, "save", {"doc": "readme", "n": n}) for n in range(3)]
    r = p.post(p.key, "t", "call", [{"n": n} for n in range(6)])
    assert r.status_code == 200, r.text
    calls = r.json()["executions"]
    p.wait(p.key, work[-1], timeout=30, until=lambda e: e["waiting_for"] is not None)
    p.wait(p.key, calls[-1], timeout=30, until=lambda e: e["waiting_for"] is not None)
    chaos_redis.kill()
    time.sleep(1)  # the outage: workers' Redis calls fail meanwhile
    chaos_redis.restart()
    # A worker holding countdown tasks (waiters' polls, rate-limit waits) when the broker connection
    # drops may exit ("Unrecoverable error": kombu's restore of its unacked messages on connection
    # loss, celery/kombu#970-like); its supervisor starts it again. A second worker stands in for it.
    p.start_worker("w2", concurrency=3, extra_env=LEASE)
    runs = [p.wait(p.key, i, timeout=90) for i in work]
    assert all(e["status"] == "succeeded" for e in runs), [(e["status"], e["message"]) for e in runs]
    assert _most_at_once(runs) <= 2
    saved = [p.wait(p.key, i, timeout=60) for i in burst]
    assert [e["status"] for e in saved] == ["superseded", "superseded", "succeeded"], saved
    assert '"n":2' in saved[-1]["result"] and {e["superseded_by"] for e in saved[:2]} == {burst[-1]}
    called = [p.wait(p.key, i, timeout=60) for i in calls]
    assert all(e["status"] == "succeeded" for e in called)
    starts = sorted(_t(e["started_at"]) for e in called)
    assert (starts[-1] - starts[0]).total_seconds() >= (len(starts) - 1) / 2 * 0.9   # never above 2/s
    res = p.tally("flow: Redis SIGKILL + restart with waiters", 14, work + burst + calls, chained=False,
                  first_worker_survived=w1.proc.poll() is None)
    assert res["recorded"] == res["accepted"] and res["duplicates"] == 0 and res["lost"] == 0, res


PRIORITY_YAML = """
id: prio
queues: [{id: q}]
jobs:
  - event: {id: urgent, schema: {id: s, schemaref: any.json}, supplierqueue: q, runtime: nap, priority: 9}
  - event: {id: later, schema: {id: s, schemaref: any.json}, supplierqueue: q, runtime: nap, priority: 1}
runtimes:
  - {id: nap, moduleref: nap.wasm, limits: {timeout_ms: 2500}}
"""


def test_a_killed_workers_priority_slot_runs_its_pick_once(chaos):
    p = chaos
    p.upload(p.key, example("jobicolets/nap.wasm"))
    p.deploy(p.key, PRIORITY_YAML)
    later = [_post(p, "later", {"seconds": 1, "n": n}) for n in range(3)]
    urgent = [_post(p, "urgent", {"seconds": 2, "n": n}) for n in range(2)]
    victim = p.start_worker("victim", concurrency=1)
    running = p.wait(p.key, urgent[0], timeout=30, until=lambda e: e["status"] == "running")
    assert running["priority"] == 9   # the first slot (a "later" task) took the most urgent
    victim.stop(signal.SIGKILL)
    p.start_worker("survivor", concurrency=1)
    ids = later + urgent
    runs = [p.wait(p.key, i, timeout=VISIBILITY + 60) for i in ids]
    assert all(e["status"] == "succeeded" for e in runs), [(e["status"], e["message"]) for e in runs]
    res = p.tally("flow: worker SIGKILL running a priority slot's pick", 5, ids, chained=False)
    assert res["recorded"] == res["accepted"] == 5 and res["duplicates"] == 0 and res["lost"] == 0, res
