"""Deploy, redeploy, roll back and delete packages; immutable numbered versions."""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from ..abi import InvalidModule, inspect_module
from ..broker import broadcast_consume, declare_queues
from ..canonical import loads
from ..db import EventRoute, Package, PackageVersion, RepoFile, Tenant
from ..errors import Conflict, Invalid, NotFound
from ..limits import resolve
from ..mqtt import overlaps
from ..names import queue_name
from ..package import PackageSpec, parse_package
from ..schemas import schema_errors
from . import leases
from .context import Context
from .environment import missing_references
from .files import check_python_bytes, read_blob, schema_validator
from .triggers import schedules_changed

log = logging.getLogger(__name__)
# bumped on every change of deployed triggers (schedules and MQTT topics): beat and the MQTT bridge
# re-read what is deployed when it moves


@dataclass(frozen=True)
class VersionInfo:
    """An immutable deployed version, as the ingest path and the worker need it."""
    version_id: int
    tenant: str
    package: str
    number: int
    spec: PackageSpec
    pins: dict[str, str]
    #: a (re)deploy or publish of exactly the active version's YAML and files: no version was created
    unchanged: bool = False

    def queue_for(self, event_id: str) -> str:
        return queue_name(self.tenant, self.package, self.spec.events[event_id].supplierqueue)

    def locks_for(self, event_id: str) -> str | None:
        """The event's named locks as stored on its executions (comma-separated), or None."""
        return ",".join(self.spec.events[event_id].locks) or None

    def queues(self) -> list[str]:
        return [queue_name(self.tenant, self.package, q) for q in self.spec.queue_ids()]

    def is_for(self, tenant: str, package: str, number: int) -> bool:
        """Whether this is version ``number`` of ``tenant``'s package ``package``."""
        return (self.tenant, self.package, self.number) == (tenant, package, number)


def _new_version_info(tenant: str, package: str, row: PackageVersion) -> VersionInfo:
    return VersionInfo(row.id, tenant, package, row.number, PackageSpec.from_dict(row.spec), dict(row.pins))


def cached_version(ctx: Context, version_id: int, tenant: str, package: str, number: int) -> VersionInfo | None:
    """The cached version ``version_id`` if it is version ``number`` of ``tenant``'s ``package``.

    An entry for anything else is refused (a miss: dropped and logged), never served. Ids are never
    reused (jobico_core.db.NEVER_REUSED), so this only trips on a bug; it is the cache's own check
    that it serves what was asked for."""
    info = ctx.versions.get(version_id)
    if info is None or info.is_for(tenant, package, number):
        return info
    ctx.versions.pop(version_id)
    log.error("version cache: entry %d is version %d of %s/%s, not version %d of %s/%s: refused",
              version_id, info.number, info.tenant, info.package, number, tenant, package,
              extra={"tenant": tenant, "package": package})
    return None


def _version_info(ctx: Context, tenant: str, package: str, row: PackageVersion) -> VersionInfo:
    """A committed version row's VersionInfo, from the cache when it holds this very version."""
    info = cached_version(ctx, row.id, tenant, package, row.number)
    if info is None:
        info = ctx.versions.put(row.id, _new_version_info(tenant, package, row))
    return info


def load_version(ctx: Context, version_id: int, tenant: str, package: str, number: int) -> VersionInfo | None:
    """Version ``number`` of ``tenant``'s package ``package``, by id (an execution's version_id),
    or None if its package was deleted. Cached: versions never change and their ids are never
    reused; a cached entry for anything else than asked is refused, and the cache is emptied when
    any process changes routing (``Context.fresh_versions``)."""
    ctx.fresh_versions()
    info = cached_version(ctx, version_id, tenant, package, number)
    if info is not None:
        return info
    with ctx.db.session() as s:
        # one statement: the version and its package read apart could straddle the package's delete
        # (SQLite reads each statement in its own snapshot), leaving a version without its package
        found = s.execute(select(PackageVersion, Package).join(Package, Package.id == PackageVersion.package_id)
                          .where(PackageVersion.id == version_id)).first()
        if found is None:
            return None
        row, pkg = found
        if (pkg.tenant_id, pkg.name, row.number) != (tenant, package, number):
            log.error("version %d is version %d of %s/%s, not version %d of %s/%s as asked: not used",
                      version_id, row.number, pkg.tenant_id, pkg.name, number, tenant, package,
                      extra={"tenant": tenant, "package": package})
            return None
        return _version_info(ctx, tenant, package, row)


