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
