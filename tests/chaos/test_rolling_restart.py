"""Scenario: a rolling update -- SIGTERM to a worker's main process (what Kubernetes and Docker
send) again and again while events keep coming.

Each stop is a warm shutdown of a few seconds that leaves no message held in Redis (what it had
prefetched goes back to its queue), and every event accepted meanwhile runs once, on that worker
or the next. Celery 5.7 / billiard 4.3 stalled such a shutdown 30 s whenever a task had been
written to a pool process but not yet acknowledged by it (jobico_worker/pool_shutdown.py): longer
than Kubernetes' default grace, so the SIGKILL that followed stranded the prefetched messages for
the visibility timeout. It showed in about one stop in five under this flow.
"""
from __future__ import annotations

import os
import signal
import time

import redis

from jobico_core.services.rescue import UNACKED_KEY
from tests.waiting import wait_until

from .helpers import Sender

ROUNDS = 8
#: a warm shutdown of quick tasks takes 1-3 s; the stall this guards against took 30 s
STOP_WITHIN_S = 15.0


def test_rolling_restarts_under_a_steady_flow(chaos):
    p = chaos
    client = redis.Redis.from_url(p.env["JOBICO_REDIS_URL"])
    worker = p.start_worker("w0")
    stops: list[float] = []
    with Sender(p, event="fast", interval=0.01) as sender:
        for n in range(1, ROUNDS + 1):
            seen = len(sender.accepted)
            wait_until(lambda seen=seen: len(sender.accepted) > seen + 30, 30,
                       what="events accepted while a worker runs")
            started = time.monotonic()
            os.kill(worker.proc.pid, signal.SIGTERM)  # the main process alone: a warm shutdown
            try:
                worker.proc.wait(STOP_WITHIN_S)
            except Exception:
                tail = worker.log_tail(30)
                worker.stop(signal.SIGKILL)
                raise AssertionError(f"stop {n}: the warm shutdown took over {STOP_WITHIN_S:g}s\n{tail}") from None
            stops.append(time.monotonic() - started)
            assert worker.proc.returncode == 0, worker.log_tail(30)
            # the visibility timeout (5 s here) has not passed: nothing was restored by a sweep
            held = client.hlen(UNACKED_KEY)
            assert held == 0, f"stop {n}: {held} message(s) left unacknowledged\n{worker.log_tail(30)}"
            worker = p.start_worker(f"w{n}")
    client.close()
    p.wait_all(sender.accepted, timeout=120, chained=False)
    res = p.tally(f"{ROUNDS} rolling restarts (SIGTERM) under ~50 ev/s", sender.sent, sender.accepted,
                  chained=False, slowest_stop_s=round(max(stops), 1))
    assert set(sender.codes) == {200}, sender.codes
    assert res["recorded"] == res["accepted"] and res["lost"] == 0, res
    assert res["runs"] == res["recorded"], res  # each ran once