def route(ctx: Context, tenant: str, event: str, session=None) -> VersionInfo | None:
    """The active version owning an event id of a tenant (one query; spec cached)."""
    with ctx.db.session_or(session) as s:
        row = s.execute(
            select(PackageVersion, Package.name)
            .join(Package, Package.id == PackageVersion.package_id)
            .join(EventRoute, EventRoute.package_id == Package.id)
            .where(Package.tenant_id == tenant, EventRoute.tenant_id == tenant, EventRoute.event == event,
                   PackageVersion.number == Package.active_version)
        ).first()
        if row is None:
            return None
        info = _version_info(ctx, tenant, row[1], row[0])
    return info if event in info.spec.events else None


# -- deploy -------------------------------------------------------------------------
def _check_references(ctx: Context, s, tenant: str, spec: PackageSpec) -> dict[str, str]:
    """Every schemaref/moduleref exists with the right kind; returns the pins."""
    files = {f.name: f for f in s.scalars(select(RepoFile).where(RepoFile.tenant_id == tenant))}
    problems: list[dict[str, str]] = []
    pins: dict[str, str] = {}
    for eid, ev in spec.events.items():
        if ev.schema is None:
            continue
        f = files.get(ev.schema.schemaref)
        path = f"events.{eid}.schema.schemaref"
        if f is None:
            problems.append({"path": path, "message": f"schema file {ev.schema.schemaref!r} is not in the repository "
                                                      "(upload it with `jobico upload-schema`)"})
        elif f.kind != "schema":
            problems.append({"path": path, "message": f"{f.name!r} is a {f.kind} file, not a schema"})
        else:
            pins[f.name] = f.sha256
    for rid, rt in spec.runtimes.items():
        f = files.get(rt.moduleref)
        path = f"runtimes.{rid}.moduleref"
        if f is None:
            problems.append({"path": path, "message": f"module file {rt.moduleref!r} is not in the repository "
                                                      f"(upload it with `jobico upload {rt.moduleref}`)"})
            continue
        if rt.language == "python":
            if f.kind != "python":
                problems.append({"path": path, "message": f"{f.name!r} is a {f.kind} file, not a Python source file "
                                                          "(a runtime of type 1 runs a .py file or a .zip package)"})
                continue
            pins[f.name] = f.sha256
            limits = resolve(ctx.settings.default_limits_for("python"), ctx.settings.max_limits, rt.limits)
            try:  # its top level runs and defines the function, in the guest's CPython (a deploy waits <= 10 s)
                check_python_bytes(ctx, f.name, read_blob(ctx, tenant, f.sha256), main=rt.mainfuncname,
                                   limits=dataclasses.replace(limits, timeout_ms=min(limits.timeout_ms, 10_000)))
            except Invalid as exc:  # its message names the file and the line
                problems.append({"path": f"runtimes.{rid}.moduleref", "message": exc.errors["file"][0]})
            continue
        if f.kind != "wasm":
            hint = " (for a Python jobicolet give the runtime `type: 1`)" if f.kind == "python" else ""
            problems.append({"path": path, "message": f"{f.name!r} is a {f.kind} file, not a WASM module{hint}"})
            continue
        pins[f.name] = f.sha256
        try:
            inspect_module(read_blob(ctx, tenant, f.sha256), main=rt.mainfuncname)
        except InvalidModule as exc:
            problems.append({"path": f"runtimes.{rid}.mainfuncname", "message": f"{f.name}: {exc}"})
    if not problems:
        problems += _schedule_problems(ctx, tenant, spec, pins)
    problems += missing_references(s, tenant, spec)
    if problems:
        raise Invalid(f"invalid package: {problems[0]['path']}: {problems[0]['message']}"
                      + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""), {"package": problems})
    return pins


def _schedule_problems(ctx: Context, tenant: str, spec: PackageSpec, pins: dict[str, str]) -> list[dict]:
    """A schedule's fixed payload must be an event its webhook would accept: size, then schema."""
    problems = []
    for eid, sched in spec.scheduled_events().items():
        ev = spec.events[eid]
        path = f"events.{eid}.schedule.payload"
        limits = resolve(ctx.settings.default_limits, ctx.settings.max_limits,
                         spec.runtimes[ev.runtime].limits, ev.limits)
        max_element = min(ctx.settings.max_element_kb, limits.input_kb) * 1024
        size = len(sched.payload.encode("utf-8"))
        if size > max_element:
            problems.append({"path": path, "message": f"the payload is {size} bytes; an event may be at most "
                                                      f"{max_element // 1024} KB"})
            continue
        assert ev.schema is not None   # parse_package: a scheduled event has a schema
        errs = schema_errors(schema_validator(ctx, tenant, pins[ev.schema.schemaref]), loads(sched.payload), 1)
        if errs:
            problems.append({"path": path, "message": f"the payload does not match schema "
                                                      f"{ev.schema.schemaref!r}: {errs[0]['path']}: "
                                                      f"{errs[0]['message']}"})
    return problems


