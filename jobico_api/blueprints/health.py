"""Liveness (``/health``) and readiness (``/ready``)."""
from __future__ import annotations

import logging
import time

import marshmallow as ma
from flask_smorest import Blueprint

from ..auth import ctx

log = logging.getLogger(__name__)

blp = Blueprint("health", __name__, description="Liveness and readiness probes.")


class HealthSchema(ma.Schema):
    status = ma.fields.String(metadata={"example": "ok"})


class CheckSchema(ma.Schema):
    status = ma.fields.String(metadata={"description": "ok or down"})
    error = ma.fields.String()
    ms = ma.fields.Float(metadata={"description": "how long the check took"})


class ReadySchema(ma.Schema):
    status = ma.fields.String(metadata={"description": "ok, or unavailable"})
    checks = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Nested(CheckSchema))
    failed = ma.fields.List(ma.fields.String())


@blp.route("/health", methods=["GET"])
@blp.doc(summary="Liveness: the process answers")
@blp.response(200, HealthSchema)
def health():
    return {"status": "ok"}


def _run(check) -> dict:
    t0 = time.monotonic()
    try:
        check()
        out = {"status": "ok"}
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        log.warning("readiness check failed: %s: %s", type(exc).__name__, exc)
        # the class only: /ready is public, the details (hosts, ports) go to the log
        out = {"status": "down", "error": type(exc).__name__}
    out["ms"] = round((time.monotonic() - t0) * 1000, 1)
    return out


@blp.route("/ready", methods=["GET"])
@blp.doc(summary="Readiness: database, Redis and object store reachable")
@blp.response(200, ReadySchema)
@blp.alt_response(503, schema=ReadySchema, description="a dependency is down (see `failed`)",
                  headers={"Retry-After": {"description": "seconds", "schema": {"type": "string"}}})
def ready():
    c = ctx()
    checks = {
        "database": _run(c.db.ping),
        "redis": _run(lambda: c.redis.ping()),
        "object_store": _run(c.store.ping),
    }
    failed = [name for name, r in checks.items() if r["status"] != "ok"]
    body = {"status": "ok" if not failed else "unavailable", "checks": checks, "failed": failed}
    if failed:
        return body, 503, {"Retry-After": "5"}
    return body
