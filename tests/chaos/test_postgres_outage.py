"""Scenario 3: PostgreSQL stopped, then frozen (SIGSTOP: connections hang).

While it is away the webhook answers 503 with Retry-After within a bound
(connect timeout, and the client-side statement bound for a server that
accepted the connection but answers nothing), the workers retry their
infrastructure failures with backoff, and after it returns every accepted
event is recorded exactly once.
"""
from __future__ import annotations

import time

import pytest

from tests.waiting import wait_until

from .helpers import Sender

# seconds PostgreSQL is away: a frozen server costs a request up to 5 s (statement bound of this
# suite's URL: 3 s + 2 s) on its pooled connection, then 5 s (connect_timeout) for a new one
OUTAGE = {"stop": 6.0, "freeze": 12.0}
ANSWER_BOUND = 15.0   # seconds: the longest a webhook request may take while it is away


@pytest.mark.parametrize("how", ["stop", "freeze"])
def test_postgres_outage(chaos, chaos_pg, how):
    p = chaos
    p.start_worker("w1", concurrency=2)
    with Sender(p, pad=600, timeout=60, interval=0.2) as s:  # ~0.3 s executions: some mid-flight at the cut
        time.sleep(3)
        before = len(s.accepted)
        t0 = time.monotonic()
        chaos_pg._stop(20) if how == "stop" else chaos_pg.freeze()
        time.sleep(OUTAGE[how])
        if how == "stop":
            chaos_pg.restart()
        else:
            chaos_pg.thaw()
        t1 = time.monotonic()
        restored = len(s.accepted)
        wait_until(lambda: len(s.accepted) >= restored + 5, 40, interval=0.2,
                   what=lambda: f"5 more accepted after the outage ({before}, {restored}, {s.codes})")
    p.wait_all(s.accepted, timeout=120)
    outage = s.between(t0, t1)
    refused = [lat for code, lat in outage if code == 503]
    res = p.tally(f"3 PostgreSQL {how} {OUTAGE[how]:g}s", s.sent, s.accepted, codes=dict(sorted(s.codes.items())),
                  slowest_answer_during_outage_s=round(max((lat for _, lat in outage), default=0), 1))
    assert before > 0 and len(s.accepted) >= restored + 5, (before, restored, s.codes)
    assert refused, s.codes  # 503 (with Retry-After, checked by the sender) while it was away
    assert max(lat for _, lat in outage) < ANSWER_BOUND, outage
    assert res["recorded"] == res["accepted"], res
    assert res["duplicates"] == 0 and res["lost"] == 0, res
