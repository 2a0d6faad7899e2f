"""Named locks (an event's ``locks:``) and concurrency keys (``concurrency:``, jobico_core.flow):
counted leases in Redis, taken all at once, in order of arrival.

A lock has ``limit`` slots: a named lock one, a concurrency key its ``limit`` (passed by the
caller with each call, ``limits``). Its holder key is a sorted set of the executions holding it,
scored by when their lease runs out; a slot whose lease ran out is free again.

Within a tenant, executions whose events share a lock name never run at the same time.
Each lock is a Redis key holding the id of the execution that has it, with an expiry (the
*lease*): the worker running that execution renews it while the guest runs and deletes it on
any outcome; a worker killed mid-run stops renewing, so its leases run out and the locks free
themselves (``JOBICO_LOCK_LEASE_SECONDS``).

Taking several locks is one Lua script, so it is all or nothing: nobody ever holds one of an
execution's locks while waiting for another, and two events taking the same locks in different
orders cannot deadlock (the names are sorted anyway, ``PackageSpec`` keeps them so).

Order: an execution that cannot have its locks joins each lock's wait line, a sorted set of
execution ids (UUIDv7: creation order). A free lock goes only to the earliest waiter, so waiting
executions start in the order they were created, even when a later one asks at the moment the
lock frees. A waiter stays in line while it keeps asking (every poll refreshes it); one that has
not asked for ``stale`` seconds (its execution was cancelled, or its worker died) is dropped, so
a line never blocks on a ghost.

Hand-off: a waiter *parks* its task (the message to publish again, under a fresh token) and asks
again only after a long safety delay. Releasing a lock wakes the first parked waiter in its line:
it swaps that waiter's token and returns its message, which the releasing worker publishes at
once. The waiter's pending safety poll then carries a stale token and ends when it fires, so an
execution never has two live tasks. The parking key outlives the wait by ``2 x stale`` (token
``held``, then ``released``) to recognise such late polls; a task whose execution has no parking
key any more (a redelivery after a crash, long after) is taken as a first delivery.

Keys (``jobico:lock`` prefix, all expire): ``:<tenant>:<name>`` the holders,
``q:<tenant>:<name>`` the wait line, ``s:<tenant>:<name>`` when each waiter last asked,
``park:<id>`` a waiter's parked message and token, ``gone:<id>`` a cancelled waiter.
(The release script reads the parked keys of the waiters it finds: one Redis, not a cluster.)
"""
from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

PREFIX = "jobico:lock"

