"""POST /events/<tenant>/<event>: the contract's check order, 422 shape, enqueueing, idempotency, auth modes."""
from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import time

import pytest

from jobico_ops.embedded import free_port

from .helpers import PACKAGE

pytestmark = pytest.mark.services

QUEUE = "jobico.tenant_1.people.main"
OK = {"data": [{"name": "Ada"}]}


def _sig(secret: str, ts: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()


def test_accepts_events_one_batch_task_per_request_on_the_tenant_queue(api):
    t = api.deployed_tenant("tenant_1")
    assert api.lists() == {}
    r = api.post_events("tenant_1", "person_added", {"data": [{"name": "Ada"}, {"name": "Bob", "age": 3},
                                                               {"name": "Cy"}]}, t.headers)
    assert r.status_code == 200, r.get_json()
    ids = r.get_json()["executions"]
    assert len(ids) == 3 and len(set(ids)) == 3 and ids == sorted(ids)  # UUIDv7: time-ordered
    assert api.lists() == {QUEUE: 1}  # one task for the request's events, on that list only
    (task,) = [json.loads(m) for m in api.redis.lrange(QUEUE, 0, -1)]
    args, kwargs, _ = json.loads(base64.b64decode(task["body"]))
    assert task["headers"]["task"] == "jobico.execute_batch" and args == [ids]  # the ids, in order
    assert kwargs == {"tenant": "tenant_1", "package": "people", "event": "person_added"}
    # a request of one event is a single-execution task
    r = api.post_events("tenant_1", "person_added", {"data": [{"name": "Di"}]}, t.headers)
    (one,) = [json.loads(m) for m in api.redis.lrange(QUEUE, 0, 0)]
    assert one["headers"]["task"] == "jobico.execute"
    assert json.loads(base64.b64decode(one["body"]))[0] == [r.get_json()["executions"][0], '{"name":"Di"}']
    api.redis.lpop(QUEUE)
    rows = api.executions_in_db()[:3]
    assert [e.id for e in rows] == ids and {e.status for e in rows} == {"queued"}
    assert [json.loads(e.payload) for e in rows] == [{"name": "Ada"}, {"name": "Bob", "age": 3}, {"name": "Cy"}]
    assert rows[1].payload == '{"age":3,"name":"Bob"}'  # canonical JSON
    assert {e.submitter for e in rows} == {"default"}

    r = api.client.get(f"/api/v1/executions/{ids[1]}", headers=t.headers)
    rec = r.get_json()
    assert r.status_code == 200
    assert {k: rec[k] for k in ("id", "tenant", "package", "version", "event", "status", "code", "result",
                                "logs", "chained_from", "attempts", "dead_lettered")} == {
        "id": ids[1], "tenant": "tenant_1", "package": "people", "version": 1, "event": "person_added",
        "status": "queued", "code": None, "result": None, "logs": [], "chained_from": None, "attempts": 0,
        "dead_lettered": False}
    assert rec["payload"] == '{"age":3,"name":"Bob"}' and rec["created_at"].endswith("Z")


def test_check_order_body_size_first(api):
    t = api.deployed_tenant("tenant_1")
    big = b'{"data": [' + b'"x",' * 20000 + b'"x"]}'  # > 64 KB
    for tenant, event, headers in [("no_such_tenant", "no_such_event", {}),
                                   ("tenant_1", "no_such_event", {"Authorization": "Bearer nope"}),
                                   ("tenant_1", "person_added", t.headers)]:
        r = api.post_events(tenant, event, big, headers)
        assert r.status_code == 413, (tenant, event, r.get_json())
        assert r.get_json()["code"] == 413 and "64 KB" in r.get_json()["message"]
    # without Content-Length (chunked, as gunicorn passes it), the read is capped
    r = api.client.post("/events/no_such_tenant/x", input_stream=io.BytesIO(big),
                        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
                        environ_overrides={"wsgi.input_terminated": True})
    assert r.status_code == 413 and r.get_json()["message"] == "body is larger than the 64 KB limit"
    # the same small body without Content-Length goes on to the next check
    r = api.client.post("/events/no_such_tenant/x", input_stream=io.BytesIO(b'{"data": [1]}'),
                        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
                        environ_overrides={"wsgi.input_terminated": True})
    assert r.status_code == 404
    assert api.lists() == {} and api.executions_in_db() == []


def test_check_order_tenant_credentials_event_shape_element_schema(make_api):
    api = make_api(max_elements=3)
    t = api.deployed_tenant("tenant_1")
    other = api.tenant("tenant_2")
    bad = {"Authorization": "Bearer jbk_not_a_key"}
    ev = "person_added"
    huge = {"name": "x" * 3000}  # > 2 KB element
    cases = [
        # unknown tenant beats credentials, event and body
        (("nobody", ev, b"not json", bad), 404, "tenant 'nobody'"),
        (("nobody", "nope", b"{}", {}), 404, "tenant"),
        # credentials beat the event and the body
        (("tenant_1", "nope", b"not json", {}), 401, "missing credentials"),
        (("tenant_1", "nope", b"not json", bad), 401, "invalid credentials"),
        (("tenant_1", "nope", b"not json", {"Authorization": "Basic abc"}), 401, "missing credentials"),
        (("tenant_1", "nope", b"not json", other.headers), 403, "another tenant"),
        # the event beats the body
        (("tenant_1", "nope", b"not json", t.headers), 404, "event 'nope'"),
        # body shape (400)
        (("tenant_1", ev, b"not json", t.headers), 400, "not valid JSON"),
        (("tenant_1", ev, b"\xff\xfe", t.headers), 400, "not UTF-8"),
        (("tenant_1", ev, b'[{"name": "a"}]', t.headers), 400, '"data" array'),
        (("tenant_1", ev, b'{"items": []}', t.headers), 400, '"data" array'),
        (("tenant_1", ev, b'{"data": {"name": "a"}}', t.headers), 400, "must be an array"),
        (("tenant_1", ev, b'{"data": []}', t.headers), 400, "empty"),
        # too many elements beats element size and schema
        (("tenant_1", ev, json.dumps({"data": [huge, 1, 2, 3]}), t.headers), 400, "at most 3"),
        # element size beats schema
        (("tenant_1", ev, json.dumps({"data": [{"age": -1}, huge]}), t.headers), 413, "event 1 is larger"),
        # schema
        (("tenant_1", ev, json.dumps({"data": [{"name": "a"}, {"age": -1}]}), t.headers), 422, "event 1"),
    ]
    for (tenant, event, body, headers), status, text in cases:
        r = api.post_events(tenant, event, body, headers)
        payload = r.get_json()
        assert r.status_code == status, (tenant, event, body[:40], payload)
        assert set(payload) == {"code", "status", "message", "errors"}
        assert payload["code"] == status and text in payload["message"], payload
    assert api.lists() == {} and api.executions_in_db() == []


def test_schema_errors_shape(api):
    t = api.deployed_tenant("tenant_1")
    body = {"data": [{"name": "ok"}, {"name": ""}, {"age": "old"}, {"name": "fine", "age": 1}]}
    r = api.post_events("tenant_1", "person_added", body, t.headers)
    assert r.status_code == 422
    payload = r.get_json()
    assert payload["status"] == "Unprocessable Entity"
    errors = payload["errors"]["data"]
    assert sorted(errors) == ["1", "2"]  # only the bad elements, by index
    assert errors["1"] == [{"path": "$.name", "rule": "minLength", "message": errors["1"][0]["message"]}]
    rules = {(e["path"], e["rule"]) for e in errors["2"]}
    assert rules == {("$", "required"), ("$.age", "type")}
    assert all(set(e) == {"path", "rule", "message"} and e["message"] for e in errors["2"])
    # message repeats the first problem in words
    first = errors["1"][0]
    assert payload["message"].startswith("event 1 ") and first["path"] in payload["message"] \
        and first["message"] in payload["message"]
    assert api.lists() == {} and api.executions_in_db() == []  # all or nothing


def test_idempotency_key_replays_and_refuses_reuse(api):
    t = api.deployed_tenant("tenant_1")
    headers = {**t.headers, "Idempotency-Key": "order-42"}
    body = {"data": [{"name": "Ada"}, {"name": "Bob"}]}
    r1 = api.post_events("tenant_1", "person_added", body, headers)
    assert r1.status_code == 200
    ids = r1.get_json()["executions"]
    assert api.lists() == {QUEUE: 1}  # one batch task
    r2 = api.post_events("tenant_1", "person_added", body, headers)
    assert r2.status_code == 200 and r2.get_json()["executions"] == ids
    assert api.lists() == {QUEUE: 1} and len(api.executions_in_db()) == 2  # nothing enqueued again

    r3 = api.post_events("tenant_1", "person_added", {"data": [{"name": "Eve"}]}, headers)
    assert r3.status_code == 422 and "idempotency_key_reused" in r3.get_json()["message"]
    assert api.lists() == {QUEUE: 1}
    # another key is another request
    r4 = api.post_events("tenant_1", "person_added", body, {**t.headers, "Idempotency-Key": "order-43"})
    assert r4.status_code == 200 and set(r4.get_json()["executions"]).isdisjoint(ids)
    assert api.lists() == {QUEUE: 2}
    # a key that failed validation was not consumed
    bad = api.post_events("tenant_1", "person_added", {"data": [{"age": 1}]},
                          {**t.headers, "Idempotency-Key": "order-44"})
    assert bad.status_code == 422
    ok = api.post_events("tenant_1", "person_added", {"data": [{"name": "Z"}]},
                         {**t.headers, "Idempotency-Key": "order-44"})
    assert ok.status_code == 200


def test_idempotency_keys_are_scoped_to_the_tenant(api):
    t1 = api.deployed_tenant("tenant_1")
    t2 = api.deployed_tenant("tenant_2")
    r1 = api.post_events("tenant_1", "person_added", OK, {**t1.headers, "Idempotency-Key": "same"})
    r2 = api.post_events("tenant_2", "person_added", OK, {**t2.headers, "Idempotency-Key": "same"})
    assert r1.status_code == r2.status_code == 200
    assert r1.get_json()["executions"] != r2.get_json()["executions"]
    assert api.lists() == {QUEUE: 1, "jobico.tenant_2.people.main": 1}


def test_hmac_mode(api):
    api.deployed_tenant("tenant_1")
    r = api.client.patch("/api/v1/tenants/tenant_1", json={"webhook_auth": "hmac"}, headers=api.admin)
    secret = r.get_json()["signing_secret"]
    body = json.dumps({"data": [{"name": "Ada"}]}).encode()
    now = str(int(time.time()))

    def post(headers, data=body):
        return api.post_events("tenant_1", "person_added", data, headers)

    r = post({"X-Jobico-Timestamp": now, "X-Jobico-Signature": _sig(secret, now, body)})
    assert r.status_code == 200, r.get_json()
    assert api.executions_in_db()[0].submitter == "hmac"
    # missing / bad / stale / other secret / signature of another body
    assert post({}).status_code == 401
    r = post({"X-Jobico-Timestamp": now, "X-Jobico-Signature": "sha256=" + "0" * 64})
    assert r.status_code == 401 and "does not match" in r.get_json()["message"]
    stale = str(int(time.time()) - 400)
    r = post({"X-Jobico-Timestamp": stale, "X-Jobico-Signature": _sig(secret, stale, body)})
    assert r.status_code == 401 and "5 minutes" in r.get_json()["message"]
    r = post({"X-Jobico-Timestamp": now, "X-Jobico-Signature": _sig("other", now, body)})
    assert r.status_code == 401
    other_body = json.dumps({"data": [{"name": "Eve"}]}).encode()
    r = post({"X-Jobico-Timestamp": now, "X-Jobico-Signature": _sig(secret, now, body)}, other_body)
    assert r.status_code == 401
    r = post({"X-Jobico-Timestamp": "yesterday", "X-Jobico-Signature": _sig(secret, "yesterday", body)})
    assert r.status_code == 401
    # a bearer key is not enough in hmac mode
    key = api.client.post("/api/v1/tenants/tenant_1/keys", json={"name": "k2"}, headers=api.admin).get_json()["key"]
    assert post({"Authorization": f"Bearer {key}"}).status_code == 401
    assert api.lists() == {QUEUE: 1}


def test_none_mode_accepts_anonymous_calls(api):
    api.deployed_tenant("tenant_1", webhook_auth="none")
    r = api.post_events("tenant_1", "person_added", OK)
    assert r.status_code == 200
    assert api.executions_in_db()[0].submitter == "anonymous"
    # the rest of the checks still apply
    assert api.post_events("tenant_1", "nope", OK).status_code == 404
    assert api.post_events("tenant_1", "person_added", {"data": [{}]}).status_code == 422
    assert api.lists() == {QUEUE: 1}


def test_broker_down_is_503_with_retry_after_and_nothing_recorded(api, make_api):
    t = api.deployed_tenant("tenant_1")
    down = make_api(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    r = down.post_events("tenant_1", "person_added", {"data": [{"name": "a"}, {"name": "b"}]}, t.headers)
    assert r.status_code == 503, r.get_json()
    assert int(r.headers["Retry-After"]) > 0 and r.get_json()["code"] == 503
    assert time.monotonic() - started < 20  # answers promptly
    assert api.executions_in_db() == [] and api.lists() == {}
    r = down.post_events("tenant_1", "person_added", OK, {**t.headers, "Idempotency-Key": "k"})
    assert r.status_code == 503 and r.headers["Retry-After"]
    assert api.executions_in_db() == []
    # once the broker is back, the same key works (it was never consumed)
    r = api.post_events("tenant_1", "person_added", OK, {**t.headers, "Idempotency-Key": "k"})
    assert r.status_code == 200 and api.lists() == {QUEUE: 1}


def test_database_down_is_503(api, make_api):
    t = api.deployed_tenant("tenant_1")
    down = make_api(database_url=f"postgresql+psycopg://u:p@127.0.0.1:{free_port()}/db")
    r = down.post_events("tenant_1", "person_added", OK, t.headers)
    assert r.status_code == 503 and r.headers["Retry-After"]
    assert "Traceback" not in r.get_data(as_text=True) and "u:p" not in r.get_data(as_text=True)
    assert api.lists() == {}


def test_other_tenants_key_is_403_and_enqueues_nothing(api):
    api.deployed_tenant("tenant_1")
    t2 = api.deployed_tenant("tenant_2")
    r = api.post_events("tenant_1", "person_added", OK, t2.headers)
    assert r.status_code == 403
    assert api.lists() == {}


def test_deleted_package_is_404_on_the_webhook(api):
    t = api.deployed_tenant("tenant_1")
    assert api.client.delete("/api/v1/packages/people", headers=t.headers).status_code == 204
    r = api.post_events("tenant_1", "person_added", OK, t.headers)
    assert r.status_code == 404 and "person_added" in r.get_json()["message"]
    # the event id is free again
    assert api.deploy(t, PACKAGE.replace("id: people", "id: people2")).status_code == 201
    assert api.post_events("tenant_1", "person_added", OK, t.headers).status_code == 200
    assert api.lists() == {"jobico.tenant_1.people2.main": 1}


def test_webhook_cache_sees_another_processs_change_at_the_next_request(make_api):
    """JOBICO_WEBHOOK_CACHE_SECONDS: the lookups are cached, yet a change made by another API
    process (a revoked key, a deleted package) reaches this one's webhook at its next request
    (the Redis routing counter); without Redis the entry lives out its TTL; 0 turns the cache off."""
    from jobico_core.services import packages, tenants
    from jobico_core.services.context import ROUTING_GENERATION
    a, b = make_api(webhook_cache_seconds=5), make_api()  # two API processes, one database
    t = a.deployed_tenant("tenant_1")
    now = [0.0]
    a.ctx.webhook_cache._clock = lambda: now[0]
    _, key = tenants.create_key(a.ctx, "tenant_1", "second")
    hdr = {"Authorization": f"Bearer {key}"}
    ok = {"data": [{"name": "x"}]}
    assert a.post_events("tenant_1", "person_added", ok, hdr).status_code == 200
    assert a.ctx.webhook_cache.get(("tenant", "tenant_1")) is not None  # cached
    tenants.delete_key(b.ctx, "tenant_1", "second")  # revoked by the other process
    assert b.post_events("tenant_1", "person_added", ok, hdr).status_code == 401
    assert a.post_events("tenant_1", "person_added", ok, hdr).status_code == 401  # at once, here too

    assert a.post_events("tenant_1", "person_added", ok, t.headers).status_code == 200  # route cached
    packages.delete_package(b.ctx, "tenant_1", "people")  # the route, the same way
    assert a.post_events("tenant_1", "person_added", ok, t.headers).status_code == 404

    # the counter is what carries it: a change that could not be announced lives out the TTL
    assert a.deploy(t, PACKAGE).status_code == 201
    _, key3 = tenants.create_key(a.ctx, "tenant_1", "third")
    h3 = {"Authorization": f"Bearer {key3}"}
    assert a.post_events("tenant_1", "person_added", ok, h3).status_code == 200
    generation = a.redis.get(ROUTING_GENERATION)
    tenants.delete_key(b.ctx, "tenant_1", "third")
    a.redis.set(ROUTING_GENERATION, generation)  # as if b's INCR had been lost
    assert a.post_events("tenant_1", "person_added", ok, h3).status_code == 200  # stale, within the TTL
    now[0] = 5.0
    assert a.post_events("tenant_1", "person_added", ok, h3).status_code == 401  # expired

    off = make_api(webhook_cache_seconds=0)
    _, key4 = tenants.create_key(off.ctx, "tenant_1", "fourth")
    assert off.post_events("tenant_1", "person_added", ok, {"Authorization": f"Bearer {key4}"}).status_code == 200
    tenants.delete_key(b.ctx, "tenant_1", "fourth")
    assert off.post_events("tenant_1", "person_added", ok, {"Authorization": f"Bearer {key4}"}).status_code == 401


def test_the_routing_counter_is_checked_by_the_admission_and_before_a_refusal(make_api):
    """The webhook does not read the routing counter before its checks: the admission script
    compares it with the value this process's cache was checked against. Moved: nothing is
    spent (tokens, signature), the caches are emptied and the request is checked again; a
    refusal made from cached entries reads the counter before it is answered."""
    from jobico_core.services import tenants
    from jobico_core.services.context import ROUTING_GENERATION
    a, b = make_api(webhook_cache_seconds=60, rate_limit=1, rate_burst=100), make_api()
    t = a.deployed_tenant("tenant_1")
    ok = {"data": [{"name": "x"}]}
    assert a.post_events("tenant_1", "person_added", ok, t.headers).status_code == 200
    a.redis.delete("jobico:rate:tenant_1")
    tenants.update_webhook(b.ctx, "tenant_1", "key")  # the same mode: only the counter moves
    seen = a.ctx.routing_generation_seen
    assert a.redis.get(ROUTING_GENERATION) != seen
    assert a.post_events("tenant_1", "person_added", ok, t.headers).status_code == 200
    assert a.ctx.routing_generation_seen == a.redis.get(ROUTING_GENERATION)  # followed
    tokens = float(a.redis.hget("jobico:rate:tenant_1", "tokens"))
    assert 99 <= tokens < 99.9, tokens  # one event's token spent once, not once per pass

    # a 401 from the cached mode ('key'), while another process opened the webhook ('none')
    assert a.ctx.webhook_cache.get(("tenant", "tenant_1")).webhook_auth == "key"
    tenants.update_webhook(b.ctx, "tenant_1", "none")
    r = a.post_events("tenant_1", "person_added", ok)
    assert r.status_code == 200, r.get_json()
    tenants.update_webhook(b.ctx, "tenant_1", "hmac")  # and back: refused at once, here too
    assert a.post_events("tenant_1", "person_added", ok).status_code == 401

    # a signed request whose first pass met a moved counter spends its signature once
    signer = tenants.update_webhook(b.ctx, "tenant_1", "hmac", rotate_secret=True)
    assert a.post_events("tenant_1", "person_added", ok, t.headers).status_code == 401  # follows it
    raw = json.dumps(ok).encode()
    ts = str(int(time.time()))
    signed = {"X-Jobico-Timestamp": ts,
              "X-Jobico-Signature": tenants.sign(signer.signing_secret, ts, raw)}
    a.redis.incr(ROUTING_GENERATION)  # as another process's change would
    assert a.post_events("tenant_1", "person_added", raw, signed).status_code == 200
    assert a.post_events("tenant_1", "person_added", raw, signed).status_code == 409


def test_an_elements_limit_is_the_events_input_kb_when_lower(make_api):
    """The element limit is JOBICO_MAX_ELEMENT_KB, or the runtime's or the event's ``input_kb``
    when lower (resolved once per set of values: ``ingest._max_element``); each version its own."""
    api = make_api(max_element_kb=8)
    t = api.deployed_tenant("tenant_1")
    src = PACKAGE.replace("    moduleref: echo.wasm\n", "    moduleref: echo.wasm\n    limits:\n      input_kb: 4\n")
    assert api.deploy(t, src.replace("id: people", "id: rt")
                      .replace("id: person_added", "id: by_runtime")).status_code == 201
    assert api.deploy(t, src.replace("id: people", "id: ev").replace("id: person_added", "id: by_event")
                      .replace("      runtime: echo\n", "      runtime: echo\n      limits:\n        input_kb: 2\n")
                      ).status_code == 201
    for event, kb in (("person_added", 8), ("by_runtime", 4), ("by_event", 2)):
        fits = {"data": [{"name": "x" * (kb * 1024 - 20)}]}
        over = {"data": [{"name": "x" * (kb * 1024)}]}
        assert api.post_events("tenant_1", event, fits, t.headers).status_code == 200, event
        r = api.post_events("tenant_1", event, over, t.headers)
        assert r.status_code == 413 and f"larger than {kb} KB" in r.get_json()["message"], (event, r.get_json())


def test_many_events_are_stored_exactly_whatever_their_characters(api):
    """A request's rows go in by one statement (their ids and payloads as PostgreSQL array literals,
    ``executions._insert_values``): quotes, backslashes, braces, commas, NULL-looking, blank and
    empty strings, escapes and non-ASCII text come back as sent, each in its own row, in order."""
    from jobico_core.canonical import dumps
    from jobico_core.services.executions import enqueue, new_executions
    from jobico_core.services.packages import route
    t = api.deployed_tenant("tenant_1")
    names = ['say "hi"', "back\\slash \\\" end\\", "{a,b}", "NULL", " ", " padded ", "é ✓ 😀",
             "nul \u0000 tab \t nl \n", 'x","y', "\\", '"', "{", "}", ","]
    data = [{"name": n, "age": i} for i, n in enumerate(names)]
    r = api.post_events("tenant_1", "person_added", {"data": data}, t.headers)
    assert r.status_code == 200, r.get_json()
    ids = r.get_json()["executions"]
    rows = {e.id: e for e in api.executions_in_db()}
    assert [rows[i].payload for i in ids] == [dumps(d) for d in data]
    assert [json.loads(rows[i].payload)["name"] for i in ids] == names
    # a column that varies between rows, None in some (trace ids: set on one row, empty on another)
    info = route(api.ctx, "tenant_1", "person_added")
    new = new_executions(info, "person_added", ['{"name":"a"}', '{"name":"b"}', '{"name":"c"}'],
                         submitter='sub "x"', trigger="webhook")
    new[1].trace_id, new[1].trace_parent = "ab" * 16, "cd" * 8
    new[2].trace_id = ""
    assert enqueue(api.ctx, new) == [e.id for e in new]
    rows = {e.id: e for e in api.executions_in_db()}
    assert [(rows[e.id].trace_id, rows[e.id].trace_parent, rows[e.id].submitter) for e in new] == [
        (None, None, 'sub "x"'), ("ab" * 16, "cd" * 8, 'sub "x"'), ("", None, 'sub "x"')]
