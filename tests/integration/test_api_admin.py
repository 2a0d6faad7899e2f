"""Admin API (tenants, keys), authentication, app factory, errors, health, OpenAPI."""
from __future__ import annotations

import pytest

from jobico_core.settings import ConfigError, Settings

from .helpers import ADMIN_TOKEN

pytestmark = pytest.mark.services


def test_admin_creates_tenant_and_key_and_keys_authenticate(api):
    c = api.client
    r = c.post("/api/v1/tenants", json={"id": "tenant_1"}, headers=api.admin)
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert body["tenant"] == "tenant_1" and body["key_name"] == "default" and body["webhook_auth"] == "key"
    assert body["key"].startswith("jbk_") and body["signing_secret"] is None
    key1 = body["key"]

    r = c.get("/api/v1/whoami", headers={"Authorization": f"Bearer {key1}"})
    assert r.status_code == 200 and r.get_json() == {"tenant": "tenant_1", "key_name": "default"}
    assert c.get("/api/v1/whoami", headers=api.admin).get_json() == {"admin": True}

    r = c.post("/api/v1/tenants/tenant_1/keys", json={"name": "ci"}, headers=api.admin)
    assert r.status_code == 201
    key2 = r.get_json()["key"]
    assert key2 != key1 and r.get_json()["prefix"] == key2[:12]
    assert c.get("/api/v1/whoami", headers={"Authorization": f"Bearer {key2}"}).get_json()["key_name"] == "ci"

    r = c.get("/api/v1/tenants/tenant_1/keys", headers=api.admin)
    items = r.get_json()["items"]
    assert [k["name"] for k in items] == ["ci", "default"]
    assert all("key" not in k and "key_hash" not in k for k in items)  # no secrets

    assert c.post("/api/v1/tenants/tenant_1/keys", json={"name": "ci"}, headers=api.admin).status_code == 409
    assert c.delete("/api/v1/tenants/tenant_1/keys/ci", headers=api.admin).status_code == 204
    r = c.get("/api/v1/whoami", headers={"Authorization": f"Bearer {key2}"})
    assert r.status_code == 401 and "not known" in r.get_json()["message"]
    assert c.delete("/api/v1/tenants/tenant_1/keys/ci", headers=api.admin).status_code == 404

    r = c.get("/api/v1/tenants", headers=api.admin)
    assert [t["id"] for t in r.get_json()["items"]] == ["tenant_1"]
    assert c.get("/api/v1/tenants/tenant_1", headers=api.admin).get_json()["webhook_auth"] == "key"
    assert c.get("/api/v1/tenants/nope", headers=api.admin).status_code == 404


def test_tenant_creation_validates(api):
    c = api.client
    r = c.post("/api/v1/tenants", json={"id": "bad/name"}, headers=api.admin)
    assert r.status_code == 422 and "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$" in r.get_json()["message"]
    r = c.post("/api/v1/tenants", json={"id": "t1", "webhook_auth": "magic"}, headers=api.admin)
    body = r.get_json()
    assert r.status_code == 422 and body["code"] == 422 and body["status"] == "Unprocessable Entity"
    assert "webhook_auth" in body["errors"]["json"] and "webhook_auth" in body["message"]
    r = c.post("/api/v1/tenants", json={}, headers=api.admin)
    assert r.status_code == 422 and "id" in r.get_json()["errors"]["json"]
    assert c.post("/api/v1/tenants", json={"id": "t1"}, headers=api.admin).status_code == 201
    r = c.post("/api/v1/tenants", json={"id": "t1"}, headers=api.admin)
    assert r.status_code == 409 and "already exists" in r.get_json()["message"]


