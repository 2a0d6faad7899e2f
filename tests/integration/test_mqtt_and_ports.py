"""MQTT triggers through the API and the bridge's core (``services.mqtt.receive``) on real
PostgreSQL, Redis and S3; gateway and control roles of the app."""
from __future__ import annotations

import json

from jobico_core.services import mqtt as svc

from .helpers import PERSON_SCHEMA, package_yaml, wasm


def _with_mqtt(source: str, topic: str, qos: int = 1, event: str = "person_added") -> str:
    return source.replace(f"      id: {event}\n", f"      id: {event}\n      mqtt: {{topic: '{topic}', qos: {qos}}}\n")


def _tenant(api, tid="t1"):
    t = api.tenant(tid)
    assert api.upload(t, "echo.wasm", wasm("echo")).status_code == 201
    assert api.upload(t, "person.json", PERSON_SCHEMA).status_code == 201
    return t


def test_overlapping_topics_across_packages_are_a_409_naming_both_and_rollback_checks_too(api):
    t = _tenant(api)
    r = api.deploy(t, _with_mqtt(package_yaml("a", "ev_a"), "s/+/temp", event="ev_a"))
    assert r.status_code == 201, r.get_json()
    r = api.deploy(t, _with_mqtt(package_yaml("b", "ev_b"), "s/kitchen/#", event="ev_b"))
    assert r.status_code == 409
    body = r.get_json()
    assert body["errors"]["package"][0]["path"] == "events.ev_b.mqtt.topic"
    assert "'s/+/temp'" in body["message"] and "'a'" in body["message"]
    # disjoint topics are fine; another tenant may use the very same topic (its own namespace)
    assert api.deploy(t, _with_mqtt(package_yaml("b", "ev_b"), "s/kitchen", event="ev_b")).status_code == 201
    t2 = _tenant(api, "t2")
    assert api.deploy(t2, _with_mqtt(package_yaml("a", "ev_a"), "s/+/temp", event="ev_a")).status_code == 201
    # a rollback to a version whose topic now overlaps another package's is refused the same way
    assert api.deploy(t, _with_mqtt(package_yaml("a", "ev_a"), "x/y", event="ev_a"), package="a").status_code == 201
    assert api.deploy(t, _with_mqtt(package_yaml("b", "ev_b"), "s/+/temp", event="ev_b"),
                      package="b").status_code == 201
    r = api.client.post("/api/v1/packages/a/rollback", json={"version": 1}, headers=t.headers)
    assert r.status_code == 409 and "overlaps" in r.get_json()["message"]
    subs = svc.deployed_topics(api.ctx)
    assert [(s.tenant, s.package, s.event, s.topic) for s in subs] == [
        ("t1", "b", "ev_b", "s/+/temp"), ("t1", "a", "ev_a", "x/y"), ("t2", "a", "ev_a", "s/+/temp")]
    assert subs[0].filter("jobico") == "jobico/t1/s/+/temp"


def test_receive_records_redelivered_messages_once(api):
    t = _tenant(api)
    assert api.deploy(t, _with_mqtt(package_yaml(), "people/+")).status_code == 201
    subs = svc.deployed_topics(api.ctx)
    body = json.dumps({"name": "Ada", "age": 36}).encode()
    first = svc.receive(api.ctx, subs, "jobico/t1/people/new", body, qos=1, packet_id=7)
    assert first.status == "accepted"
    again = svc.receive(api.ctx, subs, "jobico/t1/people/new", body, qos=1, packet_id=7, dup=True)
    assert (again.status, again.id) == ("duplicate", first.id)
    # the same payload and packet id without DUP is a new message (the broker reused the id)
    fresh = svc.receive(api.ctx, subs, "jobico/t1/people/new", body, qos=1, packet_id=7)
    assert fresh.status == "accepted" and fresh.id != first.id
    # a bridge that died after remembering the id but before the commit: the redelivery is
    # submitted under that remembered id
    key = svc._dedupe_key("t1", "people/new", 8, body)
    api.redis.set(key, "01a20000-0000-7000-8000-000000000001")
    late = svc.receive(api.ctx, subs, "jobico/t1/people/new", body, qos=1, packet_id=8, dup=True)
    assert (late.status, late.id) == ("accepted", "01a20000-0000-7000-8000-000000000001")
    rows = api.executions_in_db()
    assert len(rows) == 3 and {r.trigger for r in rows} == {"mqtt"}
    assert {r.submitter for r in rows} == {"mqtt:people/new"}
    assert sum(api.lists().values()) == 3  # one task each
    # a rejection redelivered is recorded once as well
    bad = svc.receive(api.ctx, subs, "jobico/t1/people/x", b"{", qos=1, packet_id=9)
    assert bad.status == "rejected" and bad.reason == "bad_request"
    assert svc.receive(api.ctx, subs, "jobico/t1/people/x", b"{", qos=1, packet_id=9, dup=True).status == "duplicate"
    r = api.client.get("/api/v1/rejections", headers=t.headers)
    assert [i["id"] for i in r.get_json()["items"]] == [bad.id]


