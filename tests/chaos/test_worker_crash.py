"""Scenario 1: SIGKILL a whole worker (main process and pool) mid-execution.

The task sits in kombu's ``unacked`` hash (acks_late); nobody acknowledges
it, so the other worker's periodic sweep restores it once it is older than
the visibility timeout, and the execution completes there: attempts 2,
recorded once, its chained execution fired once.
"""
from __future__ import annotations

import signal
import time

from .helpers import VISIBILITY

PAD = 2000  # ~1 s of spinning on an idle core (tests/chaos/spin.wat)


def test_sigkill_whole_worker_mid_execution(chaos):
    p = chaos
    victim = p.start_worker("victim", concurrency=1)
    r = p.post(p.key, "t", "spin", [{"pad": "x" * PAD}])
    assert r.status_code == 200, r.text
    eid = r.json()["executions"][0]
    e = p.wait(p.key, eid, timeout=30, until=lambda e: e["status"] == "running")
    assert e["worker"].startswith("victim@")
    victim.stop(signal.SIGKILL)  # killpg: main process and pool child, no chance to reject or ack
    killed_at = time.monotonic()

    survivor = p.start_worker("survivor", concurrency=1)
    e = p.wait(p.key, eid, timeout=VISIBILITY + 40)
    recovered = time.monotonic() - killed_at
    assert e["attempts"] == 2, e
    assert e["worker"].startswith("survivor@"), e
    assert e["status"] in ("succeeded", "timed_out"), e  # timed_out only if the box is very busy
    p.wait_all([eid], timeout=30)
    # a second, independent batch on the survivor: nothing left over, nothing doubled
    more = p.post(p.key, "t", "spin", [{"pad": "x"} for _ in range(5)]).json()["executions"]
    p.wait_all([eid, *more], timeout=60)
    res = p.tally("1 worker SIGKILL mid-execution", 6, [eid, *more],
                  recovered_s=round(recovered, 1), visibility_s=VISIBILITY)
    assert res["recorded"] == res["accepted"] == 6
    assert res["duplicates"] == 0 and res["lost"] == 0, res
    assert survivor.proc.poll() is None


def test_sigkill_whole_worker_mid_batch(chaos):
    """A request's events share one batch task: killed after recording the first, the batch is
    restored; what it recorded is never run again, the rest each run alone (attempts 2)."""
    p = chaos
    # the batch budget (JOBICO_TASK_BATCH_MS, at most visibility/2 - longest execution) must let a
    # batch run several executions: a 1.5 s platform maximum leaves it 1 s
    env = {"JOBICO_MAX_TIMEOUT_MS": "1500"}
    victim = p.start_worker("victim", concurrency=1, extra_env=env)
    ids = p.post(p.key, "t", "spin", [{"pad": "x" * (PAD // 4), "i": i} for i in range(6)]).json()["executions"]
    first = p.wait(p.key, ids[0], timeout=30)  # recorded by the batch (flushed every 0.1 s)
    victim.stop(signal.SIGKILL)
    rows = p.db_rows(ids)
    recorded_before = {i for i, r in rows.items() if r.seq is not None}
    assert ids[0] in recorded_before and first["attempts"] == 1
    assert any(r.status == "running" for r in rows.values()), {i: r.status for i, r in rows.items()}

    p.start_worker("survivor", concurrency=1, extra_env=env)
    p.wait_all(ids, timeout=VISIBILITY + 60)
    rows = p.db_rows(ids)
    res = p.tally("1 worker SIGKILL mid-batch (6 events, 1 task)", 6, ids,
                  recorded_before_kill=len(recorded_before),
                  attempts=sorted(r.attempts for r in rows.values()))
    assert res["recorded"] == res["accepted"] == 6
    assert res["duplicates"] == 0 and res["lost"] == 0, res
    assert all(rows[i].attempts == 1 for i in recorded_before)  # recorded: never run again
    assert max(r.attempts for r in rows.values()) == 2
