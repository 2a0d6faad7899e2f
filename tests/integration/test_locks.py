"""Named locks' leases (jobico_core.locks) on a real Redis: all or nothing, in arrival order,
leases that run out, waiters that vanish."""
from __future__ import annotations

import threading
import time

import pytest
import redis as redis_lib

from jobico_core.ids import uuid7
from jobico_core.locks import Gone, Locks, Stale
from tests.waiting import holds_for, wait_until


@pytest.fixture
def locks(redis_url):
    client = redis_lib.Redis.from_url(redis_url)
    client.flushdb()
    return Locks(client, lease_s=2.0, stale_s=1.0)


def test_one_holder_at_a_time_and_release_frees(locks):
    a, b = uuid7(), uuid7()
    assert locks.acquire("t", ["deploy"], a) is None
    blocked = locks.acquire("t", ["deploy"], b)
    assert (blocked.lock, blocked.by, blocked.ahead, blocked.place) == ("deploy", a, False, 0)
    assert blocked.describe() == f"deploy (held by {a})"
    assert locks.release("t", ["deploy"], b) == []     # b holds nothing: nothing freed, nobody woken
    assert locks.holder("t", "deploy") == a
    assert [w.execution_id for w in locks.release("t", ["deploy"], a)] == [b]
    assert locks.holder("t", "deploy") is None
    assert locks.acquire("t", ["deploy"], b) is None
    assert locks.waiting("t", "deploy") == []            # b left the line when it got the lock


def test_tenants_and_names_are_separate(locks):
    a, b, c = uuid7(), uuid7(), uuid7()
    assert locks.acquire("t1", ["x"], a) is None
    assert locks.acquire("t2", ["x"], b) is None         # another tenant's lock of the same name
    assert locks.acquire("t1", ["y"], c) is None         # another name


def test_all_or_nothing(locks):
    a, b, c = uuid7(), uuid7(), uuid7()
    assert locks.acquire("t", ["b"], a) is None
    blocked = locks.acquire("t", ["a", "b"], b)
    assert blocked.lock == "b" and blocked.by == a
    assert locks.holder("t", "a") is None                # b took nothing while it waits for "b"
    # "a" is free, but b waits in its line: a later c does not overtake b there
    blocked_c = locks.acquire("t", ["a"], c)
    assert (blocked_c.lock, blocked_c.by, blocked_c.ahead) == ("a", b, True)
    assert blocked_c.describe() == f"a (behind {b})"
    locks.release("t", ["b"], a)
    assert locks.acquire("t", ["a", "b"], b) is None
    assert locks.holder("t", "a") == b and locks.holder("t", "b") == b


def test_waiters_get_the_lock_in_creation_order(locks):
    holder, *waiters = [uuid7() for _ in range(4)]
    assert locks.acquire("t", ["l"], holder) is None
    for w in reversed(waiters):                           # they ask in the reverse order...
        assert locks.acquire("t", ["l"], w) is not None
    assert locks.waiting("t", "l") == waiters             # ...and line up by creation (UUIDv7)
    places = [locks.acquire("t", ["l"], w).place for w in waiters]
    assert places == [0, 1, 2]
    locks.release("t", ["l"], holder)
    assert locks.acquire("t", ["l"], waiters[2]) is not None   # not its turn
    assert locks.acquire("t", ["l"], waiters[1]) is not None
    assert locks.acquire("t", ["l"], waiters[0]) is None       # the first in line gets it
    assert locks.waiting("t", "l") == waiters[1:]


def test_a_newcomer_earlier_than_the_line_goes_first(locks):
    # an execution created before everyone waiting (a retry, a rescued task) is not sent back
    early = uuid7()
    holder, late = uuid7(), uuid7()
    assert locks.acquire("t", ["l"], holder) is None
    assert locks.acquire("t", ["l"], late) is not None
    locks.release("t", ["l"], holder)
    assert locks.acquire("t", ["l"], early) is None


def test_lease_runs_out_unless_renewed(locks):
    a, b = uuid7(), uuid7()
    assert locks.acquire("t", ["l", "m"], a) is None
    time.sleep(1.2)
    assert locks.renew("t", ["l", "m"], a) == 0          # renewed: good for another 2 s
    time.sleep(1.2)
    assert locks.acquire("t", ["l"], b) is not None      # 2.4 s after taking it, still held
    locks.forget("t", ["l"], b)
    # no renewal: the lease runs out (0.8 s from here; it was asserted 2.3 s from here, as now)
    wait_until(lambda: locks.holder("t", "l") is None, 2.3, what="the lease running out without a renewal")
    c = uuid7()
    assert locks.acquire("t", ["l"], c) is None
    assert locks.renew("t", ["l", "m"], a) == 1          # "l" is c's now; "m" taken back by a


