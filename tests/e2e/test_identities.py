"""Identities that never come back (issue 18): a tenant deletes its package, another tenant then
deploys and sends events. Nothing of the first may serve the second: not a row id the database
hands out again, not an entry some process still caches.

Two API processes (two apps, two Contexts) and a real worker process, on SQLite (``make run``'s
database, where the defect was) and on PostgreSQL: the delete is served by one API process, the
other tenant's deploy and events by the other, and the worker ran the first tenant's events, so
every process involved had the deleted package's version cached.
"""
from __future__ import annotations

import pytest
import requests

from jobico_core.db import upgrade_schema
from jobico_core.settings import Settings

from .helpers import ADMIN, EXAMPLES, Platform, platform_env, serve_api

SCHEMA = EXAMPLES / "schemas" / "any.json"


def _package(pkg: str, event: str, module: str) -> str:
    return f"""\
id: {pkg}
queues:
  - id: main
runtimes:
  - id: rt
    moduleref: {module}
jobs:
  - event:
      id: {event}
      schema:
        id: s
        schemaref: any.json
      supplierqueue: main
      runtime: rt
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def two_apis(request, redis_url, tmp_path):
    """(platform on API process 1, URL of API process 2) on the backend of the parameter."""
    if request.param == "sqlite":
        env = {
            "JOBICO_EMBEDDED": "0", "JOBICO_DATABASE_URL": f"sqlite:///{tmp_path / 'jobico.db'}",
            "JOBICO_REDIS_URL": redis_url, "JOBICO_STORAGE_URL": f"file://{tmp_path / 'objects'}",
            "JOBICO_ADMIN_TOKEN": ADMIN, "JOBICO_SECRET_KEY": "secret-key-for-tests-0123456789",
            "JOBICO_DATA_DIR": str(tmp_path / "data"), "JOBICO_CACHE_DIR": str(tmp_path / "cache"),
            "JOBICO_QUEUE_REFRESH": "1", "JOBICO_LOG_LEVEL": "INFO"}
    else:
        pg_url = request.getfixturevalue("pg_url")
        s3, bucket = request.getfixturevalue("s3_server"), request.getfixturevalue("s3_bucket")
        env = platform_env(pg_url, redis_url, s3, bucket, tmp_path)
    settings = Settings.from_env(env)
    upgrade_schema(settings.database_url)
    ctx1, url1, server1 = serve_api(settings)
    ctx2, url2, server2 = serve_api(settings)
    p = Platform(env, settings, ctx1, tmp_path, url1)
    try:
        yield p, url2
    finally:
        for w in p.workers:
            w.stop()
        server1.shutdown()
        server2.shutdown()


def _on(url: str, key: str, method: str, path: str, **kw) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}", **kw.pop("headers", {})}
    return requests.request(method, url + path, headers=headers, timeout=30, **kw)


def _wait_all(p: Platform, key: str, ids: list[str], timeout: float = 90.0) -> list[dict]:
    return [p.wait(key, i, timeout=timeout) for i in ids]


def _executions(url: str, key: str) -> list[dict]:
    r = _on(url, key, "GET", "/api/v1/executions?limit=100")
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_a_deleted_package_serves_nothing_to_the_next_tenant(two_apis):
    p, url2 = two_apis
    p.start_worker("w1", concurrency=1)
    key_a, key_b = p.tenant("ta"), p.tenant("tb")

    # tenant A: deploys, sends (through API 2, run by the worker: both cache A's version), deletes (API 1)
    p.upload(key_a, EXAMPLES / "jobicolets" / "echo.wasm")
    p.upload(key_a, SCHEMA)
    p.deploy(key_a, _package("pa", "ea", "echo.wasm"))
    r = _on(url2, key_a, "POST", "/events/ta/ea", json={"data": [{"n": 1}, {"n": 2}]})
    assert r.status_code == 200, r.text
    a_ids = r.json()["executions"]
    assert {e["status"] for e in _wait_all(p, key_a, a_ids)} == {"succeeded"}
    assert p.call(key_a, "DELETE", "/api/v1/packages/pa").status_code == 204
    a_before = {e["id"] for e in _executions(p.url, key_a)}
    assert a_before == set(a_ids)

    # tenant B: deploys (API 2) and sends (API 2) an event A's package never had
    for name, path in (("greet.wasm", EXAMPLES / "jobicolets" / "greet.wasm"), ("any.json", SCHEMA)):
        assert _on(url2, key_b, "PUT", f"/api/v1/files/{name}", data=path.read_bytes()).status_code == 201
    r = _on(url2, key_b, "POST", "/api/v1/packages", data=_package("pb", "eb", "greet.wasm").encode(),
            headers={"Content-Type": "application/yaml"})
    assert r.status_code == 201, r.text
    assert r.json()["id"] == "pb"
    r = _on(url2, key_b, "POST", "/events/tb/eb", json={"data": [{"name": "Ada"}, {"name": "Bo"}, {"name": "Cy"}]})
    assert r.status_code == 200, r.text
    b_ids = r.json()["executions"]
    done = _wait_all(p, key_b, b_ids)
    assert [(e["tenant"], e["package"], e["event"], e["status"], e["result"]) for e in done] == [
        ("tb", "pb", "eb", "succeeded", f"Hello, {n}!") for n in ("Ada", "Bo", "Cy")]  # B's module ran them
    assert {e["id"] for e in _executions(url2, key_b)} == set(b_ids)

    # A sees nothing new and cannot read B's executions; B's ids are not A's
    assert {e["id"] for e in _executions(p.url, key_a)} == a_before
    assert {e["id"] for e in _executions(url2, key_a)} == a_before
    for i in b_ids:
        assert _on(url2, key_a, "GET", f"/api/v1/executions/{i}").status_code == 404
    # an event B does not have, on either API process: 404 with the error body, not a 500
    for url in (p.url, url2):
        for event in ("ea", "nope"):
            r = _on(url, key_b, "POST", f"/events/tb/{event}", json={"data": [{"n": 1}]})
            assert r.status_code == 404, r.text
            assert event in r.json()["message"]
        r = _on(url, key_a, "POST", "/events/ta/ea", json={"data": [{"n": 1}]})
        assert r.status_code == 404, r.text


def test_a_tenant_recreated_under_its_name_sees_nothing_of_the_old(two_apis):
    p, url2 = two_apis
    p.start_worker("w1", concurrency=1)
    key_old = p.tenant("tx")
    p.upload(key_old, EXAMPLES / "jobicolets" / "echo.wasm")
    p.upload(key_old, SCHEMA)
    assert p.call(key_old, "PUT", "/api/v1/environment/TOKEN", json={"value": "old-secret"}).status_code in (200, 201)
    p.deploy(key_old, _package("pk", "ev", "echo.wasm"))
    r = _on(url2, key_old, "POST", "/events/tx/ev", json={"data": [{"n": 1}]},
            headers={"Idempotency-Key": "k-1"})
    assert r.status_code == 200, r.text
    old_ids = r.json()["executions"]
    _wait_all(p, key_old, old_ids)
    assert p.admin("DELETE", "/api/v1/tenants/tx").status_code == 204

    key_new = p.tenant("tx")
    for url in (p.url, url2):
        assert _on(url, key_old, "GET", "/api/v1/executions").status_code == 401  # the old key is gone
        assert _executions(url, key_new) == []
        assert _on(url, key_new, "GET", "/api/v1/files").json()["items"] == []
        assert _on(url, key_new, "GET", "/api/v1/environment").json()["items"] == []
        assert _on(url, key_new, "GET", "/api/v1/packages").json()["items"] == []
        assert _on(url, key_new, "GET", f"/api/v1/executions/{old_ids[0]}").status_code == 404
        assert _on(url, key_new, "POST", "/events/tx/ev", json={"data": [{"n": 1}]}).status_code == 404
    keys = p.admin("GET", "/api/v1/tenants/tx/keys").json()["items"]
    assert [k["name"] for k in keys] == ["default"]

    # the same package and the same Idempotency-Key again: new executions, run, not the old ids
    p.upload(key_new, EXAMPLES / "jobicolets" / "echo.wasm")
    p.upload(key_new, SCHEMA)
    p.deploy(key_new, _package("pk", "ev", "echo.wasm"))
    r = _on(url2, key_new, "POST", "/events/tx/ev", json={"data": [{"n": 2}]}, headers={"Idempotency-Key": "k-1"})
    assert r.status_code == 200, r.text
    new_ids = r.json()["executions"]
    assert set(new_ids).isdisjoint(old_ids)
    assert [e["result"] for e in _wait_all(p, key_new, new_ids)] == ['{"n":2}']
    assert {e["id"] for e in _executions(url2, key_new)} == set(new_ids)
    # the stream's replay from the start holds only the new tenant's execution
    r = _on(url2, key_new, "GET", "/api/v1/executions/stream?last_event_id=0&follow=false")
    assert r.status_code == 200, r.text
    replayed = [line for line in r.text.splitlines() if line.startswith("data:")]
    assert len(replayed) == 1 and new_ids[0] in replayed[0], r.text
    assert not any(i in r.text for i in old_ids)