# KEYS: holders, line, seen for each lock, then the id's "gone" mark and its parking key.
# ARGV: execution id, lease ms, stale ms, the asking task's token ('' for a first delivery), the
# token and message to park under if it must wait, then each lock's limit (slots).
# Returns {1} when every lock was taken; {2} when the execution was cancelled while it waited
# (``forget``); {3} when the asking task's token is stale (a newer task carries the execution);
# else {0, index of the first blocking lock (1-based), blocker id, is the blocker a waiter ahead
# (1) or a holder (0), place in the longest line}.
_ACQUIRE = """
local id, lease, stale = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local gone, park = KEYS[#KEYS - 1], KEYS[#KEYS]
local n = (#KEYS - 2) / 3
if redis.call('EXISTS', gone) == 1 then
  for i = 1, n do
    redis.call('ZREM', KEYS[3 * i - 1], id)
    redis.call('ZREM', KEYS[3 * i], id)
  end
  redis.call('DEL', park)
  return {2}
end
if ARGV[4] ~= '' then
  local current = redis.call('HGET', park, 'token')
  if current and current ~= ARGV[4] then
    return {3}
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local blocked, blocker, ahead = 0, '', 0
for i = 1, n do
  local holders, line, seen = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  for _, ghost in ipairs(redis.call('ZRANGEBYSCORE', seen, '-inf', now - stale)) do
    redis.call('ZREM', line, ghost)
    redis.call('ZREM', seen, ghost)
  end
  redis.call('ZREMRANGEBYSCORE', holders, '-inf', now)
  if blocked == 0 then
    local free = tonumber(ARGV[6 + i]) - redis.call('ZCARD', holders)
    if free <= 0 then
      blocked, blocker = i, redis.call('ZRANGE', holders, 0, 0)[1]
    elseif redis.call('ZLEXCOUNT', line, '-', '(' .. id) >= free then
      blocked, blocker, ahead = i, redis.call('ZRANGE', line, 0, 0)[1], 1
    end
  end
end
if blocked == 0 then
  for i = 1, n do
    redis.call('ZADD', KEYS[3 * i - 2], now + lease, id)
    redis.call('PEXPIRE', KEYS[3 * i - 2], lease)
    redis.call('ZREM', KEYS[3 * i - 1], id)
    redis.call('ZREM', KEYS[3 * i], id)
  end
  redis.call('HDEL', park, 'message')
  redis.call('HSET', park, 'token', ARGV[4] ~= '' and ARGV[4] or 'held')
  redis.call('PEXPIRE', park, stale * 2)
  return {1}
end
redis.call('HSET', park, 'token', ARGV[5], 'message', ARGV[6])
redis.call('PEXPIRE', park, stale * 2)
local place = 0
for i = 1, n do
  redis.call('ZADD', KEYS[3 * i - 1], 0, id)
  redis.call('ZADD', KEYS[3 * i], now, id)
  redis.call('PEXPIRE', KEYS[3 * i - 1], stale * 2)
  redis.call('PEXPIRE', KEYS[3 * i], stale * 2)
  local rank = redis.call('ZRANK', KEYS[3 * i - 1], id)
  if rank > place then place = rank end
end
return {0, blocked, blocker, ahead, place}
"""

# KEYS: holders; ARGV: execution id, lease ms, then each lock's limit. Extends each lease still
# held by the id, takes back one that ran out while a slot stayed free, and returns how many of
# the locks are full of others now.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
local lost = 0
for i = 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  if redis.call('ZSCORE', KEYS[i], ARGV[1]) or redis.call('ZCARD', KEYS[i]) < tonumber(ARGV[2 + i]) then
    redis.call('ZADD', KEYS[i], now + lease, ARGV[1])
    redis.call('PEXPIRE', KEYS[i], lease)
  else
    lost = lost + 1
  end
end
return lost
"""

# KEYS: holders and line of each lock; ARGV: execution id, park key prefix, a token prefix, stale
# ms. Deletes only what the id holds; for each lock freed, wakes the first waiter in its line that
# has a parked task (a fresh token), skipping and dropping those that have none (ghosts); marks
# the id's own parking key 'released' (a safety poll of its still pending ends when it fires).
# Returns {freed, id, token, message, id, token, message, ...} for the caller to publish.
_RELEASE = """
local freed, out, woken = 0, {}, {}
for i = 1, #KEYS / 2 do
  local holders, line = KEYS[2 * i - 1], KEYS[2 * i]
  if redis.call('ZREM', holders, ARGV[1]) == 1 then
    freed = freed + 1
    for _, w in ipairs(redis.call('ZRANGE', line, 0, 9)) do
      local park = ARGV[2] .. w
      local message = redis.call('HGET', park, 'message')
      if message then
        if not woken[w] then
          woken[w] = true
          local token = ARGV[3] .. w
          redis.call('HSET', park, 'token', token)
          table.insert(out, w)
          table.insert(out, token)
          table.insert(out, message)
        end
        break
      end
      redis.call('ZREM', line, w)
    end
  end
end
local own = ARGV[2] .. ARGV[1]
if freed > 0 and redis.call('EXISTS', own) == 1 then
  redis.call('HDEL', own, 'message')
  redis.call('HSET', own, 'token', 'released')
  redis.call('PEXPIRE', own, ARGV[4])
