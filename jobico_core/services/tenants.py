"""Tenants, their API keys and webhook credentials."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
import secrets
import time
from typing import Any, Protocol

from sqlalchemy import delete, select

from ..db import ApiKey, Execution, ExecutionLog, RejectedEvent, Tenant, utcnow
from ..errors import BadRequest, Conflict, Forbidden, Invalid, NotFound, Unauthorized
from ..names import HEADER, name_problem
from .context import Context
from .triggers import schedules_changed

KEY_PREFIX = "jbk_"
WEBHOOK_AUTH_MODES = ("key", "hmac", "none")
HMAC_MAX_SKEW = 300  # seconds
MAX_SECRET_GRACE = 30 * 86400  # seconds a rotated-out signing secret may stay valid, at most
SPENT_SIGNATURE_PREFIX = "jobico:sig:"  # + "<tenant>:<hex>": a signature already accepted (webhook replays)
MAX_SUBMITTER = 128  # characters of a submitter name (executions.submitter)
# headers that already mean something to the webhook (or to HTTP) cannot name the submitter
_RESERVED_HEADERS = ("authorization", "proxy-authorization", "cookie", "host", "idempotency-key",
                     "content-type", "content-length", "content-encoding", "transfer-encoding")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _check_name(value: str, what: str) -> None:
    problem = name_problem(value, what)
    if problem:
        raise Invalid(problem, {what: [problem]})


def create_tenant(ctx: Context, tenant_id: str, key_name: str = "default",
                  webhook_auth: str = "key") -> tuple[Tenant, str]:
    """Create a tenant and its first key; returns (tenant, plaintext key)."""
    _check_name(tenant_id, "tenant")
    _check_name(key_name, "key name")
    if webhook_auth not in WEBHOOK_AUTH_MODES:
        raise Invalid(f"webhook_auth must be one of {', '.join(WEBHOOK_AUTH_MODES)}")
    key = new_key()
    with ctx.db.session() as s:
        if s.get(Tenant, tenant_id) is not None:
            raise Conflict(f"tenant {tenant_id!r} already exists")
        tenant = Tenant(id=tenant_id, webhook_auth=webhook_auth,
                        signing_secret=secrets.token_hex(32) if webhook_auth == "hmac" else None)
        s.add(tenant)
        s.add(ApiKey(tenant_id=tenant_id, name=key_name, key_hash=hash_key(key), prefix=key[:12]))
    return tenant, key


def list_tenants(ctx: Context) -> list[Tenant]:
    with ctx.db.session() as s:
        return list(s.scalars(select(Tenant).order_by(Tenant.id)))


def get_tenant(ctx: Context, tenant_id: str) -> Tenant:
    with ctx.db.session() as s:
        tenant = s.get(Tenant, tenant_id)
        if tenant is None:
            raise NotFound(f"tenant {tenant_id!r} does not exist")
        return tenant


def update_webhook(ctx: Context, tenant_id: str, webhook_auth: str, rotate_secret: bool = False,
                   grace_seconds: int | None = None) -> Tenant:
    """Set the tenant's webhook mode; ``rotate_secret`` (hmac) issues a new signing secret.

    The secret it replaces stays valid for ``grace_seconds`` (default
    JOBICO_WEBHOOK_SECRET_GRACE; 0: it stops at once) or until
    ``revoke_previous_secret``, so senders move over without a gap. Only one
    previous secret is kept: rotating again during an overlap drops the oldest.
    Leaving hmac mode ends an overlap.
    """
    if webhook_auth not in WEBHOOK_AUTH_MODES:
        raise Invalid(f"webhook_auth must be one of {', '.join(WEBHOOK_AUTH_MODES)}",
                      {"webhook_auth": [f"one of {', '.join(WEBHOOK_AUTH_MODES)}"]})
    if grace_seconds is not None:
        if not rotate_secret:
            raise Invalid("secret_grace_seconds needs rotate_secret", {"secret_grace_seconds": ["needs rotate_secret"]})
        if not 0 <= grace_seconds <= MAX_SECRET_GRACE:
            problem = f"must be between 0 and {MAX_SECRET_GRACE} seconds (30 days)"
            raise Invalid(f"secret_grace_seconds {problem}", {"secret_grace_seconds": [problem]})
    grace = ctx.settings.webhook_secret_grace if grace_seconds is None else grace_seconds
    with ctx.db.session() as s:
        tenant = s.get(Tenant, tenant_id)
        if tenant is None:
            raise NotFound(f"tenant {tenant_id!r} does not exist")
        tenant.webhook_auth = webhook_auth
        if webhook_auth != "hmac":
            _end_overlap(tenant)
        elif rotate_secret or not tenant.signing_secret:
            _end_overlap(tenant)
            if tenant.signing_secret and rotate_secret and grace > 0:
                tenant.previous_signing_secret = tenant.signing_secret
                tenant.previous_secret_expires_at = utcnow() + dt.timedelta(seconds=grace)
            tenant.signing_secret = secrets.token_hex(32)
    ctx.changed_routing()
    return tenant


def revoke_previous_secret(ctx: Context, tenant_id: str) -> Tenant:
    """End a rotation's overlap now: only the current signing secret is valid (idempotent)."""
    with ctx.db.session() as s:
        tenant = s.get(Tenant, tenant_id)
        if tenant is None:
            raise NotFound(f"tenant {tenant_id!r} does not exist")
        _end_overlap(tenant)
    ctx.changed_routing()
    return tenant


