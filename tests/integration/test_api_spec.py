"""The OpenAPI document says what the server does: one test per disagreement schemathesis found (tests/spec).

Each test asks the server and reads the document, so a change to either side alone fails here.
"""
from __future__ import annotations

import io
import json
import re

import jsonschema
import pytest

from jobico_core.names import FILE_RULE, NAME_RULE

from .helpers import package_yaml

pytestmark = pytest.mark.services


@pytest.fixture
def doc(api) -> dict:
    r = api.client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    return r.get_json()


def component(doc: dict, name: str) -> dict:
    return doc["components"]["schemas"][name]


def path_param(doc: dict, path: str, name: str) -> dict:
    return next(p["schema"] for p in doc["paths"][path]["parameters"] if p["name"] == name)


def as_json_schema(node):
    """OpenAPI 3.0's ``nullable`` in JSON Schema terms (the documents are otherwise JSON Schema)."""
    if isinstance(node, dict):
        out = {k: as_json_schema(v) for k, v in node.items() if k != "nullable"}
        if node.get("nullable") and "type" in node:
            out["type"] = [node["type"], "null"]
        return out
    if isinstance(node, list):
        return [as_json_schema(v) for v in node]
    return node


def validate(doc: dict, instance, schema: dict) -> None:
    root = as_json_schema({**schema, "components": doc["components"]})
    jsonschema.Draft7Validator(root).validate(instance)


def assert_error_body(doc: dict, r, status: int, where: str | None = None) -> dict:
    assert r.status_code == status, r.get_data(as_text=True)
    assert r.mimetype == "application/json"
    body = r.get_json()
    validate(doc, body, {"$ref": "#/components/schemas/Error"})
    assert body["code"] == status
    if where is not None:
        assert where in json.dumps(body["errors"]), body
    return body


# -- booleans are booleans ----------------------------------------------------------------------------

def test_a_number_is_not_a_boolean(api, doc):
    api.tenant("tenant_1")
    for body in ({"webhook_auth": "hmac", "rotate_secret": 0}, {"webhook_auth": "hmac", "rotate_secret": 1},
                 {"webhook_auth": "hmac", "rotate_secret": "yes"}):
        r = api.client.patch("/api/v1/tenants/tenant_1", json=body, headers=api.admin)
        assert_error_body(doc, r, 422, "rotate_secret")
    assert component(doc, "TenantPatch")["properties"]["rotate_secret"]["type"] == "boolean"
    r = api.client.patch("/api/v1/tenants/tenant_1", json={"webhook_auth": "hmac", "rotate_secret": True},
                         headers=api.admin)
    assert r.status_code == 200 and r.get_json()["signing_secret"]

    t = api.tenant("tenant_2")
    r = api.client.put("/api/v1/environment/TOKEN", json={"value": "x", "secret": 0}, headers=t.headers)
    assert_error_body(doc, r, 422, "secret")
    r = api.client.get("/api/v1/executions/stream?follow=1", headers=t.headers)
    assert_error_body(doc, r, 422, "follow")


def test_an_empty_patch_is_refused_and_the_document_says_so(api, doc):
    api.tenant("tenant_1")
    for body in ({}, {"rotate_secret": True}, {"submitter_header": "X-Submitter", "rotate_secret": True}):
        r = api.client.patch("/api/v1/tenants/tenant_1", json=body, headers=api.admin)
        assert_error_body(doc, r, 422)
        with pytest.raises(jsonschema.ValidationError):
            validate(doc, body, component(doc, "TenantPatch"))
    validate(doc, {"submitter_header": "X-Submitter"}, component(doc, "TenantPatch"))


# -- names: the server's rules, in the document ------------------------------------------------------

def test_names_breaking_the_rule_are_422_and_the_rule_is_in_the_document(api, doc):
    assert component(doc, "TenantCreate")["properties"]["id"]["pattern"] == NAME_RULE
    assert component(doc, "KeyCreate")["properties"]["name"]["pattern"] == NAME_RULE
    for path, name in [("/api/v1/tenants/{tenant}", "tenant"), ("/api/v1/tenants/{tenant}/keys/{name}", "name"),
                       ("/api/v1/environment/{name}", "name"), ("/api/v1/packages/{package}", "package")]:
        schema = path_param(doc, path, name)
        assert schema["pattern"] == NAME_RULE and schema["maxLength"] == 64, (path, schema)
    assert path_param(doc, "/api/v1/files/{name}", "name")["pattern"] == FILE_RULE

    for bad in ("-lead", "a" * 65, "sp ace", "ünï"):
        r = api.client.post("/api/v1/tenants", json={"id": bad}, headers=api.admin)
        assert_error_body(doc, r, 422)
        assert NAME_RULE in r.get_json()["message"]
        assert not re.fullmatch(NAME_RULE, bad)
    t = api.tenant("tenant_1")
    r = api.client.post("/api/v1/tenants/tenant_1/keys", json={"name": "no/slash"}, headers=api.admin)
    assert_error_body(doc, r, 422)
    for bad in ("a..b", "-x.json"):  # the document's pattern refuses them as the server does
        assert not re.fullmatch(FILE_RULE, bad)
        r = api.upload(t, bad, {"type": "object"})
        assert_error_body(doc, r, 422, "name")
    assert re.fullmatch(FILE_RULE, "a.b-c_d.json")


