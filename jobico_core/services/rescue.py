"""Re-publish executions left ``queued`` with no task anywhere in Redis.

A row is committed ``queued`` before its task is published, and the task
normally lives in Redis until the execution is recorded: first on its queue
(a list), then, once a worker has taken it, in kombu's ``unacked`` hash. Two
rare failures can still leave a row with no task at all:

- kombu's Redis transport takes a message off the list (``BRPOP``) and only
  then copies it into ``unacked``: a Redis crash between the two loses the
  message, even with ``appendfsync always``;
- a webhook request whose publish failed could not delete its rows because
  the database failed too.

The rescue finds rows still ``queued`` (not dead-lettered: those wait for
the tenant's retry) ``JOBICO_RESCUE_AFTER`` seconds after they were created,
on queues that are empty (a backlog is left alone: those tasks are on their
way), whose id appears in no ``unacked`` message, and publishes their tasks
again. A task published twice is harmless: the claim
is guarded, so an execution runs and is recorded once. Workers run it (one
at a time, behind a Redis lock) every ``rescue_after / 2`` seconds.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import logging

from sqlalchemy import select

from ..broker import publish
from ..db import Execution, utcnow
from .context import Context
from .executions import task_message

log = logging.getLogger(__name__)

LOCK_KEY = "jobico:rescue:lock"
UNACKED_KEY = "unacked"  # kombu's Redis transport (no global_keyprefix is configured)
MAX_PER_SWEEP = 1000


def _unacked_texts(redis) -> list[str]:
    """The decoded headers and bodies of every message a worker holds (small: prefetch x workers)."""
    texts = []
    for raw in redis.hvals(UNACKED_KEY):
        try:
            message = json.loads(raw)[0]
            body = message.get("body", "")
            if message.get("properties", {}).get("body_encoding") == "base64":
                body = base64.b64decode(body).decode("utf-8", "replace")
            texts.append(json.dumps(message.get("headers") or {}) + body)
        except (ValueError, TypeError, IndexError, AttributeError):
            texts.append(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw))
    return texts


def rescue_stalled(ctx: Context, older_than: float, *, now: dt.datetime | None = None,
                   limit: int = MAX_PER_SWEEP) -> list[str]:
    """Publish again the tasks of stalled ``queued`` executions (see the module); returns their ids."""
    cutoff = (now or utcnow()) - dt.timedelta(seconds=older_than)
    with ctx.db.session() as s:
        rows = list(s.scalars(select(Execution)
                              .where(Execution.status == "queued", Execution.dead_lettered.is_(False),
                                     Execution.created_at < cutoff)
                              .order_by(Execution.id).limit(limit)))
        messages = [task_message(e) for e in rows]
    if not messages:
        return []
    redis = ctx.redis
    busy = {q for q in {m.queue for m in messages} if redis.llen(q) > 0}
    held = _unacked_texts(redis)
    lost = [m for m in messages
            if m.queue not in busy and not any(m.execution_id in text for text in held)]
    if lost:
        publish(ctx.celery, lost)
        for m in lost:
            log.warning("re-published the task of execution %s (tenant %s, queue %s): still queued after "
                        "%.0f s with no task in Redis", m.execution_id, m.tenant, m.queue, older_than)
    return [m.execution_id for m in lost]


def sweep_period(settings) -> float:
    """Seconds between two sweeps: half of ``JOBICO_RESCUE_AFTER``, at least 1; 0 (never) when
    ``JOBICO_RESCUE_AFTER`` is 0, which turns the rescue off."""
    after = settings.rescue_after
    return max(1.0, after / 2) if after > 0 else 0


def sweep(ctx: Context, older_than: float) -> list[str]:
    """``rescue_stalled`` by one worker at a time (a Redis lock held for half the period)."""
    if older_than <= 0 or not ctx.redis.set(LOCK_KEY, "1", nx=True, px=max(1000, int(older_than * 500))):
        return []
    return rescue_stalled(ctx, older_than)