def _end_overlap(tenant: Tenant) -> None:
    tenant.previous_signing_secret = None
    tenant.previous_secret_expires_at = None


def previous_secret_valid(tenant) -> bool:
    """Whether the tenant (a row, or the webhook's cached copy) still accepts its previous secret."""
    expires = tenant.previous_secret_expires_at
    return bool(tenant.previous_signing_secret and expires is not None and expires > utcnow())


def submitter_header_problem(name: str) -> str | None:
    if HEADER.problem(name, "header"):
        return "must be an HTTP header name (letters, digits and !#$%&'*+.^_`|~-, at most 64 characters)"
    if name.lower().startswith("x-jobico-") or name.lower() in _RESERVED_HEADERS:
        return f"{name!r} already means something to the webhook; choose another header (e.g. X-Submitter)"
    return None


def set_submitter_header(ctx: Context, tenant_id: str, header: str | None) -> Tenant:
    """Name the request header whose value becomes a webhook execution's submitter (None: the key's name)."""
    if header is not None:
        problem = submitter_header_problem(header)
        if problem:
            raise Invalid(f"submitter_header {problem}", {"submitter_header": [problem]})
    with ctx.db.session() as s:
        tenant = s.get(Tenant, tenant_id)
        if tenant is None:
            raise NotFound(f"tenant {tenant_id!r} does not exist")
        tenant.submitter_header = header
    ctx.changed_routing()
    return tenant


def webhook_submitter(tenant: Tenant, headers, authenticated: str) -> str:
    """Who submitted a webhook request: the tenant's submitter header when the request carries it,
    else ``authenticated`` (the key's name, "hmac" or "anonymous"). 400 for an unusable value."""
    name = tenant.submitter_header
    if not name:
        return authenticated
    value = headers.get(name)
    if value is None or not value.strip():
        return authenticated
    value = value.strip()
    if len(value) > MAX_SUBMITTER or not value.isprintable():
        problem = f"must be printable text of at most {MAX_SUBMITTER} characters"
        raise BadRequest(f"header {name} (this tenant's submitter header) {problem}", {name: [problem]})
    return value


def delete_tenant(ctx: Context, tenant_id: str) -> None:
    with ctx.db.session() as s:
        tenant = s.get(Tenant, tenant_id)
        if tenant is None:
            raise NotFound(f"tenant {tenant_id!r} does not exist")
        # Its rows first (keys, files, variables, packages, versions, routes: cascades). A trigger
        # recording executions holds its version row until it commits (executions._insert_values),
        # so this waits for it, and the executions deleted below, read afterwards, include its
        # rows; one that comes later finds no version and records nothing.
        s.delete(tenant)
        s.flush()
        # its history goes too: a tenant re-created under the same id must not see the old one's data
        s.execute(delete(ExecutionLog).where(ExecutionLog.execution_id.in_(
            select(Execution.id).where(Execution.tenant_id == tenant_id))))
        s.execute(delete(Execution).where(Execution.tenant_id == tenant_id))
        s.execute(delete(RejectedEvent).where(RejectedEvent.tenant_id == tenant_id))
    ctx.changed_routing()
    schedules_changed(ctx)  # its schedules stop, and the MQTT bridge drops its topics


def create_key(ctx: Context, tenant_id: str, name: str) -> tuple[ApiKey, str]:
    _check_name(name, "key name")
    key = new_key()
    with ctx.db.session() as s:
        if s.get(Tenant, tenant_id) is None:
            raise NotFound(f"tenant {tenant_id!r} does not exist")
        if s.scalar(select(ApiKey).where(ApiKey.tenant_id == tenant_id, ApiKey.name == name)):
            raise Conflict(f"tenant {tenant_id!r} already has a key named {name!r}")
        row = ApiKey(tenant_id=tenant_id, name=name, key_hash=hash_key(key), prefix=key[:12])
        s.add(row)
    return row, key


