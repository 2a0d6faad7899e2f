"""What should exist on the platform, and what each accepted execution may end as.

The state machine (``machine.py``) updates this model with every request it makes and checks the
platform's answers against it. An execution's expected outcome is fixed when it is accepted (the
version active then, and the module that version pinned); what happens to it afterwards (a cancel,
its package deleted, the stored variable it reads set or unset) only widens the set of outcomes
it may end with.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from jobico_core import canonical
from tests.guests import constant_guest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FINAL = ("succeeded", "failed", "trapped", "timed_out", "limit_exceeded", "invalid_module", "cancelled")


@dataclass(frozen=True)
class Module:
    """The content of an uploaded .wasm file: ``tagged`` (returns ``mod:<tag>``) or an example."""
    kind: str  # tagged | echo | envecho | error
    data: bytes
    tag: str = ""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def __repr__(self) -> str:
        return f"Module({self.kind}{':' + self.tag if self.tag else ''})"


def make_module(kind: str, tag: str = "") -> Module:
    if kind == "tagged":
        text = f"mod:{tag}"
        return Module(kind, constant_guest(text.encode()), tag)  # from the record we know which upload ran
    return Module(kind, (EXAMPLES / "jobicolets" / f"{kind}.wasm").read_bytes())


def schema_bytes(variant: int) -> bytes:
    """any.json, or the same schema with another title (another sha256, same behaviour)."""
    if variant == 0:
        return (EXAMPLES / "schemas" / "any.json").read_bytes()
    return canonical.dumpb({"$schema": "https://json-schema.org/draft/2020-12/schema", "title": f"any {variant}"})


@dataclass(frozen=True)
class Version:
    number: int
    module: Module  # the content its moduleref was pinned to at deploy time
    tag: str  # the package's environment TAG (what envecho returns)
    sv_ref: bool  # the package's environment reads the stored variable `sv`
    retries: int
    cron: bool = False  # its event fires every CRON_EVERY_S seconds (beat), with CRON payload

    def yaml(self, package: str, moduleref: str) -> str:
        env = f'TAG: "{self.tag}"' + (", SV: {secret: sv}" if self.sv_ref else "")
        schedule = f', schedule: {{cron: "*/{CRON_EVERY_S} * * * * *", payload: {{cron: "{self.tag}"}}}}' \
            if self.cron else ""
        return (f"id: {package}\nqueues: [{{id: q}}]\nenvironment: {{{env}}}\njobs:\n"
                f"  - event: {{id: {event_id(package)}, datatype: 0, schema: {{id: s, schemaref: any.json}}, "
                f"supplierqueue: q, runtime: r, retries: {self.retries}{schedule}}}\n"
                f"runtimes: [{{id: r, moduleref: {moduleref}}}]\n")

    @property
    def cron_payload(self) -> dict:
        return {"cron": self.tag}


CRON_EVERY_S = 1
# beat re-reads the triggers when a deploy, rollback or delete bumps a Redis counter (and every
# JOBICO_SCHEDULE_REFRESH = 1 s): a fire this long after the version stopped being active is a violation
CRON_SLACK_S = 5.0


def event_id(package: str) -> str:
    return f"{package}-ev"


@dataclass
class Package:
    versions: dict[int, Version] = field(default_factory=dict)
    active: int = 0
    # (version, from, to) wall-clock intervals in which a version was active (to: None = still is)
    periods: list[list] = field(default_factory=list)

    def activate(self, number: int, now: float) -> None:
        self.end(now)
        self.active = number
        self.periods.append([self.versions[number], now, None])

    def end(self, now: float) -> None:
        if self.periods and self.periods[-1][2] is None:
            self.periods[-1][2] = now


StoredVar = tuple[str, bool] | None  # (value, secret) of the stored variable `sv`, or unset


@dataclass
class Expected:
    """One accepted execution, as the model sees it."""
    id: str
    tenant: str
    package: str
    version: Version
    payload: object
    accepted: float  # monotonic
    sv_states: list[StoredVar]  # every value `sv` had since it was accepted
    cancel: str | None = None  # "must": answered cancelled; "maybe": requested while running
    package_deleted_at: float | None = None  # wall clock (the server's clock: same machine)
    final: dict | None = None  # the final record, once seen

    @property
    def pending(self) -> bool:
        return self.final is None


@dataclass
class Tenant:
    id: str
    keys: dict[str, str] = field(default_factory=dict)  # name -> secret
    files: dict[str, str] = field(default_factory=dict)  # name -> sha256
    modules: dict[str, Module] = field(default_factory=dict)  # .wasm name -> content
    packages: dict[str, Package] = field(default_factory=dict)
    sv: StoredVar = None
    sv_history: list[StoredVar] = field(default_factory=lambda: [None])  # every value `sv` had
    executions: dict[str, Expected] = field(default_factory=dict)  # in acceptance order
    # the activity periods of every incarnation of each package (a deleted one's too): cron fires
    periods: dict[str, list[list]] = field(default_factory=dict)

    def key(self) -> str | None:
        return next(iter(self.keys.values()), None)


def _timestamp(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


# a worker may have claimed the execution just before the delete committed; a claim this long
# after the delete answered ran code the platform had already deleted
DELETED_SLACK_S = 1.0


def natural_outcomes(exp: Expected) -> list[str]:
    """Why each acceptable natural outcome is acceptable (for messages)."""
    return [f"{exp.version.module!r} sv={s!r}" for s in exp.sv_states]


def check_record(exp: Expected, rec: dict) -> str | None:
    """None when ``rec`` (a final record) is an outcome ``exp`` may end with, else why not."""
    who = (rec.get("tenant"), rec.get("package"), rec.get("version"), rec.get("event"))
    want = (exp.tenant, exp.package, exp.version.number, event_id(exp.package))
    if who != want:
        return f"recorded as (tenant, package, version, event) {who}, accepted as {want}"
    status = rec["status"]
    if status == "cancelled":
        message = rec.get("message") or ""
        if exp.cancel is not None:
            return None
        # its package deleted: before it ran, or while it ran on a worker that was lost (its lease
        # ran out with nobody to put it back for: leases.end_orphans)
        lost_running = "was deleted before the execution finished (its worker was lost)" in message
        if exp.package_deleted_at is not None and ("was deleted before the execution ran" in message
                                                   or (lost_running and rec.get("started_at"))):
            return None
        if exp.version.sv_ref and None in exp.sv_states and "sv" in message:
            return None
        return f"cancelled ({message!r}) though nobody cancelled it"
    if exp.cancel == "must":
        return f"{status}, but the cancel answered that it was cancelled"
    started = _timestamp(rec.get("started_at"))
    if exp.package_deleted_at is not None and started is not None \
            and started > exp.package_deleted_at + DELETED_SLACK_S:
        return (f"{status} (ran {started - exp.package_deleted_at:.2f}s after its package was deleted): "
                f"it should have been cancelled")
    return _natural(exp, rec)


def _natural(exp: Expected, rec: dict) -> str | None:
    m, status, result = exp.version.module, rec["status"], rec.get("result")
    if m.kind == "tagged":
        ok = status == "succeeded" and result == f"mod:{m.tag}"
    elif m.kind == "echo":
        ok = status == "succeeded" and result == canonical.dumps(exp.payload)
    elif m.kind == "error":
        ok = status == "failed" and rec.get("code") == 3 and rec.get("dead_lettered") == (exp.version.retries > 0)
    elif m.kind == "envecho":
        items = set(filter(None, (result or "").split(";")))
        ok = False
        for state in exp.sv_states if exp.version.sv_ref else [None]:
            want = {f"TAG={exp.version.tag}"}
            if exp.version.sv_ref:
                if state is None:
                    continue  # that outcome is a cancel (checked above)
                want.add(f"SV={'***' if state[1] else state[0]}")
            ok = ok or (status == "succeeded" and items == want)
    else:  # pragma: no cover - the machine uploads only the kinds above
        raise AssertionError(m.kind)
    if ok:
        return None
    return (f"ran as {status} code={rec.get('code')} result={result!r} dead_lettered={rec.get('dead_lettered')} "
            f"message={rec.get('message')!r}; expected the outcome of {natural_outcomes(exp)} "
            f"(version {exp.version.number}, tag {exp.version.tag})")


def age(exp: Expected) -> float:
    return time.monotonic() - exp.accepted


def cron_version(tenant: Tenant, rec: dict) -> tuple[Version | None, str | None]:
    """The version a cron-fired record ran, or why no version of ``tenant`` could have fired it then."""
    created = _timestamp(rec.get("created_at"))
    near = []
    periods = [(v, start, end) for v, start, end in tenant.periods.get(rec.get("package"), [])
               if v.number == rec.get("version") and v.cron]
    # a period that holds the fire itself first (the newest): a package deleted and deployed again
    # within the slack has two versions of that number near the fire, and the new one is active then
    for version, start, end in sorted(periods, key=lambda p: p[1], reverse=True):
        if start <= created and (end is None or created <= end):
            return version, None
    for version, start, end in periods:
        if start - CRON_SLACK_S <= created and (end is None or created <= end + CRON_SLACK_S):
            return version, None
        near.append((start, end))
    if not near:
        return None, (f"fired by cron for {rec.get('package')} v{rec.get('version')}, which tenant {tenant.id} "
                      f"never deployed with a schedule")
    return None, (f"fired by cron at {rec.get('created_at')}, outside the periods in which its version was "
                  f"active (+{CRON_SLACK_S:.0f}s): {near}")
