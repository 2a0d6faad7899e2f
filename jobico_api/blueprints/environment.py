"""The tenant's stored environment variables and secrets (``jobico env``): values never come back for secrets."""
from __future__ import annotations

import marshmallow as ma
from flask import g
from flask_smorest import Blueprint

from jobico_core.package import ENV_NAME_RULE, MAX_ENV_VALUE_BYTES
from jobico_core.services import environment as svc

from ..auth import ERROR_SCHEMA, SECURITY, ctx, tenant_required
from ..openapi import Flag

blp = Blueprint("environment", __name__, url_prefix="/api/v1/environment",
                description="Stored environment variables and secrets, referenced by packages as "
                            "`environment: {VAR: {secret: name}}`. Sealed at rest with the operator's key; "
                            f"a secret's value is never returned (`***`). Package variable names follow "
                            f"{ENV_NAME_RULE}.")


class VariableSchema(ma.Schema):
    name = ma.fields.String()
    secret = ma.fields.Boolean()
    value = ma.fields.String(metadata={"description": "the value of a plain variable; `***` for a secret"})
    key_id = ma.fields.String(metadata={"description": "the operator key it is sealed with"})
    updated_at = ma.fields.DateTime(metadata={"description": "when it was last set"})


class VariableListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(VariableSchema))


class SetSchema(ma.Schema):
    value = ma.fields.String(required=True, metadata={
        "description": f"at most {MAX_ENV_VALUE_BYTES} bytes of UTF-8, no NUL", "maxLength": MAX_ENV_VALUE_BYTES,
        "pattern": "^[^\\u0000]*$"})
    secret = Flag(load_default=True, metadata={"description": "true (default): masked everywhere, redacted from "
                                                         "execution records; false: a plain value, shown"})


@blp.route("", methods=["GET"])
@blp.doc(security=SECURITY, summary="List stored variables (secrets masked)")
@tenant_required
@blp.response(200, VariableListSchema)
def list_variables():
    return {"items": [v.to_dict() for v in svc.list_variables(ctx(), g.tenant)]}


@blp.route("/<variable:name>", methods=["PUT"])
@blp.doc(security=SECURITY, summary="Set (create or replace) a variable",
         description="Takes effect for executions that start afterwards; no redeploy needed.")
@tenant_required
@blp.arguments(SetSchema)
@blp.response(200, VariableSchema)
@blp.alt_response(422, schema=ERROR_SCHEMA, description="invalid name or value")
def set_variable(body, name):
    return svc.set_variable(ctx(), g.tenant, name, body["value"], secret=body["secret"]).to_dict()


@blp.route("/<variable:name>", methods=["DELETE"])
@blp.doc(security=SECURITY, summary="Remove a variable",
         description="Executions of a package still referencing it are then recorded as cancelled, "
                     "with a message naming it.")
@tenant_required
@blp.response(204)
@blp.alt_response(404, schema=ERROR_SCHEMA, description="no such variable")
def unset_variable(name):
    svc.unset_variable(ctx(), g.tenant, name)