def list_keys(ctx: Context, tenant_id: str) -> list[ApiKey]:
    with ctx.db.session() as s:
        return list(s.scalars(select(ApiKey).where(ApiKey.tenant_id == tenant_id).order_by(ApiKey.name)))


def delete_key(ctx: Context, tenant_id: str, name: str) -> None:
    with ctx.db.session() as s:
        row = s.scalar(select(ApiKey).where(ApiKey.tenant_id == tenant_id, ApiKey.name == name))
        if row is None:
            raise NotFound(f"tenant {tenant_id!r} has no key named {name!r}")
        s.delete(row)
    ctx.changed_routing()


# -- authentication -------------------------------------------------------------------
def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def is_admin(ctx: Context, token: str | None) -> bool:
    admin = ctx.settings.admin_token
    return bool(token and admin and hmac.compare_digest(token.encode(), admin.encode()))


def tenant_for_key(ctx: Context, token: str | None, session=None) -> tuple[str, str] | None:
    """(tenant id, key name) owning this key, or None."""
    if not token or not token.startswith(KEY_PREFIX):
        return None
    with ctx.db.session_or(session) as s:
        row = s.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(token)))
        if row is None:
            return None
        return row.tenant_id, row.name


def authenticate_tenant(ctx: Context, authorization: str | None, tenant_id: str | None = None,
                        session=None) -> tuple[str, str]:
    """The calling tenant (and key name) from a bearer key; 401 missing/bad, 403 other tenant's."""
    token = bearer_token(authorization)
    if token is None:
        raise Unauthorized("missing credentials: send 'Authorization: Bearer <tenant key>'")
    owner = tenant_for_key(ctx, token, session)
    if owner is None:
        raise Unauthorized("invalid credentials: the key is not known")
    if tenant_id is not None and owner[0] != tenant_id:
        raise Forbidden(f"this key belongs to another tenant and cannot act on {tenant_id!r}")
    return owner


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhookTenant(Protocol):
    """What the webhook's checks read of a tenant: its row, or the webhook's cached copy."""

    @property
    def id(self) -> str: ...
    @property
    def webhook_auth(self) -> str: ...
    @property
    def signing_secret(self) -> str | None: ...
    @property
    def previous_signing_secret(self) -> str | None: ...
    @property
    def previous_secret_expires_at(self) -> Any: ...


def check_webhook_credentials(ctx: Context, tenant: WebhookTenant, headers, body: bytes, session=None) -> str:
    """Authenticate a webhook call per the tenant's mode; returns the submitter name.

    In hmac mode the signature may be made with the current secret or, during a
    rotation's overlap, the previous one. A signature accepted here is not yet
    spent: ``spent_signature`` names the record that refuses it a second time.
    """
    if tenant.webhook_auth == "none":
        return "anonymous"
    if tenant.webhook_auth == "hmac":
        signature = headers.get("X-Jobico-Signature")
        timestamp = headers.get("X-Jobico-Timestamp")
        if not signature or not timestamp:
            raise Unauthorized("missing credentials: this tenant requires X-Jobico-Signature and "
                               "X-Jobico-Timestamp headers")
        try:
            ts = int(timestamp)
        except ValueError:
            raise Unauthorized("invalid credentials: X-Jobico-Timestamp must be Unix seconds") from None
        if abs(time.time() - ts) > HMAC_MAX_SKEW:
            raise Unauthorized("invalid credentials: the signature timestamp is older than 5 minutes "
                               "(or in the future)")
        valid = [tenant.signing_secret or ""]
        if previous_secret_valid(tenant):
            valid.append(tenant.previous_signing_secret or "")
        given = signature.strip().encode()
        if not any(hmac.compare_digest(sign(secret, timestamp, body).encode(), given) for secret in valid):
            raise Unauthorized("invalid credentials: the signature does not match the body")
        return "hmac"
    _, key_name = authenticate_tenant(ctx, headers.get("Authorization"), tenant.id, session)
    return key_name


def spent_signature(tenant, headers, now: float | None = None) -> tuple[str, int] | None:
    """For a request ``check_webhook_credentials`` accepted (call it only after): the Redis key
    that marks its signature spent, and for how many seconds it must live (until its timestamp
    leaves the 5-minute window, after which the signature is refused as stale anyway).
    None outside hmac mode."""
    if tenant.webhook_auth != "hmac":
        return None
    signature = headers.get("X-Jobico-Signature").strip()  # verified: "sha256=" + 64 hex digits
    ttl = math.ceil(int(headers.get("X-Jobico-Timestamp")) + HMAC_MAX_SKEW - (time.time() if now is None else now))
    return f"{SPENT_SIGNATURE_PREFIX}{tenant.id}:{signature.removeprefix('sha256=')}", max(1, ttl + 1)
