"""A tenant's stored environment variables and the environment an execution runs with.

``jobico env set NAME VALUE [--secret]`` stores a variable, sealed at rest
(jobico_core.secrets); a package refers to it as ``environment: {VAR: {secret: NAME}}``.
Listing never returns a secret's value (``***`` and when it was last set); a plain
stored variable shows its value.

``resolve`` runs for every execution, when the worker has claimed it: one query for the
stored variables the event references, decrypted in the process, no cache -- a changed
secret applies to every execution that starts after the change, without a redeploy.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select

from ..db import EnvVariable, Tenant, utcnow
from ..errors import Invalid, NotFound
from ..names import name_problem
from ..package import MAX_ENV_VALUE_BYTES, PackageSpec
from ..secrets import MASK, open_value, redact, redaction_list, seal
from .context import Context

log = logging.getLogger(__name__)
MAX_STORED_VARIABLES = 256  # per tenant


@dataclass(frozen=True)
class StoredVariable:
    """What the API and CLI may show of a stored variable."""
    name: str
    secret: bool
    value: str            # the plain value, or "***" for a secret
    key_id: str
    updated_at: dt.datetime

    def to_dict(self) -> dict:
        return {"name": self.name, "secret": self.secret, "value": self.value, "key_id": self.key_id,
                "updated_at": self.updated_at}


@dataclass(frozen=True)
class Environment:
    """The variables an execution's guest gets, and the secret values to mask in its record."""
    variables: dict[str, str]
    secrets: list[str]          # longest first (jobico_core.secrets.redaction_list)
    problem: str | None = None  # a referenced variable is missing: the execution is not run


def _check_name(name: str) -> None:
    problem = name_problem(name, "variable name")
    if problem:
        raise Invalid(problem, {"name": [problem]})


def _shown(ctx: Context, tenant: str, row: EnvVariable) -> StoredVariable:
    value = MASK if row.secret else open_value(ctx.settings, tenant, row.name, row.sealed)
    return StoredVariable(row.name, row.secret, value, row.key_id, row.updated_at)


def set_variable(ctx: Context, tenant: str, name: str, value: str, *, secret: bool) -> StoredVariable:
    """Create or replace a stored variable (a replaced secret applies to executions started afterwards)."""
    _check_name(name)
    if not isinstance(value, str):
        raise Invalid("'value' must be a string", {"value": ["not a string"]})
    if "\0" in value:
        raise Invalid("the value must not contain NUL characters", {"value": ["contains NUL"]})
    if len(value.encode("utf-8", "surrogatepass")) > MAX_ENV_VALUE_BYTES:
        raise Invalid(f"the value is longer than {MAX_ENV_VALUE_BYTES} bytes", {"value": ["too long"]})
    sealed, kid = seal(ctx.settings, tenant, name, value)
    with ctx.db.session() as s:
        if s.get(Tenant, tenant) is None:
            raise NotFound(f"tenant {tenant!r} does not exist")
        row = s.scalar(select(EnvVariable).where(EnvVariable.tenant_id == tenant, EnvVariable.name == name)
                       .with_for_update())
        if row is None:
            count = len(s.scalars(select(EnvVariable.id).where(EnvVariable.tenant_id == tenant)).all())
            if count >= MAX_STORED_VARIABLES:
                raise Invalid(f"tenant {tenant!r} already has {count} stored variables (the limit)",
                              {"name": ["too many variables"]})
            row = EnvVariable(tenant_id=tenant, name=name)
            s.add(row)
        row.secret, row.sealed, row.key_id, row.updated_at = secret, sealed, kid, utcnow()
        s.flush()
        shown = StoredVariable(name, secret, MASK if secret else value, kid, row.updated_at)
    log.info("tenant %s: stored %s variable %s", tenant, "secret" if secret else "plain", name,
             extra={"tenant": tenant})
    return shown


def unset_variable(ctx: Context, tenant: str, name: str) -> None:
    _check_name(name)
    with ctx.db.session() as s:
        gone = cast("CursorResult[Any]", s.execute(
            delete(EnvVariable).where(EnvVariable.tenant_id == tenant, EnvVariable.name == name)))
        if gone.rowcount == 0:
            raise NotFound(f"tenant {tenant!r} has no stored variable {name!r}")
    log.info("tenant %s: removed variable %s", tenant, name, extra={"tenant": tenant})


def list_variables(ctx: Context, tenant: str) -> list[StoredVariable]:
    with ctx.db.session() as s:
        rows = s.scalars(select(EnvVariable).where(EnvVariable.tenant_id == tenant).order_by(EnvVariable.name))
        return [_shown(ctx, tenant, r) for r in rows]


def missing_references(s, tenant: str, spec: PackageSpec) -> list[dict[str, str]]:
    """Deploy check: every ``{secret: name}`` names a stored variable of the tenant."""
    refs = spec.secret_references()
    if not refs:
        return []
    have = set(s.scalars(select(EnvVariable.name).where(EnvVariable.tenant_id == tenant,
                                                         EnvVariable.name.in_(list(refs)))))
    return [{"path": path, "message": f"secret {name!r} is not set for tenant {tenant!r} "
                                      f"(set it with `jobico env set {name} --secret`)"}
            for name, path in sorted(refs.items(), key=lambda kv: kv[1]) if name not in have]


def resolve(ctx: Context, tenant: str, spec: PackageSpec, event: str) -> Environment:
    """The environment of one execution of ``event`` (read now: no cache, see the module doc)."""
    wanted = spec.environment_for(event)
    if not wanted:
        return Environment({}, [])
    names = {item["secret"] for item in wanted.values() if "secret" in item}
    rows: dict[str, EnvVariable] = {}
    if names:
        with ctx.db.session() as s:
            rows = {r.name: r for r in s.scalars(select(EnvVariable).where(EnvVariable.tenant_id == tenant,
                                                                             EnvVariable.name.in_(list(names))))}
    variables: dict[str, str] = {}
    secrets: list[str] = []
    for var, item in wanted.items():
        if "value" in item:
            variables[var] = item["value"]
            continue
        row = rows.get(item["secret"])
        if row is None:
            return Environment({}, [], f"environment variable {var}: secret {item['secret']!r} is not set for "
                                       f"tenant {tenant!r} (it was removed after the deploy; "
                                       f"`jobico env set {item['secret']} --secret`)")
        value = open_value(ctx.settings, tenant, row.name, row.sealed)
        variables[var] = value
        if row.secret:
            secrets.append(value)
    return Environment(variables, redaction_list(secrets))


def redact_outcome(out, secrets: list[str]):
    """Mask every secret value in what an execution records and streams (in place; returns it)."""
    if not secrets:
        return out
    out.result = redact(out.result, secrets)
    out.stdout = redact(out.stdout, secrets)
    out.message = redact(out.message, secrets)
    out.logs = [rec if redact(rec.message, secrets) == rec.message else
                dataclasses.replace(rec, message=redact(rec.message, secrets)) for rec in out.logs or ()]
    return out
