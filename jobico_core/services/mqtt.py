"""MQTT triggers: which topics are deployed, and turning one received message into an event.

A message on ``<prefix>/<tenant>/<topic>`` belongs to that tenant; the event
whose ``mqtt.topic`` filter matches ``<topic>`` in the tenant's active package
versions receives it (deploys refuse overlapping filters, so there is at most
one). The payload is one event, checked exactly like one element of a webhook
body (``ingest.validated_element``), then it takes the webhook's path
(``ingest.submit``: queue cap and rate limit, the execution row ``queued``
with ``trigger=mqtt`` and ``submitter=mqtt:<topic>``, then the task). A message
that cannot become an event is recorded as a rejection (``rejections``), never
dropped in silence. The connection, subscriptions and acknowledgements are
``jobico_worker.mqtt_bridge``'s.

Redelivery (QoS 1): before a message is submitted, the id its execution (or
rejection) will have is remembered in Redis for DEDUPE_TTL seconds under the
message's topic, packet id and payload. A broker reuses a packet id only after
the message holding it was acknowledged, so when the same message comes again
with the DUP flag (the bridge died or lost its connection before acknowledging
it) the remembered id says whether it was already recorded: if so it is only
acknowledged again; if not (the bridge died before the commit) it is submitted
under that same id.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .. import metrics
from ..db import Execution, Package, PackageVersion
from ..errors import BadRequest, Invalid, TooLarge
from ..ids import uuid7
from ..mqtt import matches, namespaced, split_topic
from . import rejections
from .context import Context
from .ingest import submit, validated_element
from .packages import route
from .triggers import SCHEDULES_CHANGED

log = logging.getLogger("jobico.mqtt")

TRIGGER = "mqtt"
DEDUPE_TTL = 600  # seconds a message's execution id is remembered for redeliveries
_REJECT_REASONS = {BadRequest: "bad_request", TooLarge: "too_large", Invalid: "invalid"}


@dataclass(frozen=True)
class Subscription:
    """An ``mqtt:`` trigger of an active package version."""
    tenant: str
    package: str
    event: str
    topic: str  # the filter within the tenant's namespace
    qos: int

    def filter(self, prefix: str) -> str:
        return namespaced(prefix, self.tenant, self.topic)


@dataclass(frozen=True)
class Outcome:
    status: str  # accepted | duplicate | rejected
    tenant: str
    id: str | None = None  # the execution's (accepted, duplicate) or the rejection's
    reason: str | None = None
    message: str | None = None


def deployed_topics(ctx: Context) -> list[Subscription]:
    """Every ``mqtt:`` trigger of every package's active version."""
    query = (select(Package.tenant_id, Package.name, PackageVersion.spec)
             .join(PackageVersion, PackageVersion.package_id == Package.id)
             .where(PackageVersion.number == Package.active_version))
    with ctx.db.session() as s:
        rows = s.execute(query).all()
    out = []
    for tenant, package, spec in rows:
        for event, ev in (spec.get("events") or {}).items():
            m = ev.get("mqtt")
            if m:
                out.append(Subscription(tenant, package, event, m["topic"], int(m.get("qos", 1))))
    return sorted(out, key=lambda s: (s.tenant, s.topic, s.event))


def generation(ctx: Context) -> int:
    """The change counter deploys, rollbacks and deletes bump (shared with beat)."""
    return int(ctx.redis.get(SCHEDULES_CHANGED) or 0)


def submitter(topic: str) -> str:
    name = f"{TRIGGER}:{topic}"
    return name if len(name) <= 128 else name[:127] + "\u2026"


