"""The repository (uploads) and packages (deploy, redeploy, rollback, delete, show) through the API."""
from __future__ import annotations

import hashlib
import json

import pytest

from .helpers import PACKAGE, PERSON_SCHEMA, package_yaml, wasm, wat

pytestmark = pytest.mark.services

FORBIDDEN_IMPORT = """
(module
  (import "env" "socket" (func (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "free") (param i32))
  (func (export "event") (param i32 i32 i32)))
"""


def test_uploads_validate_and_store_files(api):
    t = api.tenant("tenant_1")
    c = api.client
    echo = wasm("echo")
    r = api.upload(t, "echo.wasm", echo)
    assert r.status_code == 201, r.get_json()
    meta = r.get_json()
    assert meta["name"] == "echo.wasm" and meta["kind"] == "wasm" and meta["size"] == len(echo)
    assert meta["sha256"] == hashlib.sha256(echo).hexdigest() and meta["uploaded_at"]
    schema = json.dumps(PERSON_SCHEMA).encode()
    r = api.upload(t, "person.json", schema)
    assert r.status_code == 201 and r.get_json()["kind"] == "schema"
    # the kind can be explicit, whatever the extension
    r = api.upload(t, "person-schema", schema, kind="schema")
    assert r.status_code == 201 and r.get_json()["kind"] == "schema"

    r = c.get("/api/v1/files/echo.wasm/content", headers=t.headers)
    assert r.status_code == 200 and r.data == echo
    assert c.get("/api/v1/files/echo.wasm", headers=t.headers).get_json() == meta
    assert [f["name"] for f in c.get("/api/v1/files", headers=t.headers).get_json()["items"]] == \
        ["echo.wasm", "person-schema", "person.json"]
    assert [f["name"] for f in c.get("/api/v1/files?kind=wasm", headers=t.headers).get_json()["items"]] == \
        ["echo.wasm"]
    assert c.get("/api/v1/files?kind=zip", headers=t.headers).status_code == 422
    assert c.get("/api/v1/files/missing.wasm", headers=t.headers).status_code == 404
    assert c.get("/api/v1/files/missing.wasm/content", headers=t.headers).status_code == 404
    # the object is in S3, content-addressed
    assert api.ctx.store.get(f"tenants/tenant_1/blobs/{meta['sha256']}") == echo


def test_upload_refusals_are_precise(api):
    t = api.tenant("tenant_1")
    cases = [
        ("bad.json", b'{"type": "object",', None, "schema is not valid JSON"),
        ("bad.json", b'{"type": 12}', None, "not a valid JSON Schema"),
        ("bad.json", b'[1, 2]', None, "JSON object"),
        ("bad.wasm", b"hello, not wasm", None, "not a valid jobicolet module"),
        ("bad.wasm", wat(FORBIDDEN_IMPORT), None, "env.socket"),
        ("empty.wasm", b"", None, "empty"),
        ("notes.txt", b"hi", None, "extension"),
        ("x.wasm", wasm("echo"), "zip", "kind"),
        ("..secret.json", b"{}", None, "file name"),
        ("..%2F..%2Fetc%2Fpasswd", b"{}", "schema", "file name"),
        ("a%2Fb.json", b"{}", None, "no directories"),
    ]
    for name, data, kind, text in cases:
        r = api.upload(t, name, data, kind)
        body = r.get_json()
        assert r.status_code == 422, (name, body)
        assert text in body["message"], (name, body)
    r = api.upload(t, "bad.wasm", wat(FORBIDDEN_IMPORT))
    assert "unsupported import `env.socket`" in r.get_json()["message"]
    assert api.client.get("/api/v1/files", headers=t.headers).get_json()["items"] == []
    # too large: 413 (limit 256 KB), refused from Content-Length before reading
    r = api.upload(t, "big.wasm", b"\0asm" + b"\0" * (300 * 1024))
    assert r.status_code == 413 and "256 KB" in r.get_json()["message"]
    # without credentials nothing is looked at
    r = api.client.put("/api/v1/files/x.json", data=b"{}")
    assert r.status_code == 401