def test_a_submitter_header_is_a_header_name_whole(api, doc):
    api.tenant("tenant_1")
    pattern = component(doc, "TenantPatch")["properties"]["submitter_header"]["pattern"]
    for bad in ("X-Sub\n", "X Sub", "x" * 65):
        assert not re.fullmatch(pattern, bad)
        r = api.client.patch("/api/v1/tenants/tenant_1", json={"submitter_header": bad}, headers=api.admin)
        assert_error_body(doc, r, 422, "submitter_header")
    for good in ("X-Submitter", ""):
        assert re.fullmatch(pattern, good)
        r = api.client.patch("/api/v1/tenants/tenant_1", json={"submitter_header": good}, headers=api.admin)
        assert r.status_code == 200, r.get_json()


# -- routing ------------------------------------------------------------------------------------------

def test_packages_archive_is_the_publishing_route_only(api, doc):
    t = api.deployed_tenant("tenant_1")
    r = api.client.options("/api/v1/packages/archive", headers=t.headers)
    assert set(r.headers["Allow"].replace(" ", "").split(",")) == {"POST", "OPTIONS"}
    assert set(doc["paths"]["/api/v1/packages/archive"]) == {"post"}
    for method in ("GET", "PUT", "DELETE"):
        r = api.client.open("/api/v1/packages/archive", method=method, headers=t.headers)
        body = assert_error_body(doc, r, 405)
        assert r.headers["Allow"] and body["message"]
    # so no package may be called archive, and the document says so
    assert path_param(doc, "/api/v1/packages/{package}", "package")["not"] == {"enum": ["archive"]}
    r = api.deploy(t, package_yaml("archive"))
    assert_error_body(doc, r, 422, "reserved")
    r = api.client.options("/api/v1/packages/people", headers=t.headers)
    assert set(r.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "PUT", "DELETE"}