def receive(ctx: Context, subscriptions: list[Subscription], topic: str, payload: bytes, *, qos: int,
            packet_id: int = 0, dup: bool = False) -> Outcome | None:
    """Turn one message into an execution (or a recorded rejection).

    ``subscriptions``: what the bridge subscribed to (the candidates); the event's
    active version is checked again here, so a topic changed or deleted meanwhile
    is a rejection (``not_deployed``), not a stale event. Returns None for a topic
    outside every tenant's namespace (nothing to record it under). Raises on
    infrastructure failures (database, Redis) and ``TooManyRequests`` (queue cap,
    rate limit): the caller retries the same message, unacknowledged.
    """
    parts = split_topic(ctx.settings.mqtt_prefix, topic)
    if parts is None:
        log.warning("message on %r is outside the %s/<tenant>/ namespace: ignored", topic, ctx.settings.mqtt_prefix)
        return None
    tenant, rest = parts
    key = _dedupe_key(tenant, rest, packet_id, payload) if qos > 0 else None
    record_id = None
    if key is not None and dup:
        known = ctx.redis.get(key)
        if known is not None:
            record_id = known.decode() if isinstance(known, bytes) else str(known)
            if _recorded(ctx, record_id):
                metrics.mqtt_message(tenant, "duplicate")
                log.info("redelivered message on %s (packet %d) was already recorded as %s", topic, packet_id,
                         record_id)
                return Outcome("duplicate", tenant, record_id)
    record_id = record_id or uuid7()
    if key is not None:
        ctx.redis.set(key, record_id, ex=DEDUPE_TTL)

    sub = next((s for s in subscriptions if s.tenant == tenant and matches(s.topic, rest)), None)
    info = route(ctx, tenant, sub.event) if sub is not None else None
    ev = info.spec.events.get(sub.event) if info is not None and sub is not None else None
    if sub is None or info is None or ev is None or ev.mqtt is None or not matches(ev.mqtt.topic, rest):
        return _reject(ctx, tenant, None if sub is None else sub.event, rest, payload, record_id, "not_deployed",
                       f"no deployed event of tenant {tenant!r} has an MQTT topic matching {rest!r}", {})
    try:
        canonical = validated_element(ctx, info, sub.event, payload)
    except (BadRequest, TooLarge, Invalid) as exc:
        return _reject(ctx, tenant, sub.event, rest, payload, record_id, _REJECT_REASONS[type(exc)],
                       exc.message, exc.errors)
    try:
        ids = submit(ctx, info, sub.event, [canonical], submitter=submitter(rest), trigger=TRIGGER,
                     execution_id=record_id)
    except IntegrityError:  # recorded meanwhile under this id (a redelivery racing its first delivery)
        metrics.mqtt_message(tenant, "duplicate")
        return Outcome("duplicate", tenant, record_id)
    metrics.mqtt_message(tenant, "accepted")
    log.info("message on %s -> execution %s", topic, ids[0],
             extra={"tenant": tenant, "package": info.package, "event": sub.event, "execution_id": ids[0]})
    return Outcome("accepted", tenant, ids[0])


def _dedupe_key(tenant: str, topic: str, packet_id: int, payload: bytes) -> str:
    h = hashlib.sha256(f"{topic}\x00{packet_id}\x00".encode())
    h.update(payload)
    return f"jobico:mqtt:seen:{tenant}:{h.hexdigest()}"


def _recorded(ctx: Context, record_id: str) -> bool:
    with ctx.db.session() as s:
        if s.get(Execution, record_id) is not None:
            return True
    return rejections.exists(ctx, record_id)


def _reject(ctx: Context, tenant: str, event: str | None, topic: str, payload: bytes, record_id: str,
            reason: str, message: str, errors: dict) -> Outcome:
    try:
        rejections.record(ctx, tenant, event=event, trigger=TRIGGER, source=topic, reason=reason, message=message,
                          errors=errors, payload=payload, rejection_id=record_id)
    except IntegrityError:  # recorded meanwhile under this id
        return Outcome("duplicate", tenant, record_id)
    metrics.mqtt_message(tenant, "rejected", reason)
    log.warning("message on %s rejected (%s): %s", topic, reason, message,
                extra={"tenant": tenant, "event": event})
    return Outcome("rejected", tenant, record_id, reason, message)
