"""The webhook's group commit (issue 19): concurrent single-event requests of one API process
for one tenant/version/event/queue share one INSERT and one ``jobico.execute_batch`` task
(JOBICO_INGEST_COALESCE, JOBICO_INGEST_LINGER_MS); each request still answers for its own
events only, after they are committed and published; a failure reaches every request of the
group and leaves nothing. Real PostgreSQL and Redis; the API in-process (Flask test clients
in threads, as gunicorn's threads of one process)."""
from __future__ import annotations

import base64
import json
import threading
import time
import uuid

import pytest
import redis

from jobico_core import broker
from jobico_core.broker import BatchMessage, TaskMessage

pytestmark = pytest.mark.services

QUEUE = "jobico.tenant_1.people.main"


def _concurrently(api, requests: list[tuple[dict, dict]], tenants: list[str] | None = None) -> list:
    """POST every (body, headers) to tenant_1/person_added (or to ``tenants[i]``'s) at once (one
    thread each, released together); returns the responses in order."""
    out: list = [None] * len(requests)
    start = threading.Barrier(len(requests))

    def send(i: int, body: dict, headers: dict) -> None:
        client = api.app.test_client()
        tenant = tenants[i] if tenants else "tenant_1"
        start.wait()
        out[i] = client.post(f"/events/{tenant}/person_added", data=json.dumps(body),
                             headers={"Content-Type": "application/json", **headers})

    threads = [threading.Thread(target=send, args=(i, b, h)) for i, (b, h) in enumerate(requests)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(r is not None for r in out), "a request did not answer"
    return out


def _tasks(api, queue: str = QUEUE) -> list[tuple[str, list[str]]]:
    """(task name, execution ids) of every task on the tenant's queue."""
    out = []
    for raw in api.redis.lrange(queue, 0, -1):
        m = json.loads(raw)
        args = json.loads(base64.b64decode(m["body"]))[0]
        out.append((m["headers"]["task"], args[0] if m["headers"]["task"] == "jobico.execute_batch" else [args[0]]))
    return out


def test_concurrent_single_event_requests_share_one_insert_and_one_batch_task(make_api):
    from prometheus_client import REGISTRY
    groups_before = REGISTRY.get_sample_value("jobico_ingest_group_events_count") or 0
    events_before = REGISTRY.get_sample_value("jobico_ingest_group_events_sum") or 0
    api = make_api(ingest_linger_ms=1000)
    t = api.deployed_tenant("tenant_1")
    api.ctx.fresh_webhook_cache()  # the deploy's routing change seen: no request is checked twice
    n = 8
    names = [f"p{i}" for i in range(n)]
    rs = _concurrently(api, [({"data": [{"name": name}]}, t.headers) for name in names])
    assert [r.status_code for r in rs] == [200] * n, [r.get_json() for r in rs]
    ids = [r.get_json()["executions"] for r in rs]
    assert all(len(x) == 1 for x in ids) and len({x[0] for x in ids}) == n  # each its own execution
    batches = api.ctx.ingest_batches
    assert batches.callers == n and batches.flushes < n  # coalesced: fewer flushes than requests
    tasks = _tasks(api)
    assert len(tasks) == batches.flushes < n  # one task per group, never one per event
    assert any(name == "jobico.execute_batch" and len(group) > 1 for name, group in tasks)
    assert sorted(i for _, group in tasks for i in group) == sorted(x[0] for x in ids)  # each once
    # the metric: jobico_ingest_group_events (a histogram of group sizes)
    assert REGISTRY.get_sample_value("jobico_ingest_group_events_count") - groups_before == batches.flushes
    assert REGISTRY.get_sample_value("jobico_ingest_group_events_sum") - events_before == n
    rows = {e.id: e for e in api.executions_in_db()}
    assert len(rows) == n
    for name, (eid,) in zip(names, ids):  # every row its own payload, status and counters
        e = rows[eid]
        assert (json.loads(e.payload), e.status, e.attempts, e.dead_lettered, e.chained_from) == (
            {"name": name}, "queued", 0, False, None)


def test_an_idle_request_is_not_delayed_by_the_linger(make_api):
    api = make_api(ingest_linger_ms=5000)
    t = api.deployed_tenant("tenant_1")
    assert api.post_events("tenant_1", "person_added", {"data": [{"name": "warm"}]}, t.headers).status_code == 200
    started = time.monotonic()
    r = api.post_events("tenant_1", "person_added", {"data": [{"name": "Ada"}]}, t.headers)
    elapsed = time.monotonic() - started
    assert r.status_code == 200
    assert elapsed < 2.5, f"an idle request waited {elapsed:.2f}s: the 5 s linger held it"
    assert [name for name, _ in _tasks(api)] == ["jobico.execute", "jobico.execute"]  # alone: a single task


def test_without_coalescing_every_request_is_its_own_task(make_api):
    api = make_api(ingest_coalesce=False, ingest_linger_ms=1000)
    t = api.deployed_tenant("tenant_1")
    rs = _concurrently(api, [({"data": [{"name": f"p{i}"}]}, t.headers) for i in range(4)])
    assert [r.status_code for r in rs] == [200] * 4
    assert [name for name, _ in _tasks(api)] == ["jobico.execute"] * 4
    assert api.ctx.ingest_batches.flushes == 0


def test_a_failed_publish_answers_503_to_every_request_of_the_group_and_leaves_no_row(make_api, api_settings):
    """The broker refuses the group's LPUSH (a Redis user without it: admission, which only
    reads and writes its own keys, still passes): every request of the group gets 503 and no
    row of any of them stays."""
    admin = redis.Redis.from_url(api_settings.redis_url)
    user, password = f"nolpush{uuid.uuid4().hex[:8]}", "pw-" + uuid.uuid4().hex
    admin.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all", "-lpush")
    try:
        host = api_settings.redis_url.split("://", 1)[1]
        api = make_api(ingest_linger_ms=1000, redis_url=f"redis://{user}:{password}@{host}")
        t = api.deployed_tenant("tenant_1")
        n = 6
        rs = _concurrently(api, [({"data": [{"name": f"p{i}"}]}, t.headers) for i in range(n)])
        assert [r.status_code for r in rs] == [503] * n, [r.get_json() for r in rs]
        assert all(r.headers.get("Retry-After") and "broker" in r.get_json()["message"] for r in rs)
        assert api.ctx.ingest_batches.flushes < n  # they did fail together
        assert api.executions_in_db() == [] and api.lists() == {}
    finally:
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()


def test_idempotency_keys_inside_one_group(make_api):
    """Concurrent requests of one Idempotency-Key: one is enqueued, every one answers its ids;
    the same key with another body is refused (422); other keys in the same group are their
    own requests."""
    api = make_api(ingest_linger_ms=1000)
    t = api.deployed_tenant("tenant_1")
    same = {**t.headers, "Idempotency-Key": "order-1"}
    reqs = [({"data": [{"name": "Ada"}]}, same) for _ in range(4)]
    reqs += [({"data": [{"name": f"o{i}"}]}, {**t.headers, "Idempotency-Key": f"other-{i}"}) for i in range(3)]
    reqs += [({"data": [{"name": "Eve"}]}, same)]  # the key reused with another body
    rs = _concurrently(api, reqs)
    codes = [r.status_code for r in rs]
    first = [rs[i].get_json()["executions"] for i in range(4) if codes[i] == 200]
    # the reused key: 422 if it came second, else it was the first (and the "Ada"s are refused)
    if codes[-1] == 200:
        assert codes[:4] == [422] * 4
        kept = {rs[-1].get_json()["executions"][0]: {"name": "Eve"}}
    else:
        assert codes[:4] == [200] * 4 and codes[-1] == 422, [r.get_json() for r in rs]
        assert "idempotency_key_reused" in rs[-1].get_json()["message"]
        assert len({tuple(x) for x in first}) == 1  # every repeat answers the first one's ids
        kept = {first[0][0]: {"name": "Ada"}}
    assert codes[4:7] == [200] * 3
    kept.update({rs[i].get_json()["executions"][0]: {"name": f"o{i - 4}"} for i in range(4, 7)})
    rows = api.executions_in_db()
    assert {e.id: json.loads(e.payload) for e in rows} == kept  # one row per key, nothing twice
    assert sorted(i for _, group in _tasks(api) for i in group) == sorted(kept)


def _script_calls(api) -> tuple[int, int]:
    """(EVALSHA, EVAL) commands Redis ran so far (the admission script's calls)."""
    stats = api.redis.info("commandstats")
    return tuple(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("evalsha", "eval"))  # type: ignore


def test_a_group_the_bucket_cannot_pay_for_admits_its_first_requests_in_one_admission(make_api):
    """One admission script call per group, not per request: a group of 6 one-event requests
    meeting a bucket of 3 tokens admits 3 (rows and tasks for exactly those) and answers 429
    with Retry-After to the others, which leave nothing (no row, no task, no token)."""
    api = make_api(ingest_linger_ms=1000, rate_limit=1, rate_burst=3, max_elements=1)
    t = api.deployed_tenant("tenant_1")
    api.ctx.fresh_webhook_cache()  # the deploy's routing change seen: no request is checked twice
    n = 6
    evalsha, eval_ = _script_calls(api)
    started = time.monotonic()
    rs = _concurrently(api, [({"data": [{"name": f"p{i}"}]}, t.headers) for i in range(n)])
    elapsed = time.monotonic() - started
    batches = api.ctx.ingest_batches
    assert batches.callers == n and batches.flushes < n, (batches.callers, batches.flushes)
    calls = _script_calls(api)
    # one call per group (the first may be an EVAL after a NOSCRIPT EVALSHA): not one per request
    assert calls[0] - evalsha == batches.flushes + calls[1] - eval_ and calls[1] - eval_ <= 1, calls
    ok = [r for r in rs if r.status_code == 200]
    refused = [r for r in rs if r.status_code != 200]
    assert 3 <= len(ok) <= 3 + int(elapsed), [r.status_code for r in rs]  # the bucket refills 1 token/s
    for r in refused:
        body = r.get_json()
        assert (r.status_code, body["code"]) == (429, 429) and "over its rate limit of 1 events/s" in body["message"]
        assert int(r.headers["Retry-After"]) >= 1
    ids = sorted(r.get_json()["executions"][0] for r in ok)
    assert sorted(e.id for e in api.executions_in_db()) == ids
    assert sorted(i for _, group in _tasks(api) for i in group) == ids
    # every admitted event paid its token once, the refused ones none: what is left is the refill
    assert float(api.redis.hget("jobico:rate:tenant_1", "tokens")) <= 3 + elapsed - len(ok)


def _hmac(api, tenant: str = "tenant_1") -> str:
    """``tenant`` deployed, its webhook switched to HMAC; returns its signing secret."""
    api.deployed_tenant(tenant)
    r = api.client.patch(f"/api/v1/tenants/{tenant}", json={"webhook_auth": "hmac"}, headers=api.admin)
    assert r.status_code == 200, r.get_json()
    return r.get_json()["signing_secret"]


def _signed(secret: str, body: dict) -> dict[str, str]:
    from jobico_core.services.tenants import sign
    ts = str(int(time.time()))
    return {"X-Jobico-Timestamp": ts, "X-Jobico-Signature": sign(secret, ts, json.dumps(body).encode())}


def test_a_signed_request_replayed_inside_one_group_is_accepted_once(make_api):
    """The same signed request three times in one group (and two others): one 200 and two 409
    (signature_replayed); one row of it; its signature spent, as the others'."""
    api = make_api(ingest_linger_ms=1000)
    secret = _hmac(api)
    api.ctx.fresh_webhook_cache()
    same = {"data": [{"name": "Ada"}]}
    others = [{"data": [{"name": f"o{i}"}]} for i in range(2)]
    reqs = [(same, _signed(secret, same))] * 3 + [(b, _signed(secret, b)) for b in others]
    rs = _concurrently(api, reqs)
    assert api.ctx.ingest_batches.flushes < len(reqs)  # grouped
    codes = [r.status_code for r in rs]
    assert sorted(codes[:3]) == [200, 409, 409] and codes[3:] == [200, 200], [r.get_json() for r in rs]
    for r in rs[:3]:
        if r.status_code == 409:
            assert r.get_json()["errors"] == {"X-Jobico-Signature": ["signature_replayed"]}
    rows = {e.id: json.loads(e.payload) for e in api.executions_in_db()}
    assert sorted(rows.values(), key=lambda p: p["name"]) == [same["data"][0]] + [b["data"][0] for b in others]
    assert sorted(i for _, group in _tasks(api) for i in group) == sorted(rows)
    assert len(list(api.redis.scan_iter("jobico:sig:*"))) == 3


def test_a_group_that_meets_a_moved_routing_counter_is_checked_again_and_spends_once(make_api):
    """Another process changed routing: every request of the group finds the counter moved in
    the group's admission, spends nothing (token, signature), is checked again and admitted once."""
    from jobico_core.services.context import ROUTING_GENERATION
    api = make_api(ingest_linger_ms=1000, webhook_cache_seconds=60, rate_limit=1, rate_burst=100)
    secret = _hmac(api)
    api.ctx.fresh_webhook_cache()
    bodies = [{"data": [{"name": f"p{i}"}]} for i in range(5)]
    reqs = [(b, _signed(secret, b)) for b in bodies]
    warm = api.post_events("tenant_1", "person_added", json.dumps(bodies[0]).encode(), reqs[0][1])
    assert warm.status_code == 200
    started = time.monotonic()
    api.redis.delete("jobico:rate:tenant_1", *api.redis.scan_iter("jobico:sig:*"))
    api.ctx.ingest_batches.callers = 0
    api.redis.incr(ROUTING_GENERATION)  # as another process's change would
    rs = _concurrently(api, reqs)
    assert [r.status_code for r in rs] == [200] * len(reqs), [r.get_json() for r in rs]
    assert api.ctx.routing_generation_seen == api.redis.get(ROUTING_GENERATION)  # followed
    # a request's second pass (moved, then checked again) joins a group again; one that began
    # after the first group followed the counter is admitted at its first pass
    assert len(reqs) < api.ctx.ingest_batches.callers <= 2 * len(reqs)
    elapsed = time.monotonic() - started
    ids = [r.get_json()["executions"][0] for r in rs] + warm.get_json()["executions"]
    assert sorted(e.id for e in api.executions_in_db()) == sorted(ids)  # each request once
    tokens = float(api.redis.hget("jobico:rate:tenant_1", "tokens"))
    assert 95 <= tokens <= 95 + elapsed, (tokens, elapsed)  # one token per request, not one per pass
    assert len(list(api.redis.scan_iter("jobico:sig:*"))) == len(reqs)
    assert [api.post_events("tenant_1", "person_added", json.dumps(b).encode(), h).status_code
            for b, h in reqs] == [409] * len(reqs)  # each signature spent


def test_groups_never_mix_tenants(make_api):
    """Concurrent requests of two tenants: each tenant's own group(s), its own bucket (2 tokens
    each: 2 admitted per tenant) and only its own executions in its tasks."""
    api = make_api(ingest_linger_ms=1000, rate_limit=1, rate_burst=2, max_elements=1)
    handles = {name: api.deployed_tenant(name) for name in ("tenant_1", "tenant_2")}
    api.ctx.fresh_webhook_cache()
    tenants = ["tenant_1", "tenant_2"] * 4
    started = time.monotonic()
    rs = _concurrently(api, [({"data": [{"name": f"{name}-{i}"}]}, handles[name].headers)
                             for i, name in enumerate(tenants)], tenants)
    elapsed = time.monotonic() - started
    assert api.ctx.ingest_batches.flushes < len(tenants)
    rows = {e.id: e for e in api.executions_in_db()}
    for name in handles:
        ok = sorted(r.get_json()["executions"][0] for r, t in zip(rs, tenants) if t == name and r.status_code == 200)
        assert 2 <= len(ok) <= 2 + int(elapsed), [r.status_code for r in rs]
        assert all(r.status_code in (200, 429) for r in rs)
        assert sorted(i for i, e in rows.items() if e.tenant_id == name) == ok
        assert sorted(i for _, group in _tasks(api, f"jobico.{name}.people.main") for i in group) == ok


def test_envelope_is_the_message_celery_and_kombu_build(api):
    """``broker.task_envelope`` (the no-countdown path) LPUSHes, field for field, the message
    ``app.amqp.as_task_v2`` + kombu's Redis transport put on the queue (bar its random tag)."""
    app, r = api.ctx.celery, api.redis
    messages = [TaskMessage("id1", '{"a":1}', "t", "p", "e", "q1",
                            traceparent="00-aaaabbbbccccddddaaaabbbbccccdddd-1111222233334444-01"),
                BatchMessage(("i1", "i2", "i3"), "t", "p", "e", "q2"),
                TaskMessage("id3", "{}", "t", "p", "e", "q3", locks=("l1", "l2"), flow="f", waiting="w",
                            token="k", priority=3)]
    with app.producer_or_acquire() as producer, producer.batch():
        for m in messages:  # what broker.publish did before task_envelope: Celery's own message
            kwargs = {"tenant": m.tenant, "package": m.package, "event": m.event}
            if isinstance(m, BatchMessage):
                req = app.amqp.as_task_v2(f"{m.execution_ids[0]}+{len(m.execution_ids) - 1}",
                                          broker.EXECUTE_BATCH_TASK, args=(list(m.execution_ids),), kwargs=kwargs,
                                          retries=2, shadow=f"jobico.execute_batch[t/p/e x{len(m.execution_ids)}]")
            else:
                kwargs.update({k: v for k, v in (("locks", list(m.locks)), ("waiting", m.waiting),
                                                 ("token", m.token), ("flow", m.flow), ("priority", m.priority))
                               if v})
                req = app.amqp.as_task_v2(m.execution_id, broker.EXECUTE_TASK, args=(m.execution_id, m.payload),
                                          kwargs=kwargs, retries=2, shadow="jobico.execute[t/p/e]")
                if m.traceparent:
                    req.headers["traceparent"] = m.traceparent
            producer.publish(req.body, exchange="", routing_key=m.queue, headers=req.headers,
                             serializer="json", retry=False, **req.properties)
    broker.publish(app, messages, retries=2)

    def parsed(raw: bytes) -> dict:
        m = json.loads(raw)
        m["properties"].pop("delivery_tag")
        m["body"] = json.loads(base64.b64decode(m["body"]))
        return m

    for q in ("q1", "q2", "q3"):
        ours, theirs = (parsed(x) for x in r.lrange(q, 0, -1))  # LPUSH: the newest first
        assert ours == theirs, q
