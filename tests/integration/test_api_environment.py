"""Stored environment variables through the API: validation, masking, tenant isolation, deploy checks."""
from __future__ import annotations

import json
import logging

import pytest

from .helpers import PERSON_SCHEMA, package_yaml, wasm

pytestmark = pytest.mark.services

SECRET = "tok-9f8e7d6c5b4a-very-secret"


def put(api, t, name, body):
    return api.client.put(f"/api/v1/environment/{name}", json=body, headers=t.headers)


def test_set_list_unset_and_the_value_never_comes_back(api, caplog):
    caplog.set_level(logging.DEBUG)
    t = api.tenant("env1")
    r = put(api, t, "api-token", {"value": SECRET, "secret": True})
    assert r.status_code == 200, r.get_json()
    first = r.get_json()
    assert first["value"] == "***" and first["secret"] is True and first["key_id"] and first["updated_at"]
    r = put(api, t, "region", {"value": "eu-west", "secret": False})
    assert r.get_json()["value"] == "eu-west"
    r = put(api, t, "api-token", {"value": SECRET + "-2"})          # secret by default; a rotation
    assert r.get_json()["updated_at"] >= first["updated_at"]
    items = api.client.get("/api/v1/environment", headers=t.headers).get_json()["items"]
    assert [(v["name"], v["value"], v["secret"]) for v in items] == [("api-token", "***", True),
                                                                     ("region", "eu-west", False)]
    assert SECRET not in json.dumps(items)
    assert SECRET not in caplog.text                                  # not in any log line of the API
    assert api.client.delete("/api/v1/environment/region", headers=t.headers).status_code == 204
    r = api.client.delete("/api/v1/environment/region", headers=t.headers)
    assert r.status_code == 404 and "region" in r.get_json()["message"]


@pytest.mark.parametrize("name, body, field, words", [
    ("../x", {"value": "v"}, "name", "not valid"),
    ("a" * 65, {"value": "v"}, "name", "not valid"),
    ("ok", {"value": "x" * 4097}, "value", "longer than 4096 bytes"),
    ("ok", {"value": "a\u0000b"}, "value", "NUL"),
    ("ok", {}, "value", ""),
    ("ok", {"value": 3}, "value", ""),
])
def test_bad_input_is_a_422_naming_the_field(api, name, body, field, words):
    t = api.tenant("env2")
    r = put(api, t, name, body)
    assert r.status_code in (404, 422), r.get_json()
    if r.status_code == 422:
        b = r.get_json()
        assert field in json.dumps(b["errors"]) and words in b["message"] + json.dumps(b["errors"]), b


def test_tenants_never_see_or_reference_each_others_variables(api):
    a, b = api.tenant("enva"), api.tenant("envb")
    assert put(api, a, "api-token", {"value": SECRET}).status_code == 200
    assert api.client.get("/api/v1/environment", headers=b.headers).get_json()["items"] == []
    assert api.client.delete("/api/v1/environment/api-token", headers=b.headers).status_code == 404
    api.upload(b, "echo.wasm", wasm("echo"))
    api.upload(b, "person.json", PERSON_SCHEMA)
    source = package_yaml().replace("id: people\n", "id: people\nenvironment: {TOKEN: {secret: api-token}}\n", 1)
    r = api.deploy(b, source)
    assert r.status_code == 422, r.get_json()
    assert r.get_json()["errors"]["package"] == [
        {"path": "environment.TOKEN.secret",
         "message": "secret 'api-token' is not set for tenant 'envb' (set it with `jobico env set api-token "
                    "--secret`)"}]
    assert put(api, b, "api-token", {"value": "b's own"}).status_code == 200
    r = api.deploy(b, source)
    assert r.status_code == 201, r.get_json()
    version = r.get_json()["version"]
    assert version["spec"]["environment"] == {"TOKEN": {"secret": "api-token"}}
    assert SECRET not in json.dumps(r.get_json()) and "b's own" not in json.dumps(r.get_json())
