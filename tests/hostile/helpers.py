"""The hostile-input corpus: one shared world (app, tenants, a deployed package and an
accepted execution) on the REAL PostgreSQL/Redis/S3 session servers, built with the
API helpers of ``tests/integration/conftest.py``.

Every corpus case goes through ``World.refused(...)``: the answer has the expected
status, is JSON in flask-smorest's error shape, says what is wrong (message
fragments), never leaks a traceback/HTML, and nothing was recorded or enqueued.
Each corpus module ends with ``World.assert_intact()``: the execution and package
accepted before the corpus are unchanged and a good request still works.
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from sqlalchemy import func, select

from jobico_core.settings import Settings
from tests.conftest import _redis_db_numbers
from tests.integration.conftest import (  # noqa: F401  (fixtures re-exported for this package)
    ADMIN_TOKEN, PACKAGE, PERSON_SCHEMA, SECRET_KEY, ApiHarness, TenantHandle,
    package_yaml, wasm,
)

GOOD = {"data": [{"name": "Ada", "age": 36}]}
# The statuses the contract (and docs/api.md) allow an endpoint to answer.
CONTRACT_STATUSES = {200, 201, 204, 400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 503}
LEAKS = ("Traceback (most recent call last)", "<html", "<!doctype", 'File "/', "sqlalchemy.", "psycopg.")


def assert_error(r, status: int, *fragments: str) -> dict:
    """``r`` is a JSON error of ``status`` whose message contains every fragment."""
    raw = r.get_data()
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {raw[:600]!r}"
    assert r.mimetype == "application/json", f"not JSON ({r.mimetype}): {raw[:300]!r}"
    body = json.loads(raw)
    assert set(body) >= {"code", "status", "message", "errors"}, body
    assert body["code"] == status and isinstance(body["message"], str) and body["message"], body
    text = raw.decode("utf-8", "replace")
    for leak in LEAKS:
        assert leak.lower() not in text.lower(), f"leaks {leak!r}: {text[:600]}"
    for f in fragments:
        assert f.lower() in body["message"].lower(), f"{f!r} not in message {body['message']!r}"
    return body


@dataclass
class World:
    api: ApiHarness = field(repr=False)
    acme: TenantHandle            # key mode: echo.wasm, person.json, package `people` (event person_added)
    other: TenantHandle           # key mode: its own copy of `people`
    signed: TenantHandle          # hmac mode: `people` with event `signed_added`
    open: TenantHandle            # none mode: `people` with event `open_added`
    baseline_exec: str = ""
    baseline: dict[str, Any] = field(default_factory=dict)

    @property
    def client(self):
        return self.api.client

    # -- snapshots ------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        c, h = self.client, self.acme.headers
        out = {
            "execution": c.get(f"/api/v1/executions/{self.baseline_exec}", headers=h).get_json(),
            "package": c.get("/api/v1/packages/people", headers=h).get_json(),
            "packages": [{k: p[k] for k in ("id", "active_version", "versions")}
                         for p in c.get("/api/v1/packages", headers=h).get_json()["items"]],
            "files": {f["name"]: f["sha256"] for f in c.get("/api/v1/files", headers=h).get_json()["items"]},
            "schema": c.get("/api/v1/files/person.json/content", headers=h).get_data(),
            "tenants": sorted(t["id"] for t in c.get("/api/v1/tenants", headers=self.api.admin)
                              .get_json()["items"]),
            "other_files": {f["name"]: f["sha256"] for f in
                            c.get("/api/v1/files", headers=self.other.headers).get_json()["items"]},
        }
        return out

    def counts(self) -> tuple[int, dict[str, int]]:
        from jobico_core.db import Execution
        with self.api.ctx.db.session() as s:
            n = s.scalar(select(func.count()).select_from(Execution))
        return n, self.api.lists()

    @contextlib.contextmanager
    def nothing_recorded(self):
        before = self.counts()
        yield
        assert self.counts() == before, "a refused request recorded or enqueued something"

    def refused(self, send, status: int, *fragments: str) -> dict:
        """Send (a callable returning a response), expect a clean refusal and no side effect."""
        with self.nothing_recorded():
            r = send()
        return assert_error(r, status, *fragments)

    def post(self, body: bytes | str | Any, *, tenant: str = "acme", event: str = "person_added",
             headers: dict[str, str] | None = None, auth: bool = True, content_type: str = "application/json"):
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        h = {"Content-Type": content_type}
        if auth:
            h.update(self.acme.headers)
        h.update(headers or {})
        return self.client.post(f"/events/{tenant}/{event}", data=data, headers=h)

    # -- the invariant ---------------------------------------------------------------
    def assert_intact(self) -> None:
        now = self.snapshot()
        for k, v in self.baseline.items():
            assert now[k] == v, f"{k} changed after the hostile corpus"
        assert now["execution"]["status"] == "queued" and now["execution"]["payload"] == '{"age":36,"name":"Ada"}'
        r = self.post(GOOD)
        assert r.status_code == 200, r.get_data()[:500]
        [eid] = r.get_json()["executions"]
        rec = self.client.get(f"/api/v1/executions/{eid}", headers=self.acme.headers).get_json()
        assert rec["status"] == "queued" and rec["version"] == 1 and rec["package"] == "people"


def _deploy(api: ApiHarness, t: TenantHandle, source: str) -> None:
    assert api.upload(t, "echo.wasm", wasm("echo")).status_code == 201
    assert api.upload(t, "person.json", PERSON_SCHEMA).status_code == 201
    r = api.deploy(t, source)
    assert r.status_code == 201, r.get_json()


@pytest.fixture(scope="package")
def hostile_settings(postgres_server, migrated_template, redis_server, s3_server, tmp_path_factory) -> Settings:
    import uuid
    db_url = postgres_server.create_database(template=migrated_template)
    bucket = s3_server.create_bucket(f"t-hostile-{uuid.uuid4().hex[:16]}")
    db = next(_redis_db_numbers)
    client = redis_server.client(db)
    client.flushdb()
    client.close()
    tmp = tmp_path_factory.mktemp("hostile")
    settings = Settings.from_env(
        {}, embedded=False, data_dir=tmp, cache_dir=tmp / "cache",
        database_url=db_url, redis_url=redis_server.url_for(db), storage_url=f"s3://{bucket}",
        s3_endpoint=s3_server.endpoint, s3_access_key=s3_server.access_key, s3_secret_key=s3_server.secret_key,
        s3_region=s3_server.region, admin_token=ADMIN_TOKEN, secret_key=SECRET_KEY,
        # room for a 100k-deep `[[[...` body to reach the JSON parser; small element/upload caps
        max_body_kb=256, max_element_kb=2, max_elements=20, max_upload_kb=256,
    )
    yield settings
    with contextlib.suppress(Exception):
        postgres_server.drop_database(db_url.rsplit("/", 1)[1])
    with contextlib.suppress(Exception):
        s3_server.drop_bucket(bucket)


@pytest.fixture(scope="package")
def world(hostile_settings) -> World:
    from jobico_api import create_app
    from jobico_core.services.context import Context

    ctx = Context(hostile_settings)
    app = create_app(ctx=ctx)
    app.testing = True
    r = redis.Redis.from_url(hostile_settings.redis_url)
    api = ApiHarness(app=app, ctx=ctx, settings=hostile_settings, redis=r)
    api._closers += [r.close, lambda: ctx.celery.close(), lambda: ctx.db.engine.dispose()]
    try:
        acme = api.tenant("acme")
        _deploy(api, acme, PACKAGE)
        other = api.tenant("other")
        _deploy(api, other, PACKAGE)
        signed = api.tenant("signed", webhook_auth="hmac")
        _deploy(api, signed, package_yaml(event="signed_added"))
        opened = api.tenant("open", webhook_auth="none")
        _deploy(api, opened, package_yaml(event="open_added"))
        w = World(api=api, acme=acme, other=other, signed=signed, open=opened)
        resp = w.post(GOOD)
        assert resp.status_code == 200, resp.get_data()
        [w.baseline_exec] = resp.get_json()["executions"]
        w.baseline = w.snapshot()
        yield w
    finally:
        api.close()
