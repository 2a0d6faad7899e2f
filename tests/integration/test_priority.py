"""Priorities' slots (jobico_core.priority) on a real Redis: the best waiting execution first,
ageing, a redelivered slot runs what it took, a skipped pick gives the next."""
from __future__ import annotations

from types import SimpleNamespace

import redis as redis_lib

from jobico_core import priority
from jobico_core.ids import uuid7


def test_slots_take_the_best_waiting_and_remember_it(redis_url):
    r = redis_lib.Redis.from_url(redis_url)
    r.flushdb()
    low, mid, high = uuid7(), uuid7(), uuid7()
    priority.add(r, [SimpleNamespace(id=i, queue="q", priority=p) for i, p in ((low, 1), (mid, 5), (high, 9))]
                 + [SimpleNamespace(id=uuid7(), queue="q", priority=None)], age_s=10)
    assert priority.waiting(r, "q") == [high, mid, low]          # the unprioritised row is not there
    assert priority.pick(r, "q", slot=low) == high                # a slot runs the best, not its own
    assert priority.pick(r, "q", slot=low) == high                # redelivered: the same one
    assert priority.pick(r, "q", slot=low, skip=high) == mid      # that one was final: the next
    assert priority.pick(r, "q", slot=mid) == low
    assert priority.pick(r, "q", slot=high) is None               # empty: the slot runs its own
    assert priority.waiting(r, "other") == []


def test_ageing_lets_a_long_waiting_low_priority_pass(redis_url):
    r = redis_lib.Redis.from_url(redis_url)
    r.flushdb()
    now = uuid7()
    hexa = f"{int(now.replace('-', '')[:12], 16) - 40_000:012x}" + now.replace("-", "")[12:]
    old = f"{hexa[:8]}-{hexa[8:12]}-{hexa[12:16]}-{hexa[16:20]}-{hexa[20:]}"  # created 40 s ago
    newer = uuid7()
    priority.add(r, [SimpleNamespace(id=old, queue="q", priority=1), SimpleNamespace(id=newer, queue="q", priority=4)],
                 age_s=10)
    assert priority.pick(r, "q", slot="s1") == old                # 40 s of waiting beat 3 steps