def test_a_files_content_url_is_the_download_route_only(api, doc):
    t = api.deployed_tenant("tenant_1")
    r = api.client.options("/api/v1/files/echo.wasm/content", headers=t.headers)
    assert set(r.headers["Allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "OPTIONS"}
    assert set(doc["paths"]["/api/v1/files/{name}/content"]) == {"get", "parameters"}
    r = api.client.put("/api/v1/files/echo.wasm/content", data=b"x", headers=t.headers)
    assert_error_body(doc, r, 405)
    # a name with a directory still reaches the handler, which says why it is refused
    r = api.upload(t, "a%2Fb.json", {"type": "object"})
    assert_error_body(doc, r, 422, "no directories")
    # and a file may be called "content"
    assert api.upload(t, "content", {"type": "object"}, kind="schema").status_code == 201
    assert api.client.get("/api/v1/files/content", headers=t.headers).get_json()["name"] == "content"


# -- content types ------------------------------------------------------------------------------------

def test_downloads_and_uploads_have_the_documented_content_types(api, doc):
    t = api.deployed_tenant("tenant_1")
    documented = doc["paths"]["/api/v1/files/{name}/content"]["get"]["responses"]["200"]["content"]
    for name, media in (("echo.wasm", "application/wasm"), ("person.json", "application/json")):
        r = api.client.get(f"/api/v1/files/{name}/content", headers=t.headers)
        assert r.status_code == 200 and r.mimetype == media and media in documented
    assert set(documented) == {"application/wasm", "application/json", "text/x-python", "application/zip"}
    uploads = doc["paths"]["/api/v1/files/{name}"]["put"]["requestBody"]["content"]
    assert {"application/octet-stream", "application/wasm", "application/json"} <= set(uploads)
    # the bytes are the file, so a form (its envelope is not the file) is refused
    r = api.client.put("/api/v1/files/x.json", data={"file": (io.BytesIO(b"{}"), "x.json")}, headers=t.headers,
                       content_type="multipart/form-data")
    assert_error_body(doc, r, 415, "body")
    assert "415" in doc["paths"]["/api/v1/files/{name}"]["put"]["responses"]


def test_every_error_answer_is_documented_with_the_error_body(api, doc):
    t = api.tenant("tenant_1")
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if method == "parameters":
                continue
            assert "default" in op["responses"], (path, method)
            for code, resp in op["responses"].items():
                if code.startswith(("4", "5")) and code != "503" or code == "default":
                    ref = resp.get("$ref", "")
                    resp = doc["components"]["responses"][ref.rsplit("/", 1)[1]] if ref else resp
                    assert "application/json" in resp["content"], (path, method, code)
            if op.get("security") and {} not in op["security"]:
                assert "401" in op["responses"], (path, method)
    # and the bodies are that schema
    assert_error_body(doc, api.client.get("/api/v1/files"), 401)
    assert_error_body(doc, api.client.get("/api/v1/files", headers=api.admin), 403)
    assert_error_body(doc, api.client.get("/api/v1/tenants", headers=t.headers), 403)
    assert_error_body(doc, api.client.get("/api/v1/packages/nope", headers=t.headers), 404)
    assert_error_body(doc, api.client.get("/api/v1/executions?limit=0", headers=t.headers), 422, "limit")
    assert_error_body(doc, api.client.get("/api/v1/executions?cursor=garbage", headers=t.headers), 400, "cursor")


# -- the live stream ----------------------------------------------------------------------------------

def frames(text: str) -> list[dict[str, str]]:
    out = []
    for block in text.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            if line and not line.startswith(":"):
                key, _, value = line.partition(": ")
                fields[key] = value
        if fields:
            out.append(fields)
    return out


def test_the_stream_is_typed_text_event_stream_with_execution_events(api, doc):
    t = api.deployed_tenant("tenant_1")
    (eid,) = api.post_events("tenant_1", "person_added", {"data": [{"name": "Ada"}]}, t.headers).get_json()[
        "executions"]
    r = api.client.post(f"/api/v1/executions/{eid}/cancel", json={"wait": 0}, headers=t.headers)
    assert r.status_code == 200 and r.get_json()["cancel"] == "cancelled_queued"

    media = doc["paths"]["/api/v1/executions/stream"]["get"]["responses"]["200"]["content"]
    assert list(media) == ["text/event-stream"]
    item = media["text/event-stream"]["x-itemSchema"]
    r = api.client.get("/api/v1/executions/stream?follow=false&recent=5", headers=t.headers)
    assert r.status_code == 200 and r.mimetype == "text/event-stream"
    events = [f for f in frames(r.get_data(as_text=True)) if "event" in f]
    assert len(events) == 1
    event = {**events[0], "data": json.loads(events[0]["data"])}
    validate(doc, event, item)  # id, event: execution, data: an Execution
    validate(doc, events[0], media["text/event-stream"]["schema"])  # as sent: data is the record's JSON text
    assert event["data"]["id"] == eid and event["data"]["status"] == "cancelled"
    with pytest.raises(jsonschema.ValidationError):
        validate(doc, {**event, "data": {"id": 1}}, item)


def test_the_streams_parameters_are_all_in_the_document(api, doc):
    """The Last-Event-ID header once replaced the query parameters in the document: both are there."""
    params = {(p["in"], p["name"]) for p in doc["paths"]["/api/v1/executions/stream"]["get"]["parameters"]}
    assert params == {("header", "Last-Event-ID"), *(("query", n) for n in
                                                      ("package", "event", "status", "last_event_id", "recent",
                                                       "follow"))}
    t = api.deployed_tenant("tenant_1")
    r = api.client.get("/api/v1/executions/stream?follow=false", headers={**t.headers, "Last-Event-ID": "x"})
    assert r.status_code == 400 and r.get_json()["errors"] == {"Last-Event-ID": ["x"]}


def test_stream_positions_beyond_a_bigint_are_refused(api, doc):
    t = api.tenant("tenant_1")
    r = api.client.get(f"/api/v1/executions/stream?follow=false&last_event_id={2**63}", headers=t.headers)
    assert_error_body(doc, r, 422, "last_event_id")
    r = api.client.get("/api/v1/executions/stream?follow=false", headers={**t.headers, "Last-Event-ID": str(2**63)})
    assert_error_body(doc, r, 400, "Last-Event-ID")
    r = api.client.get(f"/api/v1/executions/stream?follow=false&last_event_id={2**63 - 1}", headers=t.headers)
    assert r.status_code == 200

