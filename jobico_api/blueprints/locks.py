"""Named locks and concurrency keys of the calling tenant (an event's ``locks:`` and
``concurrency:``): who holds each, who waits."""
from __future__ import annotations

import marshmallow as ma
from flask import g
from flask_smorest import Blueprint

from ..auth import SECURITY, ctx, tenant_required

blp = Blueprint("locks", __name__, url_prefix="/api/v1/locks",
                description="Named locks: which execution holds each, which wait for it, in order.")


class LockSchema(ma.Schema):
    name = ma.fields.String(metadata={"description": "a lock name, or concurrency/<package>/<event>/<key>"})
    holder = ma.fields.String(allow_none=True, metadata={
        "description": "the execution holding it (of a concurrency key: the one whose lease runs out first), or null"})
    holders = ma.fields.List(ma.fields.String(), metadata={
        "description": "every execution holding it (a concurrency key: up to its limit)"})
    lease_ms = ma.fields.Integer(allow_none=True, metadata={
        "description": "ms before the lease runs out unless renewed (the holder's worker renews it while it runs)"})
    waiting = ma.fields.List(ma.fields.String(), metadata={"description": "executions waiting for it, next first"})


class LocksSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(LockSchema), metadata={"description": "by name; free locks nobody "
                                                                                  "waits for are not listed"})
    truncated = ma.fields.Boolean(metadata={"description": "the tenant has more than 500 such locks"})


@blp.route("", methods=["GET"])
@blp.doc(security=SECURITY, summary="Locks held or waited for now")
@tenant_required
@blp.response(200, LocksSchema)
def list_locks():
    items, truncated = ctx().locks.state(g.tenant)
    return {"items": items, "truncated": truncated}