def _claim_topics(s, tenant: str, package: Package, spec: PackageSpec) -> None:
    """409 when an MQTT topic of ``spec`` overlaps one of another package's active version: each
    message of the tenant's namespace becomes one event. Takes the tenant's row lock first, so two
    deploys of one tenant check their topics one after the other."""
    mine = spec.mqtt_events()
    if not mine:
        return
    s.get(Tenant, tenant, with_for_update=True)
    rows = s.execute(select(Package.name, PackageVersion.spec)
                     .join(PackageVersion, PackageVersion.package_id == Package.id)
                     .where(Package.tenant_id == tenant, Package.id != package.id,
                            PackageVersion.number == Package.active_version)).all()
    clashes = []
    for other, other_spec in rows:
        for oid, oev in sorted((other_spec.get("events") or {}).items()):
            theirs = (oev.get("mqtt") or {}).get("topic")
            for eid, m in sorted(mine.items()):
                if theirs is not None and overlaps(m.topic, theirs):
                    clashes.append({"path": f"events.{eid}.mqtt.topic",
                                    "message": f"topic {m.topic!r} overlaps topic {theirs!r} of event {oid!r} "
                                               f"of package {other!r}"})
    if clashes:
        raise Conflict(f"MQTT {clashes[0]['message']}; a message of tenant {tenant!r} must reach one event",
                       {"package": clashes})


def _claim_events(s, tenant: str, package: Package, spec: PackageSpec) -> None:
    """Point the tenant's event routes at this package; 409 if another package owns one."""
    owners = dict(s.execute(
        select(EventRoute.event, Package.name).join(Package, Package.id == EventRoute.package_id)
        .where(EventRoute.tenant_id == tenant, EventRoute.event.in_(list(spec.events)),
               EventRoute.package_id != package.id)).all())
    if owners:
        eid, other = sorted(owners.items())[0]
        raise Conflict(f"event id {eid!r} is already owned by package {other!r} of tenant {tenant!r}; "
                       f"package {package.name!r} cannot define it",
                       {"package": [{"path": f"events.{e}", "message": f"owned by package {o!r}"}
                                    for e, o in sorted(owners.items())]})
    s.execute(delete(EventRoute).where(EventRoute.package_id == package.id))
    s.flush()
    s.add_all(EventRoute(tenant_id=tenant, event=eid, package_id=package.id) for eid in spec.events)


def deploy(ctx: Context, tenant: str, source: str | bytes, *, redeploy: bool = False,
           expected_id: str | None = None) -> VersionInfo:
    """Create a package (or, with ``redeploy``, a new version of it) and make it active."""
    spec = checked_spec(ctx, tenant, source, expected_id)
    text = source.decode("utf-8") if isinstance(source, bytes) else source
    try:
        with ctx.db.session() as s:
            info = deploy_in(ctx, s, tenant, spec, text, redeploy=redeploy)
    except IntegrityError:
        raise Conflict(f"package {spec.id!r} or one of its event ids was deployed concurrently; retry") from None
    if not info.unchanged:
        after_deploy(ctx, info, redeploy)
    return info


def after_deploy(ctx: Context, info: VersionInfo, redeploy: bool) -> None:
    """Once the version is committed: tell the webhooks, workers, beat and the MQTT bridge."""
    ctx.changed_routing()
    announce_queues(ctx, info.queues())
    if info.spec.scheduled_events() or info.spec.mqtt_events() or redeploy:
        schedules_changed(ctx)


def checked_spec(ctx: Context, tenant: str, source: str | bytes, expected_id: str | None = None) -> PackageSpec:
    """Parse a package and check what needs no database: its tenant and id."""
    spec = parse_package(source, maxima=ctx.settings.max_limits)
    if spec.tenant is not None and spec.tenant != tenant:
        raise Invalid(f"the package declares tenant {spec.tenant!r} but is deployed by tenant {tenant!r}",
                      {"package": [{"path": "tenant", "message": f"must be {tenant!r} or absent"}]})
    if expected_id is not None and spec.id != expected_id:
        raise Invalid(f"the package's id is {spec.id!r}, not {expected_id!r}",
                      {"package": [{"path": "id", "message": f"expected {expected_id!r}"}]})
    return spec


