"""Priorities within a tenant's queue (an event's ``priority:``, a request's X-Jobico-Priority).

Fairness between tenants is the queues' round robin (docs/delivery.md): every execution is one
task on its queue's list, whatever its priority, so a tenant's priorities never take another
tenant's turns. Within a queue, a prioritised execution's task is a *slot*: when the worker
receives it, it runs the best prioritised execution of that queue waiting then, not
necessarily its own (whose own task, later, takes another). "Best" is the lowest
``created_ms - priority x age_ms``: a higher priority goes first, but every ``age_ms``
(JOBICO_PRIORITY_AGE_SECONDS) of waiting is worth one priority step, so a low priority is never
starved: it passes newer higher ones once it has waited long enough.

Redis keys: ``jobico:prio:<queue>`` a sorted set of the queue's prioritised executions waiting,
scored as above; ``jobico:prio:slot:<slot id>`` the execution a slot took (kept a day), so a
redelivered or retried slot task runs the same execution. A slot that finds the set empty runs
its own execution (its row decides: already final, it does nothing).
"""
from __future__ import annotations

from collections.abc import Iterable

PREFIX = "jobico:prio:"
SLOT_TTL_MS = 24 * 3600 * 1000

# KEYS: the queue's set, the slot's key; ARGV: skip (an execution the slot took that must not run:
# '' for none). Returns the execution the slot runs, or false when the set is empty.
_PICK = """
local taken = redis.call('GET', KEYS[2])
if taken and taken ~= ARGV[1] then return taken end
local top = redis.call('ZPOPMIN', KEYS[1])
if #top == 0 then
  redis.call('DEL', KEYS[2])
  return false
end
redis.call('SET', KEYS[2], top[1], 'PX', ARGV[2])
return top[1]
"""


def queue_key(queue: str) -> str:
    return f"{PREFIX}{queue}"


def score(execution_id: str, priority: int, age_s: float) -> float:
    """Lower runs first: creation time (ms, the UUIDv7's first 48 bits) minus one ``age_s`` per
    priority step."""
    return int(execution_id.replace("-", "")[:12], 16) - priority * age_s * 1000


def add(redis, rows: Iterable, age_s: float) -> None:
    """Put the prioritised rows (``priority`` set) in their queues' sets (one pipeline)."""
    pipe = redis.pipeline(transaction=False)
    n = 0
    for r in rows:
        if r.priority:
            pipe.zadd(queue_key(r.queue), {r.id: score(r.id, r.priority, age_s)})
            n += 1
    if n:
        pipe.execute()


def pick(redis, queue: str, slot: str, skip: str | None = None) -> str | None:
    """The execution slot ``slot`` runs (the best waiting, or the one it took before); None when
    the queue's set is empty. ``skip``: the one it took is not queued any more: take the next."""
    script = redis.register_script(_PICK)
    got = script(keys=[queue_key(queue), f"{PREFIX}slot:{slot}"], args=[skip or "", SLOT_TTL_MS])
    return got.decode() if isinstance(got, bytes) else got


def waiting(redis, queue: str) -> list[str]:
    """The queue's prioritised executions waiting, the next first."""
    return [m.decode() if isinstance(m, bytes) else m for m in redis.zrange(queue_key(queue), 0, -1)]
