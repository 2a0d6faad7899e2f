"""Cron triggers: which schedules are deployed, and firing one.

A fire enters the webhook's path (``ingest.submit``: queue cap and rate
limit, an execution row ``queued`` with ``trigger=cron``, ``submitter=cron``
and ``scheduled_at``, then the task on the tenant's queue). The database
refuses a second row for the same tenant, event and ``scheduled_at``
(unique index), so a fire is recorded once whichever beat process makes it.
The timing (when to fire, which beat fires) is ``jobico_worker.beat``'s.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..cron import Cron
from ..db import Package, PackageVersion
from ..errors import TooManyRequests
from .context import Context
from .ingest import submit
from .packages import route
from .triggers import SCHEDULES_CHANGED

log = logging.getLogger("jobico.beat")

SUBMITTER = "cron"


@dataclass(frozen=True)
class Schedule:
    """A schedule of an active package version."""
    tenant: str
    package: str
    event: str
    version_id: int
    cron: Cron
    deployed_at: dt.datetime

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What identifies a schedule across re-reads: a redeploy with the same cron keeps its timing."""
        return self.tenant, self.event, self.cron.expression, self.cron.timezone


def deployed_schedules(ctx: Context) -> list[Schedule]:
    """Every schedule of every package's active version."""
    query = (select(Package.tenant_id, Package.name, PackageVersion.id, PackageVersion.spec,
                    PackageVersion.created_at)
             .join(PackageVersion, PackageVersion.package_id == Package.id)
             .where(PackageVersion.number == Package.active_version))
    with ctx.db.session() as s:
        rows = s.execute(query).all()
    out = []
    for tenant, package, version_id, spec, created_at in rows:
        for event, ev in (spec.get("events") or {}).items():
            sched = ev.get("schedule")
            if sched:
                out.append(Schedule(tenant, package, event, version_id,
                                    Cron(sched["cron"], sched.get("timezone") or "UTC"), created_at))
    return sorted(out, key=lambda s: s.key)


def generation(ctx: Context) -> int:
    """The change counter deploys, rollbacks and deletes bump (``triggers.schedules_changed``)."""
    return int(ctx.redis.get(SCHEDULES_CHANGED) or 0)


def fire(ctx: Context, schedule: Schedule, when: dt.datetime) -> str | None:
    """Enqueue the scheduled event for fire time ``when``; returns the execution id, or None
    when it was not fired: already fired (by another beat), no longer deployed with this
    cron, or refused by the queue cap / rate limit (logged). Infrastructure errors raise.
    """
    info = route(ctx, schedule.tenant, schedule.event)
    ev = info.spec.events.get(schedule.event) if info is not None else None
    if ev is None or ev.schedule is None or ev.schedule.parsed() != schedule.cron:
        log.info("schedule of %s/%s changed before %s: not fired", schedule.tenant, schedule.event,
                 when.isoformat())
        return None
    try:
        ids = submit(ctx, info, schedule.event, [ev.schedule.payload], submitter=SUBMITTER, trigger="cron",
                     scheduled_at=when)
    except IntegrityError:
        log.info("%s/%s at %s was already fired", schedule.tenant, schedule.event, when.isoformat())
        return None
    except TooManyRequests as exc:
        log.warning("%s/%s at %s not fired: %s", schedule.tenant, schedule.event, when.isoformat(), exc,
                    extra={"tenant": schedule.tenant, "event": schedule.event})
        return None
    log.info("fired %s/%s/%s for %s: execution %s", schedule.tenant, schedule.package, schedule.event,
             when.isoformat(), ids[0], extra={"tenant": schedule.tenant, "package": schedule.package,
                                               "event": schedule.event, "execution_id": ids[0]})
    return ids[0]