def test_deploy_refusals(api):
    t = api.tenant("tenant_1")
    assert api.upload(t, "echo.wasm", wasm("echo")).status_code == 201
    # a referenced file is missing: named in the message
    r = api.deploy(t, PACKAGE)
    assert r.status_code == 422 and "person.json" in r.get_json()["message"], r.get_json()
    assert any("schemaref" in p["path"] for p in r.get_json()["errors"]["package"]), r.get_json()
    assert api.upload(t, "person.json", PERSON_SCHEMA).status_code == 201
    # an unknown key, with a suggestion
    r = api.deploy(t, PACKAGE.replace("supplierqueue:", "supplierqueu:"))
    assert r.status_code == 422
    assert "did you mean 'supplierqueue'" in r.get_json()["message"]
    # a form instead of the raw YAML
    r = api.client.post("/api/v1/packages", data={"file": PACKAGE}, headers=t.headers)
    assert r.status_code == 415 and "application/yaml" in r.get_json()["message"]
    # not YAML
    r = api.deploy(t, "id: [unclosed")
    assert r.status_code == 422 and "not valid YAML" in r.get_json()["message"]
    # a module file where a schema is expected
    r = api.deploy(t, PACKAGE.replace("schemaref: person.json", "schemaref: echo.wasm"))
    assert r.status_code == 422 and "not a schema" in r.get_json()["message"]

    r = api.deploy(t, PACKAGE)
    assert r.status_code == 201
    # the same id again: 409, use redeploy
    r = api.deploy(t, PACKAGE)
    assert r.status_code == 409 and "use redeploy" in r.get_json()["message"]
    # an event id owned by another package: 409 naming both
    r = api.deploy(t, package_yaml("other", "person_added"))
    msg = r.get_json()["message"]
    assert r.status_code == 409 and "'person_added'" in msg and "'people'" in msg and "'other'" in msg
    assert api.client.get("/api/v1/packages/other", headers=t.headers).status_code == 404
    # redeploy of an unknown package, and an id that differs from the URL
    r = api.deploy(t, package_yaml("ghost", "ghost_ev"), package="ghost")
    assert r.status_code == 404
    r = api.deploy(t, package_yaml("people", "person_added"), package="someone")
    assert r.status_code == 422 and "'people'" in r.get_json()["message"]
    # the tenant declared in the package must be the caller
    r = api.deploy(t, "tenant: tenant_2\n" + package_yaml("p3", "ev3"))
    assert r.status_code == 422 and "tenant_2" in r.get_json()["message"]


def test_redeploy_rollback_and_pinned_schemas(api):
    t = api.deployed_tenant("tenant_1")
    c = api.client
    v1 = c.get("/api/v1/packages/people", headers=t.headers).get_json()
    assert v1["active_version"] == 1 and v1["version"]["number"] == 1
    assert v1["version"]["source"] == PACKAGE and v1["version"]["spec"]["id"] == "people"
    old_pin = v1["version"]["pins"]["person.json"]
    assert old_pin == hashlib.sha256(json.dumps(PERSON_SCHEMA).encode()).hexdigest()

    # re-upload the schema: version 1 keeps its pin, so events still validate the old way
    v2_schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    assert api.upload(t, "person.json", v2_schema).status_code == 201
    assert api.post_events("tenant_1", "person_added", {"data": [{"name": "a"}]}, t.headers).status_code == 200
    assert api.post_events("tenant_1", "person_added", {"data": [{"age": 1}]}, t.headers).status_code == 422

    r = api.deploy(t, PACKAGE, package="people")
    assert r.status_code == 201, r.get_json()
    v2 = r.get_json()
    assert v2["active_version"] == 2 and v2["version"]["number"] == 2
    assert v2["version"]["pins"]["person.json"] != old_pin
    assert v2["versions"] == [{"number": 1, "created_at": v1["version"]["created_at"], "active": False},
                              {"number": 2, "created_at": v2["version"]["created_at"], "active": True}]
    # new events validate against the new schema version
    r = api.post_events("tenant_1", "person_added", {"data": [{"name": "a"}]}, t.headers)
    assert r.status_code == 422 and "'age' is a required property" in r.get_json()["message"]
    r = api.post_events("tenant_1", "person_added", {"data": [{"age": 7}]}, t.headers)
    assert r.status_code == 200
    eid = r.get_json()["executions"][0]
    assert c.get(f"/api/v1/executions/{eid}", headers=t.headers).get_json()["version"] == 2

    # show a given version
    r = c.get("/api/v1/packages/people?version=1", headers=t.headers)
    assert r.get_json()["version"]["pins"]["person.json"] == old_pin and r.get_json()["active_version"] == 2
    assert c.get("/api/v1/packages/people?version=9", headers=t.headers).status_code == 404
    assert c.get("/api/v1/packages/people?version=zero", headers=t.headers).status_code == 422

    # rollback to 1: the old schema again
    r = c.post("/api/v1/packages/people/rollback", json={"version": 1}, headers=t.headers)
    assert r.status_code == 200 and r.get_json()["active_version"] == 1
    assert r.get_json()["version"]["number"] == 1
    r = api.post_events("tenant_1", "person_added", {"data": [{"name": "b"}]}, t.headers)
    assert r.status_code == 200
    eid = r.get_json()["executions"][0]
    assert c.get(f"/api/v1/executions/{eid}", headers=t.headers).get_json()["version"] == 1
    assert c.post("/api/v1/packages/people/rollback", json={"version": 5}, headers=t.headers).status_code == 404
    assert c.post("/api/v1/packages/people/rollback", json={}, headers=t.headers).status_code == 422
    assert c.post("/api/v1/packages/ghost/rollback", json={"version": 1}, headers=t.headers).status_code == 404
    assert api.lists() == {"jobico.tenant_1.people.main": 3}