def deploy_in(ctx: Context, s, tenant: str, spec: PackageSpec, text: str, *, redeploy: bool | None) -> VersionInfo:
    """The version's rows, in the caller's transaction (``redeploy=None``: create or add a version).

    The same YAML text with the same files (sha256) as the active version creates nothing: the
    active version comes back with ``unchanged=True`` (publishing twice is not two versions).
    """
    if s.get(Tenant, tenant) is None:
        raise NotFound(f"tenant {tenant!r} does not exist")
    pins = _check_references(ctx, s, tenant, spec)
    pkg = s.scalar(select(Package).where(Package.tenant_id == tenant, Package.name == spec.id)
                   .with_for_update())
    if pkg is None and redeploy:
        raise NotFound(f"package {spec.id!r} does not exist: use deploy to create it")
    if pkg is not None and redeploy is False:
        raise Conflict(f"package {spec.id!r} already exists: use redeploy to create a new version")
    if pkg is None:
        pkg = Package(tenant_id=tenant, name=spec.id, active_version=1)
        s.add(pkg)
        s.flush()
        number = 1
    else:
        active = s.scalar(select(PackageVersion).where(PackageVersion.package_id == pkg.id,
                                                       PackageVersion.number == pkg.active_version))
        if active is not None and active.source == text and dict(active.pins) == pins:
            return dataclasses.replace(_new_version_info(tenant, spec.id, active), unchanged=True)
        number = (s.scalar(select(func.max(PackageVersion.number))
                           .where(PackageVersion.package_id == pkg.id)) or 0) + 1
    _claim_events(s, tenant, pkg, spec)
    _claim_topics(s, tenant, pkg, spec)
    row = PackageVersion(package_id=pkg.id, number=number, source=text, spec=spec.to_dict(), pins=pins)
    s.add(row)
    pkg.active_version = number
    s.flush()
    # not cached: the caller may still roll back, and a rolled-back id can come again (SQLite)
    return _new_version_info(tenant, spec.id, row)


def announce_queues(ctx: Context, names: list[str]) -> None:
    """Declare queues and tell running workers to consume them (best effort:
    workers also re-read deployed queues every JOBICO_QUEUE_REFRESH seconds)."""
    try:
        declare_queues(ctx.celery, names)
        broadcast_consume(ctx.celery, names)
    except Exception as exc:  # the deploy is committed; workers will catch up
        log.warning("could not announce queues %s to workers: %s", names, exc)


def rollback(ctx: Context, tenant: str, name: str, number: int) -> VersionInfo:
    with ctx.db.session() as s:
        pkg = _package(s, tenant, name, lock=True)
        row = s.scalar(select(PackageVersion).where(PackageVersion.package_id == pkg.id,
                                                    PackageVersion.number == number))
        if row is None:
            raise NotFound(f"package {name!r} has no version {number}")
        info = _version_info(ctx, tenant, name, row)
        _claim_events(s, tenant, pkg, info.spec)
        _claim_topics(s, tenant, pkg, info.spec)
        pkg.active_version = number
    ctx.changed_routing()
    announce_queues(ctx, info.queues())
    schedules_changed(ctx)
    return info


def delete_package(ctx: Context, tenant: str, name: str) -> None:
    with ctx.db.session() as s:
        pkg = _package(s, tenant, name, lock=True)
        ids = list(s.scalars(select(PackageVersion.id).where(PackageVersion.package_id == pkg.id)))
        s.execute(delete(EventRoute).where(EventRoute.package_id == pkg.id))
        s.delete(pkg)
    ctx.changed_routing()
    for vid in ids:
        ctx.versions.pop(vid)
    schedules_changed(ctx)
    # its queued executions may sit on queues no worker consumes any more: their fate now (the
    # lease recovery's sweep does it too, should this process stop here)
    try:
        leases.end_orphans(ctx, package=(tenant, name))
    except Exception as exc:
        log.warning("package %s/%s deleted; its queued executions are left to the lease recovery: %s",
                    tenant, name, exc)


def _package(s, tenant: str, name: str, lock: bool = False) -> Package:
    q = select(Package).where(Package.tenant_id == tenant, Package.name == name)
    if lock:
        q = q.with_for_update()
    pkg = s.scalar(q)
    if pkg is None:
        raise NotFound(f"package {name!r} does not exist in tenant {tenant!r}")
    return pkg


def get_package(ctx: Context, tenant: str, name: str) -> tuple[Package, list[PackageVersion]]:
    with ctx.db.session() as s:
        pkg = _package(s, tenant, name)
        return pkg, list(pkg.versions)


def list_packages(ctx: Context, tenant: str) -> list[Package]:
    with ctx.db.session() as s:
        return list(s.scalars(select(Package).where(Package.tenant_id == tenant).order_by(Package.name)))


def active_queues(ctx: Context, tenants=None) -> set[str]:
    """Every queue of every version that may still have work (all versions of live packages).

    ``tenants``: only these tenants' queues (a per-tenant worker pool); None = all.
    """
    query = (select(Package.tenant_id, Package.name, PackageVersion.spec)
             .join(PackageVersion, PackageVersion.package_id == Package.id))
    if tenants is not None:
        query = query.where(Package.tenant_id.in_(list(tenants)))
    with ctx.db.session() as s:
        rows = s.execute(query).all()
    return {queue_name(t, p, q["id"]) for t, p, spec in rows for q in spec["queues"]}