def test_admin_routes_need_the_admin_token(api):
    t = api.tenant("tenant_1")
    c = api.client
    r = c.get("/api/v1/tenants")
    assert r.status_code == 401 and r.get_json()["code"] == 401
    assert c.get("/api/v1/tenants", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/api/v1/tenants", headers={"Authorization": f"Basic {ADMIN_TOKEN}"}).status_code == 401
    r = c.get("/api/v1/tenants", headers=t.headers)
    assert r.status_code == 403 and "admin token" in r.get_json()["message"]
    assert c.post("/api/v1/tenants", json={"id": "x"}, headers=t.headers).status_code == 403
    assert c.post("/api/v1/tenants/tenant_1/keys", json={"name": "x"}, headers=t.headers).status_code == 403
    # auth is checked before the body is validated
    assert c.post("/api/v1/tenants", json={"id": 5}).status_code == 401


def test_admin_token_reads_no_tenant_data(api):
    api.deployed_tenant("tenant_1")
    c = api.client
    for path in ("/api/v1/files", "/api/v1/files/echo.wasm", "/api/v1/packages", "/api/v1/packages/people",
                 "/api/v1/executions"):
        r = c.get(path, headers=api.admin)
        assert r.status_code == 403, path
        assert "admin token cannot" in r.get_json()["message"]
    # ...nor post events as a tenant
    r = api.post_events("tenant_1", "person_added", {"data": [{"name": "a"}]}, api.admin)
    assert r.status_code == 401


def test_patch_tenant_webhook_mode_and_rotate_secret(api):
    api.tenant("tenant_1")
    c = api.client
    r = c.patch("/api/v1/tenants/tenant_1", json={"webhook_auth": "hmac"}, headers=api.admin)
    assert r.status_code == 200
    secret = r.get_json()["signing_secret"]
    assert r.get_json()["webhook_auth"] == "hmac" and len(secret) >= 32
    r = c.patch("/api/v1/tenants/tenant_1", json={"webhook_auth": "hmac"}, headers=api.admin)
    assert r.get_json()["signing_secret"] == secret
    r = c.patch("/api/v1/tenants/tenant_1", json={"webhook_auth": "hmac", "rotate_secret": True}, headers=api.admin)
    assert r.get_json()["signing_secret"] not in (secret, None)
    assert "signing_secret" not in c.get("/api/v1/tenants/tenant_1", headers=api.admin).get_json()
    r = c.patch("/api/v1/tenants/tenant_1", json={"webhook_auth": "none"}, headers=api.admin)
    assert r.get_json()["webhook_auth"] == "none" and r.get_json()["signing_secret"] is None
    assert c.patch("/api/v1/tenants/nope", json={"webhook_auth": "none"}, headers=api.admin).status_code == 404


def test_delete_tenant_revokes_its_keys(api):
    t = api.deployed_tenant("tenant_1")
    c = api.client
    assert c.delete("/api/v1/tenants/tenant_1", headers=api.admin).status_code == 204
    assert c.get("/api/v1/whoami", headers=t.headers).status_code == 401
    r = api.post_events("tenant_1", "person_added", {"data": [{"name": "a"}]}, t.headers)
    assert r.status_code == 404
    assert c.delete("/api/v1/tenants/tenant_1", headers=api.admin).status_code == 404


def test_a_tenant_re_created_under_a_deleted_ones_id_sees_none_of_its_data(api):
    t = api.deployed_tenant("tenant_1")
    ids = api.post_events("tenant_1", "person_added", {"data": [{"name": "a"}]}, t.headers).get_json()["executions"]
    assert api.client.get(f"/api/v1/executions/{ids[0]}", headers=t.headers).status_code == 200
    assert api.client.delete("/api/v1/tenants/tenant_1", headers=api.admin).status_code == 204
    assert api.executions_in_db() == []
    again = api.tenant("tenant_1")
    assert api.client.get(f"/api/v1/executions/{ids[0]}", headers=again.headers).status_code == 404
    assert api.client.get("/api/v1/executions", headers=again.headers).get_json()["items"] == []
    assert api.client.get("/api/v1/files", headers=again.headers).get_json()["items"] == []


def test_unknown_routes_and_methods_are_json(api):
    c = api.client
    r = c.get("/api/v1/nothing-here")
    assert r.status_code == 404 and r.content_type == "application/json"
    body = r.get_json()
    assert set(body) == {"code", "status", "message", "errors"}
    assert body["code"] == 404 and body["status"] == "Not Found" and "/api/v1/nothing-here" in body["message"]
    r = c.delete("/health")
    assert r.status_code == 405 and r.get_json()["code"] == 405 and "GET" in r.headers["Allow"]
    r = c.post("/api/v1/tenants", data="{not json", headers={**api.admin, "Content-Type": "application/json"})
    assert r.status_code in (400, 422) and r.content_type == "application/json"


def test_health_and_ready(api):
    r = api.client.get("/health")
    assert r.status_code == 200 and r.get_json() == {"status": "ok"}
    r = api.client.get("/ready")
    body = r.get_json()
    assert r.status_code == 200, body
    assert body["status"] == "ok" and body["failed"] == []
    assert {k: v["status"] for k, v in body["checks"].items()} == \
        {"database": "ok", "redis": "ok", "object_store": "ok"}


def test_ready_503_names_the_dependency_that_is_down(make_api):
    from jobico_ops.embedded import free_port

    dead_redis = make_api(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    r = dead_redis.client.get("/ready")
    body = r.get_json()
    assert r.status_code == 503 and r.headers["Retry-After"]
    assert body["failed"] == ["redis"] and body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["redis"]["status"] == "down"

    dead_db = make_api(database_url=f"postgresql+psycopg://x:y@127.0.0.1:{free_port()}/nodb")
    r = dead_db.client.get("/ready")
    assert r.status_code == 503 and r.get_json()["failed"] == ["database"]
    assert "y@" not in r.get_data(as_text=True)  # no credentials in a public answer
    # liveness does not depend on anything
    assert dead_db.client.get("/health").status_code == 200
    # and a request needing the database is a 503 with Retry-After, not a 500
    r = dead_db.client.get("/api/v1/files", headers={"Authorization": "Bearer jbk_whatever"})
    assert r.status_code == 503 and r.headers["Retry-After"] and r.get_json()["code"] == 503


def test_openapi_document_and_docs(api):
    r = api.client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    doc = r.get_json()
    assert doc["openapi"] == "3.0.3" and doc["info"]["title"] == "Jobico"
    paths = doc["paths"]
    for path, method in [("/api/v1/tenants", "post"), ("/api/v1/tenants/{tenant}", "patch"),
                         ("/api/v1/tenants/{tenant}/keys", "post"), ("/api/v1/whoami", "get"),
                         ("/api/v1/files/{name}", "put"), ("/api/v1/files", "get"),
                         ("/api/v1/files/{name}/content", "get"), ("/api/v1/packages", "post"),
                         ("/api/v1/packages/{package}", "put"), ("/api/v1/packages/{package}/rollback", "post"),
                         ("/api/v1/packages/{package}", "delete"), ("/api/v1/executions", "get"),
                         ("/api/v1/executions/{execution_id}", "get"), ("/events/{tenant}/{event}", "post"),
                         ("/health", "get"), ("/ready", "get")]:
        assert method in paths.get(path, {}), (path, method)
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        **doc["components"]["securitySchemes"]["bearerAuth"], "type": "http", "scheme": "bearer"}
    webhook = paths["/events/{tenant}/{event}"]["post"]
    assert {"200", "400", "401", "403", "404", "413", "422", "503"} <= set(webhook["responses"])
    assert "requestBody" in webhook
    r = api.client.get("/docs")
    assert r.status_code == 200 and b"/api/v1/openapi.json" in r.data


def test_create_app_refuses_a_bad_configuration(api_settings):
    from jobico_api import create_app

    with pytest.raises(ConfigError, match="JOBICO_ADMIN_TOKEN"):
        create_app(api_settings.replace(admin_token=""))
    with pytest.raises(ConfigError, match="JOBICO_SECRET_KEY"):
        create_app(api_settings.replace(secret_key="short"))
    # the embedded default may run with generated credentials
    app = create_app(Settings.from_env({}, embedded=True, data_dir=api_settings.data_dir,
                                       storage_url=f"file://{api_settings.data_dir / 'objects'}"))
    assert app.test_client().get("/health").status_code == 200


def test_unexpected_errors_are_a_generic_500_logged_with_traceback(make_api, caplog):
    api = make_api()

    def boom():
        raise RuntimeError("secret internal detail")

    api.app.add_url_rule("/boom", view_func=boom)
    api.app.testing = False  # as in production: no exception propagation
    with caplog.at_level("ERROR"):
        r = api.client.get("/boom")
    assert r.status_code == 500 and r.content_type == "application/json"
    body = r.get_json()
    assert body["code"] == 500 and body["status"] == "Internal Server Error" and body["errors"] == {}
    assert "secret internal detail" not in r.get_data(as_text=True) and "Traceback" not in r.get_data(as_text=True)
    assert any(rec.exc_info and "secret internal detail" in str(rec.exc_info[1]) for rec in caplog.records)


def test_max_content_length_is_a_json_413(make_api):
    api = make_api(max_body_kb=8, max_upload_kb=8)
    big = b'{"id": "' + b"x" * (1200 * 1024) + b'"}'  # above the 1 MB package source room
    r = api.client.post("/api/v1/tenants", data=big, headers={**api.admin, "Content-Type": "application/json"})
    assert r.status_code == 413 and r.get_json()["code"] == 413 and r.get_json()["status"] == "Request Entity Too Large"