def test_list_and_delete_packages(api):
    t = api.deployed_tenant("tenant_1")
    c = api.client
    assert api.deploy(t, package_yaml("billing", "invoice", extra_events=("refund",))).status_code == 201
    assert api.deploy(t, package_yaml("billing", "invoice"), package="billing").status_code == 201
    items = c.get("/api/v1/packages", headers=t.headers).get_json()["items"]
    assert [(p["id"], p["active_version"], p["versions"]) for p in items] == [("billing", 2, 2), ("people", 1, 1)]
    assert all(p["created_at"] and p["updated_at"] for p in items)
    # version 2 dropped the event `refund`: it no longer routes
    assert api.post_events("tenant_1", "refund", {"data": [{"name": "a"}]}, t.headers).status_code == 404
    assert api.post_events("tenant_1", "invoice", {"data": [{"name": "a"}]}, t.headers).status_code == 200

    assert c.delete("/api/v1/packages/billing", headers=t.headers).status_code == 204
    assert c.delete("/api/v1/packages/billing", headers=t.headers).status_code == 404
    assert c.get("/api/v1/packages/billing", headers=t.headers).status_code == 404
    assert api.post_events("tenant_1", "invoice", {"data": [{"name": "a"}]}, t.headers).status_code == 404
    assert [p["id"] for p in c.get("/api/v1/packages", headers=t.headers).get_json()["items"]] == ["people"]


def test_schedules_are_checked_at_deploy_and_kept_per_version(api):
    t = api.tenant("tenant_1")
    assert api.upload(t, "echo.wasm", wasm("echo")).status_code == 201
    assert api.upload(t, "person.json", PERSON_SCHEMA).status_code == 201

    def scheduled(schedule: str) -> str:
        return PACKAGE.replace("      runtime: echo\n", f"      runtime: echo\n      schedule: {schedule}\n")

    # the payload must be an event the webhook would accept: schema, then size
    r = api.deploy(t, scheduled("{cron: '0 8 * * *', payload: {age: 3}}"))
    body = r.get_json()
    assert r.status_code == 422, body
    [problem] = body["errors"]["package"]
    assert problem["path"] == "events.person_added.schedule.payload"
    assert "does not match schema 'person.json'" in problem["message"] and "'name' is a required" in \
        problem["message"]
    assert "events.person_added.schedule.payload" in body["message"]
    r = api.deploy(t, scheduled("{cron: '0 8 * * *'}"))  # no payload is {}: not a person either
    assert r.status_code == 422 and "'name' is a required" in r.get_json()["message"]
    big = "x" * (api.settings.max_element_kb * 1024 + 1)
    r = api.deploy(t, scheduled(f"{{cron: '0 8 * * *', payload: {{name: {big}}}}}"))
    limit = f"an event may be at most {api.settings.max_element_kb} KB"
    assert r.status_code == 422 and limit in r.get_json()["message"]
    # expression and time zone: named fields, before any file is looked at
    r = api.deploy(t, scheduled("{cron: '0 25 * * *', timezone: Europe/Atlantis, payload: {name: a}}"))
    paths = {p["path"] for p in r.get_json()["errors"]["package"]}
    assert r.status_code == 422 and paths == {"jobs[0].event.schedule.cron", "jobs[0].event.schedule.timezone"}

    r = api.deploy(t, scheduled("{cron: '*/5 * * * * *', timezone: Asia/Tokyo, payload: {name: cron}}"))
    assert r.status_code == 201, r.get_json()
    shown = api.client.get("/api/v1/packages/people", headers=t.headers).get_json()
    assert "schedule:" in shown["version"]["source"]