def test_stale_waiters_are_dropped_and_forgotten_ones_are_gone(locks):
    holder, ghost, live = uuid7(), uuid7(), uuid7()
    assert locks.acquire("t", ["l"], holder) is None
    assert locks.acquire("t", ["l"], ghost) is not None   # then never asks again (its worker died)
    assert locks.acquire("t", ["l"], live) is not None
    locks.release("t", ["l"], holder)
    assert locks.acquire("t", ["l"], live).by == ghost
    time.sleep(1.2)                                        # stale after 1 s without asking
    assert locks.acquire("t", ["l"], live) is None
    locks.release("t", ["l"], live)
    # a waiter cancelled while it waits: out of the line, and its next attempt says so
    assert locks.acquire("t", ["l"], holder) is None
    cancelled = uuid7()
    assert locks.acquire("t", ["l"], cancelled) is not None
    locks.forget("t", ["l"], cancelled)
    assert locks.waiting("t", "l") == []
    with pytest.raises(Gone):
        locks.acquire("t", ["l"], cancelled)


def test_no_deadlock_and_never_two_holders_under_contention(locks):
    """Threads take {a, b} and {b, a} (and single locks) over and over: nobody deadlocks and a
    lock never has two holders at once."""
    inside: dict[str, int] = {"a": 0, "b": 0}
    overlaps, done = [], []
    mutex = threading.Lock()

    def worker(names: list[str], rounds: int):
        for _ in range(rounds):
            me = uuid7()
            wait_until(lambda me=me: locks.acquire("t", names, me) is None, 20, what="the locks (starved: a deadlock?)",
                       interval=0.001)
            with mutex:
                for n in names:
                    inside[n] += 1
                    if inside[n] > 1:
                        overlaps.append(n)
            time.sleep(0.002)
            with mutex:
                for n in names:
                    inside[n] -= 1
            locks.release("t", names, me)
        done.append(names)

    threads = [threading.Thread(target=worker, args=(names, 25))
               for names in (["a", "b"], ["b", "a"], ["a"], ["b"], ["a", "b"], ["b", "a"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(done) == len(threads) and not overlaps


def test_a_release_wakes_the_first_parked_waiter_and_its_old_task_is_stale(locks):
    a, b, c = uuid7(), uuid7(), uuid7()
    assert locks.acquire("t", ["l"], a) is None
    assert locks.acquire("t", ["l"], c, park=("c1", "message of c")) is not None
    assert locks.acquire("t", ["l"], b, park=("b1", "message of b")) is not None
    # b waits again from its safety poll (token b1), parking its next task under b2
    assert locks.acquire("t", ["l"], b, token="b1", park=("b2", "message of b, again")) is not None
    with pytest.raises(Stale):                       # b1's task was superseded by b2's
        locks.acquire("t", ["l"], b, token="b1", park=("b3", "x"))
    [wake] = locks.release("t", ["l"], a)           # only the first in line (b, created before c)
    assert (wake.execution_id, wake.message) == (b, "message of b, again")
    with pytest.raises(Stale):                       # the pending safety poll ends when it fires
        locks.acquire("t", ["l"], b, token="b2", park=("b4", "x"))
    assert locks.acquire("t", ["l"], b, token=wake.token) is None
    [wake_c] = locks.release("t", ["l"], b)
    assert (wake_c.execution_id, wake_c.message) == (c, "message of c")
    assert locks.acquire("t", ["l"], c, token=wake_c.token) is None
    assert locks.release("t", ["l"], c) == []       # nobody left to wake


def test_a_release_skips_waiters_that_left_no_parked_task(locks):
    a, ghost, live = uuid7(), uuid7(), uuid7()
    assert locks.acquire("t", ["l"], a) is None
    assert locks.acquire("t", ["l"], ghost, park=("g", "ghost")) is not None
    assert locks.acquire("t", ["l"], live, park=("l", "live")) is not None
    locks.redis.delete(f"jobico:lockpark:{ghost}")  # its parked task expired (its worker died)
    assert [w.execution_id for w in locks.release("t", ["l"], a)] == [live]
    assert locks.waiting("t", "l") == [live]


def test_late_polls_are_stale_but_a_redelivery_long_after_is_not(locks):
    a, b = uuid7(), uuid7()
    assert locks.acquire("t", ["l"], a) is None
    assert locks.acquire("t", ["l"], b, park=("b1", "message of b")) is not None
    [wake] = locks.release("t", ["l"], a)
    assert locks.acquire("t", ["l"], b, token=wake.token) is None
    with pytest.raises(Stale):                       # its safety poll fires while it runs...
        locks.acquire("t", ["l"], b, token="b1")
    assert locks.release("t", ["l"], b) == []
    with pytest.raises(Stale):                       # ...or after it finished
        locks.acquire("t", ["l"], b, token="b1")
    # once the parking key is gone (2 x stale later), a redelivered task of b is a first delivery
    locks.redis.delete(f"jobico:lockpark:{b}")
    assert locks.acquire("t", ["l"], b, token=wake.token) is None


def test_the_lease_keeper_renews_and_stops_an_execution_whose_lock_was_taken(redis_url, tmp_path):
    from jobico_core.services.context import Context
    from jobico_core.settings import Settings
    from jobico_worker.locking import LeaseKeeper
    redis_lib.Redis.from_url(redis_url).flushdb()
    ctx = Context(Settings.from_env({"JOBICO_REDIS_URL": redis_url, "JOBICO_DATA_DIR": str(tmp_path),
                                     "JOBICO_LOCK_LEASE_SECONDS": "1"}))
    stopped: list[tuple[str, str]] = []
    keeper = LeaseKeeper(ctx, lambda execution_id, reason: stopped.append((execution_id, reason)))
    a, b = uuid7(), uuid7()
    assert ctx.locks.acquire("t", ["l"], a) is None
    keeper.hold("t", ["l"], a)
    # 2.5 leases: alive only because it is renewed
    holds_for(lambda: ctx.locks.holder("t", "l") == a and not stopped, 2.5, what="the renewed lease")
    ctx.redis.delete("jobico:lock:t:l")               # as if its lease had run out and b took the lock
    ctx.redis.zadd("jobico:lock:t:l", {b: (time.time() + 60) * 1000})
    wait_until(lambda: stopped, 5, what="the keeper stopping the execution whose lock was taken")
    assert stopped[0][0] == a and "another execution took one of its locks" in stopped[0][1]
    keeper.drop(a)


# -- counted leases: a concurrency key's `limit` slots (jobico_core.flow.leases) ----------------
def test_a_counted_lease_admits_limit_holders_and_lines_up_the_rest(locks):
    name, limits = "concurrency/p/e/k", {"concurrency/p/e/k": 2}
    a, b, c, d = [uuid7() for _ in range(4)]
    assert locks.acquire("t", [name], a, limits=limits) is None
    assert locks.acquire("t", [name], b, limits=limits) is None
    blocked = locks.acquire("t", [name], c, limits=limits)
    assert (blocked.lock, blocked.ahead, blocked.limit) == (name, False, 2) and blocked.by in (a, b)
    assert blocked.describe() == f"{name} (all 2 running, one is {blocked.by})"
    assert locks.acquire("t", [name], d, limits=limits).by in (a, b)
    assert sorted(locks.holders("t", name)) == sorted([a, b]) and locks.waiting("t", name) == [c, d]
    assert locks.acquire("t", ["concurrency/p/e/other"], d, limits={"concurrency/p/e/other": 2}) is None  # keys apart
    [woken] = locks.release("t", [name], a)
    assert woken.execution_id == c                        # the first in line
    later = locks.acquire("t", [name], d, limits=limits)  # one slot free, but c is ahead: d waits
    assert (later.ahead, later.by) == (True, c)
    assert locks.acquire("t", [name], c, limits=limits) is None
    assert locks.renew("t", [name], c, limits) == 0 and locks.renew("t", [name], d, limits) == 1  # d holds none, full
    state = {s["name"]: s for s in locks.state("t")[0]}
    assert sorted(state[name]["holders"]) == sorted([b, c]) and state[name]["waiting"] == [d]
    assert 0 < state[name]["lease_ms"] <= 2000


def test_a_counted_lease_frees_its_slot_when_the_holder_stops_renewing(locks):
    name, limits = "concurrency/p/e/k", {"concurrency/p/e/k": 2}
    a, b, c = uuid7(), uuid7(), uuid7()
    assert locks.acquire("t", [name], a, limits=limits) is None
    assert locks.acquire("t", [name], b, limits=limits) is None
    # a and b were "killed": no renewal
    wait_until(lambda: locks.acquire("t", [name], c, limits=limits) is None, 10, what="the leases running out",
               interval=0.1)
    assert locks.holders("t", name) == [c]
