"""Shared helpers for the API tests: a real app on real PostgreSQL, Redis and S3.

* ``api_settings``: ``Settings`` for this test (fresh migrated database, own
  Redis DB number, own S3 bucket); small limits so limit tests stay fast.
* ``make_api(**overrides)``: builds a ``ApiHarness`` (Flask test client +
  ``Context``) from ``api_settings`` with overrides (e.g. a dead Redis URL).
* ``api``: ``make_api()``.
* ``ApiHarness.tenant(id, webhook_auth=...)`` creates a tenant through the
  admin API and returns a ``TenantHandle`` (id, key, headers, signing secret);
  ``upload``, ``deploy``, ``post_events`` wrap the HTTP calls;
  ``deployed_tenant`` gives a tenant with ``echo.wasm``, ``person.json`` and
  the ``PACKAGE`` deployed.
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from jobico_core.settings import Settings
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
JOBICOLETS = ROOT / "examples" / "jobicolets"
ADMIN_TOKEN = "test-admin-token-0123456789"
SECRET_KEY = "test-secret-key-0123456789abcdef"

PERSON_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "minLength": 1}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name"],
}

PACKAGE = """\
id: people
name: People
queues:
  - id: main
runtimes:
  - id: echo
    moduleref: echo.wasm
jobs:
  - event:
      id: person_added
      schema:
        id: person
        schemaref: person.json
      supplierqueue: main
      runtime: echo
"""


def wasm(name: str) -> bytes:
    """Bytes of an example jobicolet (built from its .wat when the .wasm is missing)."""
    path = JOBICOLETS / f"{name}.wasm"
    if path.exists():
        return path.read_bytes()
    import wasmtime
    return bytes(wasmtime.wat2wasm((JOBICOLETS / f"{name}.wat").read_text()))


def wat(text: str) -> bytes:
    import wasmtime
    return bytes(wasmtime.wat2wasm(text))


def wait_for_lock_waits(engine, n: int = 1, deadline_s: float = 30.0) -> None:
    """Until ``n`` transactions of the PostgreSQL server behind ``engine`` wait for a lock: the
    interleavings of the race tests (a delete against a recording) are placed with this."""
    with engine.connect() as c:
        def waiting() -> bool:
            count = c.exec_driver_sql("SELECT count(*) FROM pg_locks WHERE NOT granted").scalar()
            c.rollback()
            return count >= n
        wait_until(waiting, deadline_s, what=f"{n} transaction(s) waiting for a lock", interval=0.02)


def package_yaml(pkg_id: str = "people", event: str = "person_added", *, schema: str = "person.json",
                 module: str = "echo.wasm", queue: str = "main", extra_events: tuple[str, ...] = ()) -> str:
    events = "".join(f"""\
  - event:
      id: {e}
      schema:
        id: s_{e}
        schemaref: {schema}
      supplierqueue: {queue}
      runtime: rt
""" for e in (event, *extra_events))
    return f"""\
id: {pkg_id}
queues:
  - id: {queue}
runtimes:
  - id: rt
    moduleref: {module}
jobs:
{events}"""


@dataclass
class TenantHandle:
    id: str
    key: str
    webhook_auth: str = "key"
    signing_secret: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@dataclass
class ApiHarness:
    app: Any
    ctx: Any
    settings: Settings
    redis: redis.Redis
    _closers: list = field(default_factory=list)

    @property
    def client(self):
        return self.app.test_client()

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    # -- admin ------------------------------------------------------------------------
    def tenant(self, tenant_id: str, webhook_auth: str = "key") -> TenantHandle:
        r = self.client.post("/api/v1/tenants", json={"id": tenant_id, "webhook_auth": webhook_auth},
                             headers=self.admin)
        assert r.status_code == 201, r.get_json()
        body = r.get_json()
        return TenantHandle(body["tenant"], body["key"], body["webhook_auth"], body["signing_secret"])

    # -- tenant -----------------------------------------------------------------------
    def upload(self, t: TenantHandle, name: str, data: bytes | dict, kind: str | None = None):
        if isinstance(data, dict):
            data = json.dumps(data).encode()
        url = f"/api/v1/files/{name}" + (f"?kind={kind}" if kind else "")
        return self.client.put(url, data=data, headers={**t.headers, "Content-Type": "application/octet-stream"})

    def deploy(self, t: TenantHandle, source: str, *, package: str | None = None):
        headers = {**t.headers, "Content-Type": "application/yaml"}
        if package is None:
            return self.client.post("/api/v1/packages", data=source, headers=headers)
        return self.client.put(f"/api/v1/packages/{package}", data=source, headers=headers)

    def post_events(self, tenant_id: str, event: str, body: Any, headers: dict[str, str] | None = None):
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return self.client.post(f"/events/{tenant_id}/{event}", data=data,
                                headers={"Content-Type": "application/json", **(headers or {})})

    def deployed_tenant(self, tenant_id: str = "tenant_1", webhook_auth: str = "key",
                        source: str = PACKAGE) -> TenantHandle:
        t = self.tenant(tenant_id, webhook_auth)
        assert self.upload(t, "echo.wasm", wasm("echo")).status_code == 201
        assert self.upload(t, "person.json", PERSON_SCHEMA).status_code == 201
        r = self.deploy(t, source)
        assert r.status_code == 201, r.get_json()
        return t

    # -- Redis inspection ---------------------------------------------------------------
    def lists(self) -> dict[str, int]:
        """Every Redis list of this test's DB and its length (where tasks land)."""
        out = {}
        for k in self.redis.scan_iter(count=1000):
            if self.redis.type(k) == b"list":
                out[k.decode()] = self.redis.llen(k)
        return out

    def executions_in_db(self) -> list:
        from sqlalchemy import select

        from jobico_core.db import Execution
        with self.ctx.db.session() as s:
            return list(s.scalars(select(Execution).order_by(Execution.id)))

    def close(self) -> None:
        for closer in reversed(self._closers):
            with contextlib.suppress(Exception):
                closer()


