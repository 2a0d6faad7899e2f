"""The product end to end: webhook -> tenant queue -> Celery worker -> WASM ->
PostgreSQL record -> Redis pub/sub, with chained ok/error events."""
from __future__ import annotations

import base64
import json

import redis

from tests.waiting import wait_until

from .helpers import example

HELLO_YAML = (example("packages/hello.yaml")).read_text()

OUTCOMES_YAML = """
id: outcomes
queues: [{id: q}]
jobs:
  - event:
      id: fail
      schema: {id: s, schemaref: any.json}
      supplierqueue: q
      runtime: error
    result:
      error: {id: fail_err, schema: {id: r, schemaref: result.json}, supplierqueue: q, runtime: echo}
  - event: {id: crash, schema: {id: s, schemaref: any.json}, supplierqueue: q, runtime: panic}
  - event: {id: spin, schema: {id: s, schemaref: any.json}, supplierqueue: q, runtime: sleeper,
            limits: {timeout_ms: 300}}
  - event: {id: logs, schema: {id: s, schemaref: any.json}, supplierqueue: q, runtime: log}
  - event: {id: tinygo, schema: {id: s, schemaref: any.json}, supplierqueue: q, runtime: tinygo}
runtimes:
  - {id: error, moduleref: error.wasm}
  - {id: panic, moduleref: panic.wasm}
  - {id: sleeper, moduleref: sleeper.wasm}
  - {id: log, moduleref: log.wasm}
  - {id: echo, moduleref: echo.wasm}
  - {id: tinygo, moduleref: echo_tinygo.wasm}
"""


def _setup_demo(p, tenant="demo", yaml_text=HELLO_YAML):
    key = p.tenant(tenant)
    for f in ("jobicolets/greet.wasm", "jobicolets/echo.wasm", "jobicolets/error.wasm", "jobicolets/panic.wasm",
              "jobicolets/sleeper.wasm", "jobicolets/log.wasm", "jobicolets/echo_tinygo.wasm",
              "schemas/hello.json", "schemas/result.json", "schemas/any.json"):
        p.upload(key, example(f))
    p.deploy(key, yaml_text.replace("tenant: demo", f"tenant: {tenant}"))
    return key


def test_success_with_ok_chain_and_pubsub(platform):
    p = platform
    key = _setup_demo(p)
    sub = redis.Redis.from_url(p.settings.redis_url).pubsub()
    sub.subscribe("jobico:tenant:demo:executions")
    p.start_worker()
    r = p.post(key, "demo", "hello", [{"name": "Ada", "lang": "fr"}, {"name": "Linus"}])
    assert r.status_code == 200, r.text
    ids = r.json()["executions"]
    assert len(ids) == 2
    first = p.wait(key, ids[0])
    assert first["status"] == "succeeded"
    assert first["code"] == 0 and first["result"] == "Bonjour, Ada!"
    assert first["logs"] == [{"level": 1, "message": "lang=fr"}]
    assert first["attempts"] == 1 and first["version"] == 1 and first["package"] == "hello"
    assert p.wait(key, ids[1])["result"] == "Hello, Linus!"
    # the ok chain: hello_done receives code, result, status and the parent id
    assert len(first["chain"]) == 1
    child = p.wait(key, first["chain"][0])
    assert child["event"] == "hello_done" and child["chained_from"] == ids[0]
    assert child["status"] == "succeeded"
    assert isinstance(first["seq"], int) and child["seq"] > first["seq"]  # stream order of finishing
    assert json.loads(child["result"]) == {"chained_from": ids[0], "code": 0, "result": "Bonjour, Ada!",
                                           "status": "succeeded"}
    # every finished execution was streamed on the tenant's channel
    seen = set()

    def streamed() -> bool:
        m = sub.get_message(timeout=1)
        if m and m["type"] == "message":
            seen.add(json.loads(m["data"])["id"])
        return {ids[0], ids[1], child["id"]} <= seen

    wait_until(streamed, 20, what="every finished execution on the tenant's channel", interval=0)


