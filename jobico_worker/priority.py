"""A prioritised execution's task on the worker: a slot of its queue, which runs the best
prioritised execution waiting there (``jobico_core.priority``), before anything else is done.

The slot's pick is remembered in Redis, so a redelivered or retried slot task runs the same
execution, treated as a redelivery of that execution's own task would be; a pick already final
(cancelled, or run by a lease recovery's task) or gone is skipped for the next.
"""
from __future__ import annotations

from sqlalchemy import bindparam, select

from jobico_core import priority
from jobico_core.broker import TaskMessage
from jobico_core.db import TERMINAL_STATUSES, Execution
from jobico_core.services.context import Context
from jobico_core.services.executions import lock_names

_EX = Execution.__table__
_ROW = select(_EX.c.id, _EX.c.payload, _EX.c.tenant_id, _EX.c.package, _EX.c.event, _EX.c.queue, _EX.c.locks,
              _EX.c.flow, _EX.c.status).where(_EX.c.id == bindparam("b_id"))
MAX_SKIPS = 100


def choose(ctx: Context, slot: TaskMessage) -> TaskMessage:
    """The execution slot ``slot`` runs, as its own task message (no priority: it is not a slot)."""
    own = TaskMessage(slot.execution_id, slot.payload, slot.tenant, slot.package, slot.event, slot.queue,
                      slot.locks, None, None, slot.flow)
    skip = None
    for _ in range(MAX_SKIPS):
        picked = priority.pick(ctx.redis, slot.queue, slot.execution_id, skip)
        if picked is None or picked == slot.execution_id:
            return own
        with ctx.db.session() as s:
            row = s.execute(_ROW, {"b_id": picked}).first()
        if row is not None and row.status not in TERMINAL_STATUSES:
            return TaskMessage(row.id, row.payload, row.tenant_id, row.package, row.event, row.queue,
                               lock_names(row.locks), None, None, row.flow)
        skip = picked
    return own