def test_submitter_header_setting(api):
    api.tenant("tenant_1")
    c, admin = api.client, api.admin
    r = c.patch("/api/v1/tenants/tenant_1", json={"submitter_header": "X-User"}, headers=admin)
    assert r.status_code == 200 and r.get_json()["submitter_header"] == "X-User", r.get_json()
    assert r.get_json()["webhook_auth"] == "key"  # unchanged
    for bad, words in (("Authorization", "already means something"), ("X-Jobico-Signature", "already means"),
                       ("bad header", "HTTP header name"), ("x" * 65, "HTTP header name")):
        r = c.patch("/api/v1/tenants/tenant_1", json={"submitter_header": bad}, headers=admin)
        assert r.status_code == 422 and words in r.get_json()["errors"]["submitter_header"][0], r.get_json()
    r = c.patch("/api/v1/tenants/tenant_1", json={}, headers=admin)
    assert r.status_code == 422
    r = c.patch("/api/v1/tenants/tenant_1", json={"rotate_secret": True, "submitter_header": None}, headers=admin)
    assert r.status_code == 422 and "rotate_secret" in str(r.get_json()["errors"])
    r = c.patch("/api/v1/tenants/ghost", json={"submitter_header": "X-User"}, headers=admin)
    assert r.status_code == 404
    listed = c.get("/api/v1/tenants", headers=admin).get_json()["items"]
    assert listed[0]["submitter_header"] == "X-User"
    r = c.patch("/api/v1/tenants/tenant_1", json={"submitter_header": ""}, headers=admin)
    assert r.status_code == 200 and r.get_json()["submitter_header"] is None


def _zip(members: list[tuple]) -> bytes:
    """members: (path, bytes) or (path, bytes, unix mode)."""
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for m in members:
            zi = zipfile.ZipInfo(m[0])
            zi.compress_type = zipfile.ZIP_DEFLATED
            if len(m) > 2:
                zi.external_attr = m[2] << 16
            zf.writestr(zi, m[1])
    return buf.getvalue()


MAIN = (b"main.py", b"import helpers\n\ndef event(data):\n    return 0, helpers.f(data)\n")


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_python_package_zips_are_refused_naming_the_member(api):
    """A .zip Python package is read in memory (jobico_core.archive, with the Python limits) and
    refused before any interpreter is involved: each refusal a 422 naming the member."""
    import stat
    t = api.tenant("tenant_1")
    main = ("main.py", MAIN[1])
    cases = [
        ("data file", [main, ("prices.csv", b"a,b\n")], "p.zip: prices.csv: only .py files (and directories)"),
        ("bytecode", [main, ("__pycache__/helpers.cpython-315.pyc", b"\0\0")], "leave out __pycache__"),
        ("symlink", [main, ("helpers.py", b"/etc/passwd", stat.S_IFLNK | 0o777)],
         "p.zip: helpers.py: symbolic links are not allowed"),
        ("absolute", [main, ("/etc/helpers.py", b"x = 1\n")], "p.zip: /etc/helpers.py: absolute paths"),
        ("dot-dot", [main, ("../helpers.py", b"x = 1\n")], "p.zip: ../helpers.py: '..' in a path"),
        ("duplicate", [main, ("pkg/a.py", b"x = 1\n"), ("pkg/a.py", b"x = 2\n")], "p.zip: pkg/a.py: a duplicate"),
        ("not UTF-8", [main, ("pkg/a.py", b"x = 1\ny = '\xe9'\n")], "p.zip/pkg/a.py is not UTF-8 (line 2"),
        ("NUL", [main, ("a.py", b"x = 1\0\n")], "p.zip/a.py contains a NUL byte (line 1)"),
        ("too many members", [main, *((f"m{i}.py", b"") for i in range(200))], "more than 200 members"),
        ("too large", [main, ("a.py", b"#" * (600 << 10)), ("b.py", b"#" * (600 << 10))],
         "p.zip: b.py: the archive decompresses to more than 1024 KB"),
        ("bomb", [main, ("a.py", bytes(3 << 20))], "p.zip: a.py: the member is larger than 1024 KB"),
        ("no main.py", [("helpers.py", b"x = 1\n")], "p.zip: no main.py at the zip's root"),
        ("a directory zipped", [("p/main.py", MAIN[1]), ("p/helpers.py", b"x = 1\n")],
         "(it has p/main.py: zip the directory's contents, not the directory)"),
        ("one module twice", [main, ("helpers.py", b""), ("helpers/__init__.py", b"")],
         "helpers.py and helpers/__init__.py both define the module helpers"),
    ]
    for name, members, words in cases:
        r = api.upload(t, "p.zip", _zip(members))
        body = r.get_json()
        assert r.status_code == 422, (name, body)
        assert body["message"].startswith("not a valid Python jobicolet: "), (name, body)
        assert words in body["message"], (name, body)
        assert words in body["errors"]["file"][0], (name, body)
    r = api.upload(t, "p.zip", b"def event(data):\n    return 0, ''\n")
    assert r.status_code == 422 and "p.zip is not a zip archive" in r.get_json()["message"], r.get_json()
    assert api.client.get("/api/v1/files", headers=t.headers).get_json()["items"] == []
