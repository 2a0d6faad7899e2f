"""Rejected events of the calling tenant: MQTT messages the bridge could not accept."""
from __future__ import annotations

import marshmallow as ma
from flask import g
from flask_smorest import Blueprint

from jobico_core.services import rejections as svc

from ..auth import ERROR_SCHEMA, SECURITY, ctx, tenant_required
from ..openapi import Cursor

blp = Blueprint("rejections", __name__, url_prefix="/api/v1/rejections",
                description="Events a trigger without a caller (MQTT) could not accept, and why.")


class RejectionSchema(ma.Schema):
    id = ma.fields.String(metadata={"description": "UUIDv7"})
    tenant = ma.fields.String()
    event = ma.fields.String(allow_none=True, metadata={"description": "null when no deployed event matched"})
    trigger = ma.fields.String(metadata={"enum": ["mqtt"]})
    source = ma.fields.String(metadata={"description": "the MQTT topic, within the tenant's namespace"})
    reason = ma.fields.String(metadata={"enum": list(svc.REASONS)})
    message = ma.fields.String(metadata={"description": "what was wrong, in words (as the webhook would answer)"})
    errors = ma.fields.Dict(metadata={"description": "where: the webhook's `errors` (schema paths and rules)"})
    payload = ma.fields.String(metadata={"description": "the start of the message (1024 characters at most)"})
    payload_size = ma.fields.Integer(metadata={"description": "bytes received"})
    created_at = ma.fields.String()


class RejectionPageSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(RejectionSchema))
    next_cursor = ma.fields.String(allow_none=True)


class ListArgs(ma.Schema):
    event = ma.fields.String()
    reason = ma.fields.String(validate=ma.validate.OneOf(svc.REASONS))
    limit = ma.fields.Integer(load_default=50, validate=ma.validate.Range(min=1, max=500))
    cursor = Cursor()


@blp.route("", methods=["GET"])
@blp.doc(security=SECURITY, summary="List rejected events, newest first (cursor-paginated)",
         description="Kept 7 days. A webhook caller gets its error in the answer; these are the events "
                     "that had nobody to answer to.")
@tenant_required
@blp.arguments(ListArgs, location="query")
@blp.response(200, RejectionPageSchema)
@blp.alt_response(400, schema=ERROR_SCHEMA, description="cursor is not a next_cursor of this API")
def list_rejections(args):
    items, nxt = svc.list_rejections(ctx(), g.tenant, event=args.get("event"), reason=args.get("reason"),
                                     limit=args["limit"], cursor=args.get("cursor"))
    return {"items": items, "next_cursor": nxt}
