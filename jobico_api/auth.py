"""Who is calling: the admin token or a tenant key (``Authorization: Bearer``).

* ``admin_required``: the operator's ``JOBICO_ADMIN_TOKEN`` only (manages
  tenants and keys). A tenant key gets 403, no/unknown token 401.
* ``tenant_required``: a tenant key; the tenant is the key's owner and is put
  in ``g.tenant`` (``g.key_name``). The admin token gets 403: it sees no
  tenant data.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from flask import current_app, g, request

from jobico_core.errors import Forbidden, Unauthorized
from jobico_core.services import tenants as tenant_svc
from jobico_core.services.context import Context

from .errors import ErrorSchema as ERROR_SCHEMA  # noqa: F401  (re-exported: documents error bodies)

SECURITY = [{"bearerAuth": []}]
BEARER_SCHEME = {"type": "http", "scheme": "bearer",
                 "description": "`Authorization: Bearer <token>`: the admin token (JOBICO_ADMIN_TOKEN) "
                                "for /tenants, a tenant key (jbk_...) for everything else"}


def ctx() -> Context:
    return current_app.extensions["jobico"]


def _token() -> str | None:
    return tenant_svc.bearer_token(request.headers.get("Authorization"))


def caller_is_admin() -> bool:
    return tenant_svc.is_admin(ctx(), _token())


def require_admin() -> None:
    c = ctx()
    token = _token()
    if token is None:
        raise Unauthorized("missing credentials: send 'Authorization: Bearer <admin token>'")
    if tenant_svc.is_admin(c, token):
        return
    if tenant_svc.tenant_for_key(c, token) is not None:
        raise Forbidden("this endpoint needs the admin token; a tenant key cannot manage tenants")
    raise Unauthorized("invalid credentials: the token is not known")


def require_tenant() -> tuple[str, str]:
    c = ctx()
    if caller_is_admin():
        raise Forbidden("the admin token cannot act on tenant data: use a tenant key "
                        "(create one with POST /api/v1/tenants/<tenant>/keys)")
    tenant, key_name = tenant_svc.authenticate_tenant(c, request.headers.get("Authorization"))
    g.tenant, g.key_name = tenant, key_name
    return tenant, key_name


def admin_required(view: Callable) -> Callable:
    @wraps(view)
    def wrapper(*args, **kwargs):
        require_admin()
        return view(*args, **kwargs)
    return wrapper


def tenant_required(view: Callable) -> Callable:
    @wraps(view)
    def wrapper(*args, **kwargs):
        require_tenant()
        return view(*args, **kwargs)
    return wrapper
