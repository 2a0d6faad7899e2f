"""Tenants and their keys (admin token), and ``whoami`` (any caller)."""
from __future__ import annotations

import marshmallow as ma
from flask import request
from flask_smorest import Blueprint

from jobico_core.errors import Unauthorized
from jobico_core.names import HEADER, NAME
from jobico_core.services import tenants as svc

from ..auth import ERROR_SCHEMA, SECURITY, admin_required, ctx
from ..openapi import Flag, Named, openapi

blp = Blueprint("tenants", __name__, url_prefix="/api/v1", description="Tenants and API keys (admin token).")

WEBHOOK_MODES = svc.WEBHOOK_AUTH_MODES


class TenantCreateSchema(ma.Schema):
    id = Named(NAME, required=True, metadata={"description": "tenant id", "example": "tenant_1"})
    webhook_auth = ma.fields.String(load_default="key", validate=ma.validate.OneOf(WEBHOOK_MODES),
                                    metadata={"description": "how webhooks authenticate: key, hmac or none"})
    key_name = Named(NAME, load_default="default", metadata={"description": "name of the first key"})


class TenantCreatedSchema(ma.Schema):
    tenant = ma.fields.String()
    key = ma.fields.String(metadata={"description": "the tenant key, shown once"})
    key_name = ma.fields.String()
    webhook_auth = ma.fields.String()
    signing_secret = ma.fields.String(allow_none=True,
                                      metadata={"description": "HMAC signing secret (webhook_auth=hmac)"})


class TenantSchema(ma.Schema):
    id = ma.fields.String()
    webhook_auth = ma.fields.String()
    submitter_header = ma.fields.String(allow_none=True, metadata={
        "description": "request header naming a webhook execution's submitter (null: the key's name)"})
    created_at = ma.fields.DateTime()


class TenantWithSecretSchema(TenantSchema):
    signing_secret = ma.fields.String(allow_none=True)
    previous_secret_expires_at = ma.fields.DateTime(allow_none=True, metadata={
        "description": "hmac, after rotate_secret: until when the previous signing secret is still accepted "
                       "(null: only signing_secret is)"})


class TenantListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(TenantSchema))


@openapi("TenantPatch", {"allOf": [
    {"anyOf": [
        {"required": ["webhook_auth"]},
        {"required": ["submitter_header"], "properties": {"rotate_secret": {"enum": [False]}}},
        {"required": ["revoke_previous_secret"],
         "properties": {"revoke_previous_secret": {"enum": [True]}, "rotate_secret": {"enum": [False]}}},
    ]},
    {"anyOf": [{"not": {"required": ["secret_grace_seconds"]}},
               {"required": ["rotate_secret"], "properties": {"rotate_secret": {"enum": [True]}}}]},
    {"not": {"required": ["rotate_secret", "revoke_previous_secret"],
             "properties": {"rotate_secret": {"enum": [True]}, "revoke_previous_secret": {"enum": [True]}}}},
], "description": "at least one of webhook_auth, submitter_header and revoke_previous_secret; rotate_secret "
                  "needs webhook_auth; secret_grace_seconds needs rotate_secret; rotate_secret and "
                  "revoke_previous_secret exclude each other"})
class TenantPatchSchema(ma.Schema):
    webhook_auth = ma.fields.String(validate=ma.validate.OneOf(WEBHOOK_MODES))
    rotate_secret = Flag(load_default=False, metadata={
        "description": "with webhook_auth=hmac: issue a new signing secret; the previous one stays valid for "
                       "secret_grace_seconds"})
    secret_grace_seconds = ma.fields.Integer(
        validate=ma.validate.Range(0, svc.MAX_SECRET_GRACE), metadata={
            "description": "with rotate_secret: how long the previous secret stays valid (default "
                           "JOBICO_WEBHOOK_SECRET_GRACE; 0 = it stops at once)"})
    revoke_previous_secret = Flag(load_default=False, metadata={
        "description": "end a rotation's overlap now: only the current signing secret is accepted"})
    submitter_header = ma.fields.String(allow_none=True, metadata={
        "description": "a request header (e.g. X-Submitter) whose value becomes the submitter of the webhook's "
                       "executions when present; null or \"\" = the key's name again. Not a header that already "
                       "means something (Authorization, Content-*, Idempotency-Key, X-Jobico-*...: 422)",
        "example": "X-Submitter", "pattern": HEADER.optional_pattern(), "maxLength": HEADER.max_length})

    @ma.validates_schema
    def _something(self, data, **_):
        if "webhook_auth" not in data and "submitter_header" not in data and not data.get("revoke_previous_secret"):
            raise ma.ValidationError("give webhook_auth, submitter_header and/or revoke_previous_secret", "_schema")
        if data.get("rotate_secret") and "webhook_auth" not in data:
            raise ma.ValidationError("rotate_secret needs webhook_auth", "rotate_secret")
        if "secret_grace_seconds" in data and not data.get("rotate_secret"):
            raise ma.ValidationError("secret_grace_seconds needs rotate_secret", "secret_grace_seconds")
        if data.get("rotate_secret") and data.get("revoke_previous_secret"):
            raise ma.ValidationError("rotate_secret and revoke_previous_secret contradict each other (rotate with "
                                     "secret_grace_seconds 0 to stop the old secret at once)",
                                     "revoke_previous_secret")


class KeyCreateSchema(ma.Schema):
    name = Named(NAME, required=True, metadata={"example": "ci"})


