"""Scenario 1: SIGKILL a whole worker (main process and pool) mid-execution.

The task sits in kombu's ``unacked`` hash (acks_late); nobody acknowledges
it, so the other worker's periodic sweep restores it once it is older than
the visibility timeout, and the execution completes there: attempts 2,
recorded once, its chained execution fired once.
"""
from __future__ import annotations

import signal
import time

from .conftest import VISIBILITY

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
