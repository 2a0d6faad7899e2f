"""Hostile bodies, URLs and headers for ``POST /events/<tenant>/<event>``.

Each row: what is sent, the status the contract asks for, and words the message
must contain. Nothing may be recorded or enqueued by a refused request.
"""
from __future__ import annotations

import json

import pytest

from .helpers import GOOD, assert_error, package_yaml

pytestmark = pytest.mark.services

OK_ELEMENT = '{"name":"Ada"}'

# (id, body, status, message fragments, extra post() kwargs)
CASES = [
    ("malformed-json", b'{"data": [1,}', 400, ["not valid JSON"], {}),
    ("truncated-json", b'{"data": [{"name": "Ada"', 400, ["not valid JSON"], {}),
    ("nan", b'{"data": [NaN]}', 400, ["NaN"], {}),
    ("infinity", b'{"data": [{"name": "x", "age": Infinity}]}', 400, ["Infinity"], {}),
    ("minus-infinity", b'{"data": [-Infinity]}', 400, ["Infinity"], {}),
    ("deep-nesting-100k", b"[" * 100_000, 400, ["not valid JSON", "recursion"], {}),
    ("deep-nesting-in-data", b'{"data": [' + b"[" * 5000 + b"]" * 5000 + b"]}", 400, ["not valid JSON"], {}),
    ("huge-float-1e400", b'{"data": [{"name": "x", "age": 1e400}]}', 400, ["out of range", "1e400"], {}),
    ("huge-negative-float", b'{"data": [-1e400]}', 400, ["out of range"], {}),
    ("int-5000-digits", b'{"data": [' + b"9" * 5000 + b"]}", 400, ["not valid JSON", "digits"], {}),
    ("int-4000-digits-too-big-element", b'{"data": [' + b"9" * 4000 + b"]}", 413, ["larger than 2 KB"], {}),
    ("invalid-utf8", b'{"data": [{"name": "\xff\xfe"}]}', 400, ["UTF-8"], {}),
    ("utf16-with-bom", '{"data": [{"name": "Ada"}]}'.encode("utf-16"), 400, ["UTF-8"], {}),
    ("utf16-no-bom", '{"data": [{"name": "Ada"}]}'.encode("utf-16-le"), 400, ["not valid JSON"], {}),
    ("utf8-bom", b"\xef\xbb\xbf" + json.dumps(GOOD).encode(), 400, ["BOM"], {}),
    ("lone-surrogate", b'{"data": [{"name": "\\ud800"}]}', 400, ["surrogate"], {}),
    ("raw-control-char-in-string", b'{"data": [{"name": "a\nb"}]}', 400, ["not valid JSON"], {}),
    ("empty-body", b"", 400, ["not valid JSON"], {}),
    ("whitespace-body", b"  \n\t ", 400, ["not valid JSON"], {}),
    ("oversize-body", b'{"data": ["' + b"x" * 300_000 + b'"]}', 413, ["256 KB"], {}),
    ("oversize-body-unknown-tenant", b"x" * 300_000, 413, ["256 KB"], {"tenant": "nobody", "auth": False}),
    ("oversize-element", json.dumps({"data": [{"name": "x" * 3000}]}).encode(), 413,
     ["event 0", "2 KB"], {}),
    ("too-many-elements", json.dumps({"data": [{"name": "a"}] * 21}).encode(), 400, ["21", "at most 20"], {}),
    ("data-not-a-list", b'{"data": {"name": "Ada"}}', 400, ['"data" must be an array'], {}),
    ("data-a-string", b'{"data": "Ada"}', 400, ['"data" must be an array'], {}),
    ("data-missing", b'{"events": [{"name": "Ada"}]}', 400, ['"data" array'], {}),
    ("data-empty", b'{"data": []}', 400, ["empty"], {}),
    ("body-a-json-array", b'[{"name": "Ada"}]', 400, ['"data" array'], {}),
    ("body-a-json-string", b'"data"', 400, ['"data" array'], {}),
    ("body-null", b"null", 400, ['"data" array'], {}),
    ("multipart-not-json", b"--x\r\nContent-Disposition: form-data; name=\"data\"\r\n\r\n1\r\n--x--\r\n", 400,
     ["not valid JSON"], {"content_type": "multipart/form-data; boundary=x"}),
    ("element-not-an-object", b'{"data": ["Ada"]}', 422, ["event 0", "not of type 'object'"], {}),
    ("idempotency-key-empty", json.dumps(GOOD).encode(), 400, ["Idempotency-Key", "1 to 255"],
     {"headers": {"Idempotency-Key": ""}}),
    ("idempotency-key-too-long", json.dumps(GOOD).encode(), 400, ["Idempotency-Key", "1 to 255"],
     {"headers": {"Idempotency-Key": "k" * 256}}),
    # check order: tenant (404) and credentials (401) come before the body shape
    ("bad-json-unknown-tenant", b"{", 404, ["tenant 'nobody' does not exist"], {"tenant": "nobody"}),
    ("bad-json-no-credentials", b"{", 401, ["missing credentials"], {"auth": False}),
    ("bad-json-unknown-event", b"{", 404, ["event 'nope' is not deployed"], {"event": "nope"}),
]


