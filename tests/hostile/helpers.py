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

from sqlalchemy import func, select

from tests.integration.helpers import (  # noqa: F401  (fixtures re-exported for this package)
    ADMIN_TOKEN,
    PACKAGE,
    PERSON_SCHEMA,
    SECRET_KEY,
    ApiHarness,
    TenantHandle,
    package_yaml,
    wasm,
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


def deploy_source(api: ApiHarness, t: TenantHandle, source: str) -> None:
    assert api.upload(t, "echo.wasm", wasm("echo")).status_code == 201
    assert api.upload(t, "person.json", PERSON_SCHEMA).status_code == 201
    r = api.deploy(t, source)
    assert r.status_code == 201, r.get_json()


