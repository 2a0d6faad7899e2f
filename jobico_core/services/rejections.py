"""Rejected events: what a trigger with no caller to answer (the MQTT bridge) could not accept.

A webhook caller gets its 4xx answer; a device publishing to a broker gets
nothing back, so each message the bridge refuses is recorded here (why, where,
the start of the payload) for the tenant to read: ``GET /api/v1/rejections``,
``jobico rejections``. Rows older than ``REJECTED_KEEP_DAYS`` are deleted by the
bridge (``trim``).
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select

from ..canonical import dumps
from ..db import REJECTED_KEEP_DAYS, REJECTED_PAYLOAD_CHARS, RejectedEvent, Tenant, utcnow
from ..ids import uuid7
from .context import Context
from .executions import decode_cursor, encode_cursor

log = logging.getLogger(__name__)
REASONS = ("bad_request", "too_large", "invalid", "not_deployed")


def record(ctx: Context, tenant: str, *, event: str | None, trigger: str, source: str, reason: str,
           message: str, errors: dict | None, payload: bytes, rejection_id: str | None = None) -> str:
    """Store one rejection; returns its id."""
    text = payload[: REJECTED_PAYLOAD_CHARS * 4].decode("utf-8", "replace")[:REJECTED_PAYLOAD_CHARS]
    row = RejectedEvent(id=rejection_id or uuid7(), tenant_id=tenant, event=event, trigger=trigger,
                        source=source, reason=reason, message=message[:2000], errors=_bounded(errors or {}),
                        payload=text.replace("\x00", "\ufffd"), payload_size=len(payload), created_at=utcnow())
    with ctx.db.session() as s:
        s.add(row)
        s.flush()
        # kept only for a tenant that exists: its row locked until the commit, so a delete of the
        # tenant waits and then deletes this too (tenants.delete_tenant); after it, nothing is kept
        # under the name for whoever takes it next
        if s.scalar(select(Tenant.id).where(Tenant.id == tenant).with_for_update(key_share=True, read=True)) is None:
            s.rollback()
            log.info("rejection %s not kept: tenant %r does not exist (any more)", row.id, tenant)
            return row.id
    return row.id


def _bounded(errors: dict) -> dict:
    """At most the first 20 problems of a schema failure, as the webhook answers them."""
    text = dumps(errors)
    if len(text) <= 16384:
        return errors
    return {"truncated": [text[:16000]]}


def exists(ctx: Context, rejection_id: str) -> bool:
    with ctx.db.session() as s:
        return s.get(RejectedEvent, rejection_id) is not None


def to_dict(r: RejectedEvent) -> dict[str, Any]:
    return {"id": r.id, "tenant": r.tenant_id, "event": r.event, "trigger": r.trigger, "source": r.source,
            "reason": r.reason, "message": r.message, "errors": r.errors or {}, "payload": r.payload,
            "payload_size": r.payload_size,
            "created_at": r.created_at.isoformat().replace("+00:00", "Z") if r.created_at else None}


def list_rejections(ctx: Context, tenant: str, *, event: str | None = None, reason: str | None = None,
                    limit: int = 50, cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, keyset-paginated like the executions: (items, next cursor or None)."""
    before = decode_cursor(cursor)
    q = select(RejectedEvent).where(RejectedEvent.tenant_id == tenant)
    if event is not None:
        q = q.where(RejectedEvent.event == event)
    if reason is not None:
        q = q.where(RejectedEvent.reason == reason)
    if before:
        q = q.where(RejectedEvent.id < before)
    with ctx.db.session() as s:
        rows = list(s.scalars(q.order_by(RejectedEvent.id.desc()).limit(limit + 1)))
        items = [to_dict(r) for r in rows[:limit]]
    return items, encode_cursor(rows[limit - 1].id) if len(rows) > limit else None


def trim(ctx: Context, keep_days: int = REJECTED_KEEP_DAYS) -> int:
    """Delete rejections older than ``keep_days``; returns how many."""
    with ctx.db.session() as s:
        result = cast("CursorResult[Any]", s.execute(delete(RejectedEvent).where(
            RejectedEvent.created_at < utcnow() - dt.timedelta(days=keep_days))))
        return result.rowcount or 0