@pytest.mark.parametrize("body, status, fragments, kw", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_webhook_body_refused(world, body, status, fragments, kw):
    world.refused(lambda: world.post(body, **kw), status, *fragments)


# Weird tenant/event ids in the URL: never a 5xx, never another tenant's data.
URLS = [
    ("traversal-encoded-slash", "/events/..%2F../x", 404, []),
    ("traversal-dotdot-tenant", "/events/../person_added", 404, []),
    ("dotdot-event", "/events/acme/..", 404, []),
    ("unicode-tenant", "/events/t%C3%ABnant/person_added", 404, ["does not exist"]),
    ("unicode-event", "/events/acme/%E2%80%AEperson_added", 404, ["not deployed"]),
    ("nul-in-tenant", "/events/ac%00me/person_added", 404, ["does not exist"]),
    ("nul-in-event", "/events/acme/person%00added", 404, ["not deployed"]),
    ("newline-in-tenant", "/events/acme%0A/person_added", 404, ["does not exist"]),
    ("very-long-tenant", "/events/" + "a" * 10_000 + "/person_added", 404, ["does not exist"]),
    ("very-long-event", "/events/acme/" + "e" * 10_000, 404, ["not deployed"]),
    ("sql-ish-tenant", "/events/acme'%20OR%20'1'='1/person_added", 404, ["does not exist"]),
]


@pytest.mark.parametrize("url, status, fragments", [u[1:] for u in URLS], ids=[u[0] for u in URLS])
def test_webhook_url_refused(world, url, status, fragments):
    world.refused(lambda: world.client.post(url, data=json.dumps(GOOD), headers={
        **world.acme.headers, "Content-Type": "application/json"}), status, *fragments)


def test_get_on_the_webhook_is_405_json(world):
    body = world.refused(lambda: world.client.get("/events/acme/person_added", headers=world.acme.headers), 405)
    assert body["status"] == "Method Not Allowed"


def test_schema_violations_are_422_with_index_path_rule_message(world):
    body = world.refused(lambda: world.post({"data": [{"name": ""}, {"name": "ok"}, {"age": -1, "name": 3}]}),
                         422, "event 0", "person.json", "$.name")
    data = body["errors"]["data"]
    assert set(data) == {"0", "2"}
    assert data["0"] == [{"path": "$.name", "rule": "minLength", "message": "'' should be non-empty"}]
    assert {(e["path"], e["rule"]) for e in data["2"]} == {("$.age", "minimum"), ("$.name", "type")}
    assert all(set(e) == {"path", "rule", "message"} for e in data["2"])


# -- decisions (documented in docs/hostile-inputs.md) -------------------------------------
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "application/octet-stream", None])
def test_any_content_type_is_accepted_when_the_body_is_json(world, content_type):
    """`curl -d` sends x-www-form-urlencoded: the webhook reads the raw body whatever its type."""
    headers = {**world.acme.headers}
    if content_type:
        headers["Content-Type"] = content_type
    r = world.client.post("/events/acme/person_added", data=json.dumps(GOOD).encode(), headers=headers)
    assert r.status_code == 200, r.get_data()[:300]
    assert len(r.get_json()["executions"]) == 1


def test_duplicate_keys_last_wins_like_python_and_go(world):
    """Schema validation and the guest both see the same (canonical, deduplicated) object."""
    r = world.post(b'{"data": [{"name": 5, "name": "Ada", "age": 1, "age": 2}], "data": [{"name": "Bob"}]}')
    assert r.status_code == 200, r.get_data()[:300]
    [eid] = r.get_json()["executions"]
    rec = world.client.get(f"/api/v1/executions/{eid}", headers=world.acme.headers).get_json()
    assert rec["payload"] == '{"name":"Bob"}'
    r = world.post(b'{"data": [{"name": "Ada", "age": 1, "age": -1}]}')  # the last one is validated
    assert_error(r, 422, "$.age")


def test_huge_but_representable_numbers_keep_their_digits(world):
    r = world.post(b'{"data": [{"name": "x", "age": 123456789012345678901234567890}]}')
    assert r.status_code == 200, r.get_data()[:300]
    [eid] = r.get_json()["executions"]
    rec = world.client.get(f"/api/v1/executions/{eid}", headers=world.acme.headers).get_json()
    assert rec["payload"] == '{"age":123456789012345678901234567890,"name":"x"}'


def test_zz_world_intact(world):
    world.assert_intact()


def test_recursive_schema_with_deeply_nested_event_is_a_clean_refusal(world):
    """A tenant's recursive schema (`items: {$ref: "#"}`) and an event nested a few hundred levels deep
    (well within the element size limit) must not turn jsonschema's recursion into a 500."""
    schema = {"type": ["array", "object", "string", "integer"], "items": {"$ref": "#"}}
    assert world.api.upload(world.open, "tree.json", schema).status_code == 201
    r = world.api.deploy(world.open, package_yaml("tree", "tree_added", schema="tree.json"))
    assert r.status_code == 201, r.get_json()
    try:
        for depth in (300, 900, 1500):
            body = "[" * depth + "]" * depth
            with world.nothing_recorded():
                r = world.post('{"data": [' + body + "]}", tenant="open", event="tree_added", auth=False)
            if r.status_code == 400:  # deeper than the JSON parser's recursion limit
                assert_error(r, 400, "not valid JSON")
            else:
                assert_error(r, 422, "event 0", "nested too deeply")
        r = world.post({"data": [[[["ok"]]]]}, tenant="open", event="tree_added", auth=False)
        assert r.status_code == 200, r.get_data()[:300]
    finally:
        assert world.client.delete("/api/v1/packages/tree", headers=world.open.headers).status_code == 204