end
table.insert(out, 1, freed)
return out
"""

# KEYS: lines and seen sets, then the id's parking key and "gone" mark; ARGV: execution id, the
# mark's life in ms.
_FORGET = """
for i = 1, #KEYS - 2 do redis.call('ZREM', KEYS[i], ARGV[1]) end
redis.call('DEL', KEYS[#KEYS - 1])
redis.call('SET', KEYS[#KEYS], '1', 'PX', ARGV[2])
return 1
"""


def _text(value):
    """A Redis reply as text (clients may or may not decode); None stays None."""
    return value.decode() if isinstance(value, bytes) else value


def holder_key(tenant: str, name: str) -> str:
    return f"{PREFIX}:{tenant}:{name}"


def _line_key(tenant: str, name: str) -> str:
    return f"{PREFIX}q:{tenant}:{name}"


def _seen_key(tenant: str, name: str) -> str:
    return f"{PREFIX}s:{tenant}:{name}"


def _gone_key(execution_id: str) -> str:
    return f"{PREFIX}gone:{execution_id}"


_PARK = f"{PREFIX}park:"


class Stale(Exception):
    """The asking task's token is stale: a newer task carries this execution (it was woken)."""


@dataclass(frozen=True)
class Wake:
    """A parked waiter woken by a release: publish ``message`` (with ``token``) now."""
    execution_id: str
    token: str
    message: str


class Gone(Exception):
    """The execution was cancelled while it waited for its locks: its task ends here."""


@dataclass(frozen=True)
class Blocked:
    """Why an execution cannot have its locks yet."""
    lock: str
    by: str            # the execution holding it, or the earlier waiter ahead of this one
    ahead: bool        # True: ``by`` waits too (it was there first); False: ``by`` holds the lock
    place: int         # this execution's place in its longest wait line (0: next)
    limit: int = 1     # the lock's slots (a named lock: 1; a concurrency key: its limit)

    def describe(self) -> str:
        """The ``waiting_for`` text of a queued execution."""
        if self.limit == 1:
            return f"{self.lock} ({'behind' if self.ahead else 'held by'} {self.by})"
        return f"{self.lock} ({'behind' if self.ahead else f'all {self.limit} running, one is'} {self.by})"


class Locks:
    """The named-lock leases of one Redis."""

    def __init__(self, redis, lease_s: float, stale_s: float | None = None, poll_s: float = 1.0):
        self.redis = redis
        self.lease_ms = max(1, int(lease_s * 1000))
        # a parked waiter re-asks every poll_s (its safety poll): a waiter is a ghost after
        # missing several of them, and never sooner than a lease or two
        self.stale_ms = int((stale_s if stale_s is not None else max(10.0, 2 * lease_s, 5 * poll_s)) * 1000)
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._forget = redis.register_script(_FORGET)

    def acquire(self, tenant: str, names: Sequence[str], execution_id: str, token: str | None = None,
                park: tuple[str, str] = ("", ""), limits: Mapping[str, int] | None = None) -> Blocked | None:
        """Take every lock in ``names`` for ``execution_id``, or none; None when taken.

        ``limits``: slots of the counted ones (a concurrency key: at most that many holders at
        once); a name not in it is a named lock, one holder.

        ``token``: the asking task's token (None for a first delivery); ``park``: (token,
        message) to park under when it must wait, for a release to wake it. Raises ``Gone``
        when the execution was cancelled while it waited (``forget``), ``Stale`` when ``token``
        is not the execution's current one (a newer task carries it).
        """
        names = sorted(names)
        keys = [k for n in names for k in (holder_key(tenant, n), _line_key(tenant, n), _seen_key(tenant, n))]
        slots = [(limits or {}).get(n, 1) for n in names]
        res = self._acquire(keys=keys + [_gone_key(execution_id), _PARK + execution_id],
                            args=[execution_id, self.lease_ms, self.stale_ms, token or "", park[0], park[1], *slots])
        if int(res[0]) == 1:
            return None
        if int(res[0]) == 2:
            raise Gone(execution_id)
        if int(res[0]) == 3:
            raise Stale(execution_id)
        i = int(res[1]) - 1
        return Blocked(names[i], _text(res[2]), bool(int(res[3])), int(res[4]), slots[i])

    def renew(self, tenant: str, names: Sequence[str], execution_id: str,
              limits: Mapping[str, int] | None = None) -> int:
        """Extend the leases; returns how many of the locks are full of others now (0: all kept)."""
        slots = [(limits or {}).get(n, 1) for n in names]
        return int(self._renew(keys=[holder_key(tenant, n) for n in names], args=[execution_id, self.lease_ms, *slots]))

    def release(self, tenant: str, names: Sequence[str], execution_id: str) -> list[Wake]:
        """Free what ``execution_id`` holds of ``names``; returns the waiters to wake (their
        tasks to publish now), at most one per freed lock."""
        keys = [k for n in names for k in (holder_key(tenant, n), _line_key(tenant, n))]
        res = self._release(keys=keys, args=[execution_id, _PARK, f"w{uuid.uuid4().hex[:12]}:", self.stale_ms * 2])
        res = [_text(r) for r in res[1:]]
        return [Wake(*res[i:i + 3]) for i in range(0, len(res), 3)]

    def forget(self, tenant: str, names: Sequence[str], execution_id: str) -> None:
        """Take a waiter out of its lines for good (it was cancelled): its next attempt raises
        ``Gone`` instead of joining them again."""
        keys = [k for n in names for k in (_line_key(tenant, n), _seen_key(tenant, n))]
        self._forget(keys=keys + [_PARK + execution_id, _gone_key(execution_id)],
                     args=[execution_id, self.stale_ms * 2])

    def state(self, tenant: str, limit: int = 500) -> tuple[list[dict], bool]:
        """The tenant's locks (and concurrency keys) that are held or waited for, by name: the
        holders (the one whose lease runs out first is ``holder``), that one's lease left (ms)
        and the waiting line in order; and whether there were more than ``limit``."""
        names: set[str] = set()
        for pattern in (holder_key(tenant, "*"), _line_key(tenant, "*")):
            start = len(pattern) - 1
            for key in self.redis.scan_iter(match=pattern, count=500):
                names.add(_text(key)[start:])
                if len(names) > limit:
                    break
        ordered = sorted(names)
        now = self._now_ms()
        pipe = self.redis.pipeline(transaction=False)
        for n in ordered[:limit]:
            pipe.zrangebyscore(holder_key(tenant, n), now, "+inf", withscores=True)
            pipe.zrange(_line_key(tenant, n), 0, -1)
        raw = pipe.execute()
        out = []
        for i, n in enumerate(ordered[:limit]):
            held, line = raw[2 * i: 2 * i + 2]
            holders, waiting = [_text(h) for h, _ in held], [_text(w) for w in line]
            if not holders and not waiting:
                continue
            out.append({"name": n, "holder": holders[0] if holders else None, "holders": holders,
                        "lease_ms": int(held[0][1] - now) if held else None, "waiting": waiting})
        return out, len(ordered) > limit

    def _now_ms(self) -> int:
        sec, usec = self.redis.time()
        return int(sec) * 1000 + int(usec) // 1000

    def holders(self, tenant: str, name: str) -> list[str]:
        """The executions holding ``name`` now (its lease not run out), the first to run out first."""
        return [_text(h) for h in self.redis.zrangebyscore(holder_key(tenant, name), self._now_ms(), "+inf")]

    def holder(self, tenant: str, name: str) -> str | None:
        held = self.holders(tenant, name)
        return held[0] if held else None

    def waiting(self, tenant: str, name: str) -> list[str]:
        return [_text(w) for w in self.redis.zrange(_line_key(tenant, name), 0, -1)]