class KeyCreatedSchema(ma.Schema):
    name = ma.fields.String()
    key = ma.fields.String(metadata={"description": "the key, shown once"})
    prefix = ma.fields.String()


class KeySchema(ma.Schema):
    name = ma.fields.String()
    prefix = ma.fields.String()
    created_at = ma.fields.DateTime()
    last_used_at = ma.fields.DateTime(allow_none=True)


class KeyListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(KeySchema))


class WhoamiSchema(ma.Schema):
    admin = ma.fields.Boolean()
    tenant = ma.fields.String()
    key_name = ma.fields.String()


def _tenant_out(t, *, secret: bool = False) -> dict:
    out = {"id": t.id, "webhook_auth": t.webhook_auth, "submitter_header": t.submitter_header,
           "created_at": t.created_at}
    if secret:
        out["signing_secret"] = t.signing_secret if t.webhook_auth == "hmac" else None
        out["previous_secret_expires_at"] = t.previous_secret_expires_at if svc.previous_secret_valid(t) else None
    return out


@blp.route("/tenants", methods=["POST"])
@blp.doc(security=SECURITY, summary="Create a tenant and its first key")
@admin_required
@blp.arguments(TenantCreateSchema)
@blp.response(201, TenantCreatedSchema)
@blp.alt_response(409, schema=ERROR_SCHEMA, description="the tenant exists")
def create_tenant(body):
    tenant, key = svc.create_tenant(ctx(), body["id"], key_name=body["key_name"], webhook_auth=body["webhook_auth"])
    return {"tenant": tenant.id, "key": key, "key_name": body["key_name"], "webhook_auth": tenant.webhook_auth,
            "signing_secret": tenant.signing_secret}


@blp.route("/tenants", methods=["GET"])
@blp.doc(security=SECURITY, summary="List tenants")
@admin_required
@blp.response(200, TenantListSchema)
def list_tenants():
    return {"items": [_tenant_out(t) for t in svc.list_tenants(ctx())]}


@blp.route("/tenants/<tenant:tenant>", methods=["GET"])
@blp.doc(security=SECURITY, summary="Show a tenant")
@admin_required
@blp.response(200, TenantSchema)
def get_tenant(tenant):
    return _tenant_out(svc.get_tenant(ctx(), tenant))


@blp.route("/tenants/<tenant:tenant>", methods=["PATCH"])
@blp.doc(security=SECURITY, summary="Change a tenant's webhook authentication (or rotate its HMAC secret, "
                                    "or end a rotation's overlap) and/or its submitter header")
@admin_required
@blp.arguments(TenantPatchSchema)
@blp.response(200, TenantWithSecretSchema)
def patch_tenant(body, tenant):
    c = ctx()
    t = svc.get_tenant(c, tenant)  # 404 before any change
    if "submitter_header" in body:
        t = svc.set_submitter_header(c, tenant, body["submitter_header"] or None)
    if "webhook_auth" in body:
        t = svc.update_webhook(c, tenant, body["webhook_auth"], rotate_secret=body["rotate_secret"],
                               grace_seconds=body.get("secret_grace_seconds"))
    if body["revoke_previous_secret"]:
        t = svc.revoke_previous_secret(c, tenant)
    return _tenant_out(t, secret=True)


@blp.route("/tenants/<tenant:tenant>", methods=["DELETE"])
@blp.doc(security=SECURITY, summary="Delete a tenant, its keys, files and packages")
@admin_required
@blp.response(204)
def delete_tenant(tenant):
    svc.delete_tenant(ctx(), tenant)


@blp.route("/tenants/<tenant:tenant>/keys", methods=["POST"])
@blp.doc(security=SECURITY, summary="Create a named key for a tenant")
@admin_required
@blp.arguments(KeyCreateSchema)
@blp.response(201, KeyCreatedSchema)
@blp.alt_response(409, schema=ERROR_SCHEMA, description="the tenant has a key by that name")
def create_key(body, tenant):
    row, key = svc.create_key(ctx(), tenant, body["name"])
    return {"name": row.name, "key": key, "prefix": row.prefix}


@blp.route("/tenants/<tenant:tenant>/keys", methods=["GET"])
@blp.doc(security=SECURITY, summary="List a tenant's keys (no secrets)")
@admin_required
@blp.response(200, KeyListSchema)
def list_keys(tenant):
    svc.get_tenant(ctx(), tenant)  # 404 for an unknown tenant
    return {"items": [{"name": k.name, "prefix": k.prefix, "created_at": k.created_at,
                       "last_used_at": k.last_used_at} for k in svc.list_keys(ctx(), tenant)]}


@blp.route("/tenants/<tenant:tenant>/keys/<key:name>", methods=["DELETE"])
@blp.doc(security=SECURITY, summary="Revoke a key")
@admin_required
@blp.response(204)
def delete_key(tenant, name):
    svc.delete_key(ctx(), tenant, name)


@blp.route("/whoami", methods=["GET"])
@blp.doc(security=SECURITY, summary="Who the bearer token belongs to")
@blp.response(200, WhoamiSchema)
def whoami():
    c = ctx()
    token = svc.bearer_token(request.headers.get("Authorization"))
    if token is None:
        raise Unauthorized("missing credentials: send 'Authorization: Bearer <token>'")
    if svc.is_admin(c, token):
        return {"admin": True}
    owner = svc.tenant_for_key(c, token)
    if owner is None:
        raise Unauthorized("invalid credentials: the token is not known")
    return {"tenant": owner[0], "key_name": owner[1]}