def test_failed_trapped_timed_out_and_error_chain(platform):
    p = platform
    key = _setup_demo(p, "t2", OUTCOMES_YAML)
    p.start_worker()
    fail = p.post(key, "t2", "fail", [{"x": 1}]).json()["executions"][0]
    crash = p.post(key, "t2", "crash", [{}]).json()["executions"][0]
    spin = p.post(key, "t2", "spin", [{}]).json()["executions"][0]
    logs = p.post(key, "t2", "logs", [{}]).json()["executions"][0]
    tinygo = p.post(key, "t2", "tinygo", [{"b": [1, 2], "a": "é"}]).json()["executions"][0]

    e = p.wait(key, fail)
    assert e["status"] == "failed" and e["code"] == 3 and "total must be positive" in e["result"]
    err_child = p.wait(key, e["chain"][0])
    assert err_child["event"] == "fail_err"
    assert json.loads(err_child["result"])["status"] == "failed"

    e = p.wait(key, crash)
    assert e["status"] == "trapped" and "panic: something bad happened" in e["stdout"]
    e = p.wait(key, spin)
    assert e["status"] == "timed_out" and e["limit"] in ("wall", "cpu")
    e = p.wait(key, logs)
    assert e["status"] == "succeeded" and [r["level"] for r in e["logs"]] == list(range(7))
    e = p.wait(key, tinygo)
    assert e["status"] == "succeeded" and e["result"] == '{"a":"é","b":[1,2]}'  # canonical JSON


def test_worker_started_before_tenant_consumes_its_own_queue(platform):
    p = platform
    r = redis.Redis.from_url(p.settings.redis_url)
    p.start_worker()  # no tenant, no package yet
    key = _setup_demo(p, "late")
    ids = p.post(key, "late", "hello", [{"name": "Grace"}]).json()["executions"]
    first = p.wait(key, ids[0])
    assert first["result"] == "Hello, Grace!"
    p.wait(key, p.wait(key, ids[0], until=lambda e: e["chain"])["chain"][0])  # its ok chain ran too
    # now prove the events travel on the tenant's own queue: stop consuming, post, look at Redis
    for w in p.workers:
        w.stop()
    ids = p.post(key, "late", "hello", [{"name": "A"}, {"name": "B"}]).json()["executions"]
    queue = "jobico.late.hello.main"
    bodies = [json.loads(m) for m in r.lrange(queue, 0, -1)]
    assert r.llen(queue) == 1, [(b["headers"]["id"], b["headers"]["argsrepr"]) for b in bodies]
    (body,) = bodies  # the request's two events in one batch task
    assert body["headers"]["task"] == "jobico.execute_batch"
    assert json.loads(base64.b64decode(body["body"]))[0] == [ids]
    other = [k.decode() for k in r.keys("jobico.*") if k.decode() != queue and r.type(k) == b"list"]
    assert all(r.llen(k) == 0 for k in other), other
    p.start_worker("w2")
    for i in ids:
        done = p.wait(key, i, until=lambda e: e["status"] == "succeeded" and e["chain"])
        p.wait(key, done["chain"][0])  # its ok chain (published on the same queue) ran too
    assert r.llen(queue) == 0


def test_in_flight_events_finish_on_their_version(platform):
    p = platform
    key = _setup_demo(p, "ver")
    ids_v1 = p.post(key, "ver", "hello", [{"name": "One"}]).json()["executions"]
    # redeploy with a schema that adds a required field: v2
    strict = json.loads(example("schemas/hello.json").read_text())
    strict["required"] = ["name", "lang"]
    r = p.call(key, "PUT", "/api/v1/files/hello.json", data=json.dumps(strict).encode())
    assert r.status_code in (200, 201), r.text
    p.deploy(key, HELLO_YAML.replace("tenant: demo", "tenant: ver"), redeploy_id="hello")
    assert p.post(key, "ver", "hello", [{"name": "Two"}]).status_code == 422  # new schema applies now
    ids_v2 = p.post(key, "ver", "hello", [{"name": "Two", "lang": "de"}]).json()["executions"]
    p.start_worker()
    v1 = p.wait(key, ids_v1[0])
    v2 = p.wait(key, ids_v2[0])
    assert (v1["version"], v1["result"]) == (1, "Hello, One!")
    assert (v2["version"], v2["result"]) == (2, "Hallo, Two!")
