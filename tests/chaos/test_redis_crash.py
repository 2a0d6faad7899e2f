"""Scenario 2: SIGKILL Redis (AOF, appendfsync always) under load, restart it on the same port.

Every 200 was answered after the broker held the task (fsynced to the AOF),
so nothing accepted is lost; requests during the outage get 503 with
Retry-After; the API and the workers reconnect on their own.
"""
from __future__ import annotations

import time

from tests.waiting import wait_until

from .helpers import Sender


def test_redis_sigkill_and_restart(chaos, chaos_redis):
    p = chaos
    p.start_worker("w1", concurrency=2)
    p.start_worker("w2", concurrency=1)
    with Sender(p, pad=200, timeout=20) as s:
        time.sleep(4)
        before = len(s.accepted)
        chaos_redis.kill()
        time.sleep(4)
        during = dict(s.codes)
        chaos_redis.restart()
        restarted = len(s.accepted)
        wait_until(lambda: len(s.accepted) >= restarted + 20, 45, interval=0.2,  # the API reconnected
                   what=lambda: f"20 more accepted after the restart ({before}, {restarted}, {s.codes})")
        time.sleep(1)
    p.wait_all(s.accepted, timeout=90)
    res = p.tally("2 Redis SIGKILL + restart", s.sent, s.accepted, codes=dict(sorted(s.codes.items())),
                  accepted_before_kill=before)
    assert before > 0 and len(s.accepted) >= restarted + 20, (before, restarted, s.codes)  # the API reconnected
    assert during.get(503, 0) + during.get(-1, 0) > 0, during  # the outage was visible as 503s
    assert res["recorded"] == res["accepted"], res  # the workers reconnected and ran everything
    assert res["duplicates"] == 0 and res["lost"] == 0, res