def test_receive_rejections_say_why(api):
    t = _tenant(api)
    assert api.deploy(t, _with_mqtt(package_yaml(), "people/+", qos=0)).status_code == 201
    subs = svc.deployed_topics(api.ctx)
    big = json.dumps({"name": "x" * 4000, "age": 1}).encode()  # max_element_kb=2 in these tests
    cases = [(b"[1,", "bad_request"), (big, "too_large"), (b'{"name": 5}', "invalid")]
    for payload, reason in cases:
        out = svc.receive(api.ctx, subs, "jobico/t1/people/a", payload, qos=0)
        assert (out.status, out.reason) == ("rejected", reason), out
    # a topic the event no longer takes (redeployed meanwhile): not_deployed, with the topic
    assert api.deploy(t, _with_mqtt(package_yaml(), "people/only"), package="people").status_code == 201
    out = svc.receive(api.ctx, subs, "jobico/t1/people/a", b'{"name": "x", "age": 2}', qos=0)
    assert (out.status, out.reason) == ("rejected", "not_deployed") and "'people/a'" in out.message
    items = api.client.get("/api/v1/rejections?limit=2", headers=t.headers).get_json()
    assert [i["reason"] for i in items["items"]] == ["not_deployed", "invalid"] and items["next_cursor"]
    more = api.client.get(f"/api/v1/rejections?cursor={items['next_cursor']}", headers=t.headers).get_json()
    assert [i["reason"] for i in more["items"]] == ["too_large", "bad_request"]
    assert more["items"][0]["payload_size"] == len(big) and len(more["items"][0]["payload"]) == 1024
    # tenants see their own rejections only; a bad filter is a 422 naming the query field
    other = api.tenant("t2")
    assert api.client.get("/api/v1/rejections", headers=other.headers).get_json()["items"] == []
    r = api.client.get("/api/v1/rejections?reason=nope", headers=t.headers)
    assert r.status_code == 422 and "reason" in json.dumps(r.get_json()["errors"])
    assert api.client.get("/api/v1/rejections").status_code == 401
    assert svc.receive(api.ctx, subs, "elsewhere/t1/people/a", b"{}", qos=0) is None
    # deleting the tenant deletes its rejections (a tenant re-created later starts empty)
    assert api.client.delete("/api/v1/tenants/t1", headers=api.admin).status_code == 204
    from jobico_core.services.rejections import list_rejections
    assert list_rejections(api.ctx, "t1") == ([], None)


def test_gateway_and_control_roles_serve_only_their_endpoints(api):
    from jobico_api import create_app
    t = api.deployed_tenant()
    gateway = create_app(ctx=api.ctx, role="gateway").test_client()
    control = create_app(ctx=api.ctx, role="control").test_client()
    ok = gateway.post("/events/tenant_1/person_added", json={"data": [{"name": "Ada", "age": 36}]},
                      headers=t.headers)
    assert ok.status_code == 200, ok.get_json()
    for path in ("/api/v1/executions", "/api/v1/openapi.json", "/docs", "/metrics", "/api/v1/tenants"):
        r = gateway.get(path, headers=t.headers)
        assert r.status_code == 404 and r.get_json()["code"] == 404, path
    r = control.post("/events/tenant_1/person_added", json={"data": [{"name": "Ada", "age": 36}]},
                     headers=t.headers)
    assert r.status_code == 404 and r.get_json()["code"] == 404
    assert control.get("/api/v1/executions", headers=t.headers).get_json()["items"][0]["trigger"] == "webhook"
    assert "/events/{tenant}/{event}" not in control.get("/api/v1/openapi.json").get_json()["paths"]
    for c in (gateway, control):
        assert c.get("/health").get_json() == {"status": "ok"}
        assert c.get("/ready").status_code == 200
    # the gateway's refusals are still counted (served on the control port's /metrics)
    gateway.post("/events/tenant_1/person_added", json={"data": [{"nope": 1}]}, headers=t.headers)
    text = control.get("/metrics").get_data(as_text=True)
    assert 'jobico_events_rejected_total{reason="invalid",tenant="tenant_1"}' in text
