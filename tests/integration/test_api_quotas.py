"""Per-tenant rate limit and per-queue cap on the webhook: 429 with Retry-After,
nothing enqueued, and other tenants unaffected."""
from __future__ import annotations


def test_rate_limit_is_per_tenant_and_says_when_to_retry(make_api):
    api = make_api(rate_limit=5, rate_burst=10, max_elements=10)
    a = api.deployed_tenant("tenant_a")
    b = api.deployed_tenant("tenant_b")
    ok = api.post_events("tenant_a", "person_added", {"data": [{"name": "x", "age": 1}] * 10}, headers=a.headers)
    assert ok.status_code == 200, ok.get_json()
    before = api.lists()
    r = api.post_events("tenant_a", "person_added", {"data": [{"name": "y", "age": 2}] * 5}, headers=a.headers)
    assert r.status_code == 429, r.get_json()
    body = r.get_json()
    assert body["code"] == 429 and "rate limit" in body["message"]
    assert int(r.headers["Retry-After"]) >= 1
    assert api.lists() == before  # nothing enqueued
    assert len(api.executions_in_db()) == 10
    # another tenant has its own bucket
    assert api.post_events("tenant_b", "person_added", {"data": [{"name": "z", "age": 3}]},
                           headers=b.headers).status_code == 200


def test_queue_cap(make_api):
    api = make_api(max_queued=3, task_batch=2)  # the cap counts tasks: a task is 1 event or a batch of <= 2
    a = api.deployed_tenant("tenant_a")
    assert api.post_events("tenant_a", "person_added", {"data": [{"name": "x", "age": 1}] * 3},
                           headers=a.headers).status_code == 200  # 2 tasks
    r = api.post_events("tenant_a", "person_added", {"data": [{"name": "x", "age": 1}] * 3}, headers=a.headers)
    assert r.status_code == 429 and "already holds 2 tasks" in r.get_json()["message"]  # 2 + 2 > 3
    assert api.post_events("tenant_a", "person_added", {"data": [{"name": "x", "age": 1}]},
                           headers=a.headers).status_code == 200  # 2 + 1
    r = api.post_events("tenant_a", "person_added", {"data": [{"name": "x", "age": 1}]}, headers=a.headers)
    assert r.status_code == 429 and "already holds 3 tasks" in r.get_json()["message"]
    assert r.headers["Retry-After"] == "30"
    assert len(api.executions_in_db()) == 4


def test_idempotent_replay_does_not_spend_rate(make_api):
    api = make_api(rate_limit=1, rate_burst=10, max_elements=10)
    a = api.deployed_tenant("tenant_a")
    body = {"data": [{"name": "x", "age": 1}] * 10}
    first = api.post_events("tenant_a", "person_added", body, headers={**a.headers, "Idempotency-Key": "k1"})
    again = api.post_events("tenant_a", "person_added", body, headers={**a.headers, "Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 200
    assert first.get_json() == again.get_json()


def test_a_groups_admission_decides_each_request_as_separate_calls_in_its_order_would(api):
    """``ratelimit.admit_all`` (one Redis call for a group commit's requests): each request
    decided in order against what the ones before it left: tokens, the queue cap, a signature
    spent by an earlier one of the group, the routing counter; a refused one spends nothing."""
    from jobico_core import ratelimit
    r, q = api.redis, "jobico.tenant_a.p.main"
    r.rpush(q, "t1", "t2")  # 2 tasks waiting; the cap is 3
    r.set("counter", b"7")
    asks = [ratelimit.Ask(2, 1),                           # 4 -> 2 tokens
            ratelimit.Ask(3, 1),                           # over the rate: 2 < 3, nothing spent
            ratelimit.Ask(1, 2),                           # the queue cap: 2 + 2 > 3, nothing spent
            ratelimit.Ask(1, 1, once=("sig:x", 60)),       # 2 -> 1, its signature spent
            ratelimit.Ask(1, 1, once=("sig:x", 60)),       # the same signature: replayed
            ratelimit.Ask(1, 1, expect=("counter", b"6")),  # the counter moved: nothing looked at
            ratelimit.Ask(1, 1, once=("sig:y", 60), expect=("counter", b"7")),  # 1 -> 0
            ratelimit.Ask(1, 1, once=("sig:z", 60))]       # over the rate: its signature not kept
    got = ratelimit.admit_all(r, "tenant_a", q, asks, rate=1, burst=4, max_queued=3)
    assert [(a.admitted, a.queue_full, a.replayed, a.moved) for a in got] == [
        (True, False, False, False), (False, False, False, False), (False, True, False, False),
        (True, False, False, False), (False, False, True, False), (False, False, False, True),
        (True, False, False, False), (False, False, False, False)]
    assert got[2].depth == 2 and got[5].counter == b"7"
    assert 0.5 < got[1].wait <= 1.0 and 0.5 < got[7].wait <= 1.0  # 1 token short, at 1 token/s
    assert r.exists("sig:x") and r.exists("sig:y") and not r.exists("sig:z")
    assert float(r.hget("jobico:rate:tenant_a", "tokens")) < 0.5  # 4 - 2 - 1 - 1, plus the call's refill
    # the same as one call per request: the bucket spent by 4 events, whatever their grouping
    r.delete("jobico:rate:tenant_a")
    one_by_one = [ratelimit.admit(r, "tenant_a", q, a.n, 1, 4, 3, tasks=a.tasks) for a in asks[:3]]
    assert [(a.admitted, a.queue_full) for a in one_by_one] == [(True, False), (False, False), (False, True)]
