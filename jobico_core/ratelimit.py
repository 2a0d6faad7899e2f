"""Webhook admission in one Redis round trip: the tenant's token bucket (shared by
every API process), the target queue's depth and, for a signed request, whether
its signature was already spent, decided atomically in Lua; for one request
(``admit``) or for the requests of one group commit together (``admit_all``)."""
from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import redis

# Admission of one request, or of several of one tenant and queue decided together in group order
# (``admit_all``): exactly as that many calls one after the other at the same instant.
# KEYS[1] bucket, KEYS[2] queue list, KEYS[3] a counter (the routing generation; '' when no request
# compares it), then each request's spent-signature record ('' for none); ARGV rate, burst, now,
# max_queued, then five per request: n (events), tasks (its tasks: one per JOBICO_TASK_BATCH events),
# the record's lifetime in seconds, '1' to compare the counter with the next value (its expected
# value, '' for none) first. The queue's depth is in tasks (its length: the requests' own tasks are
# published after their admission). Returns {verdict, tokens, depth} per request, one after the
# other: 1 admitted, 0 over the rate, 2 queue full (no token spent), 3 signature already spent
# (nothing looked at), 4 the counter is not the one expected (nothing looked at; its value in place
# of the tokens). A record is kept only when its request is admitted.
_ADMIT = """
local rate, burst, now, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local generation, depth, tokens, ts
local out = {}
for i = 0, (#ARGV - 4) / 5 - 1 do
  local a, once = 5 + 5 * i, KEYS[4 + i]
  local n, tasks = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  if ARGV[a + 3] == '1' and not generation then generation = redis.call('GET', KEYS[3]) or '' end
  if ARGV[a + 3] == '1' and generation ~= ARGV[a + 4] then
    table.insert(out, 4); table.insert(out, generation); table.insert(out, 0)
  elseif once ~= '' and not redis.call('SET', once, '1', 'NX', 'EX', tonumber(ARGV[a + 2])) then
    table.insert(out, 3); table.insert(out, '0'); table.insert(out, 0)
  else
    if not depth then
      depth = redis.call('LLEN', KEYS[2])
      local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
      tokens = tonumber(b[1]) or burst
      ts = tonumber(b[2]) or now
      if now > ts then tokens = math.min(burst, tokens + (now - ts) * rate) end
    end
    local verdict = 0
    if depth + tasks > cap then verdict = 2 elseif tokens >= n then tokens = tokens - n; verdict = 1 end
    if once ~= '' and verdict ~= 1 then redis.call('DEL', once) end
    table.insert(out, verdict); table.insert(out, tostring(tokens)); table.insert(out, depth)
  end
end
if depth then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(math.max(now, ts)))
  redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
end
return out
"""
_SHA = hashlib.sha1(_ADMIT.encode()).hexdigest()


@dataclass(frozen=True)
class Admission:
    admitted: bool
    queue_full: bool
    wait: float      # seconds until the bucket holds enough tokens (0 when admitted)
    depth: int       # tasks already waiting on the queue
    replayed: bool = False  # the signature was spent by an earlier request (nothing else decided)
    # the counter of ``admit(expect=...)`` was not the value expected (nothing else decided):
    # ``counter`` is its value (None: it does not exist)
    moved: bool = False
    counter: bytes | None = None


class Ask(NamedTuple):
    """One request's part of ``admit_all``: the arguments of ``admit`` that are its own."""
    n: int
    tasks: int | None = None
    once: tuple[str, int] | None = None
    expect: tuple[str, bytes | None] | None = None


def admit(client: redis.Redis, tenant: str, queue: str, n: int, rate: int, burst: int,
          max_queued: int, tasks: int | None = None, once: tuple[str, int] | None = None,
          expect: tuple[str, bytes | None] | None = None) -> Admission:
    """``n`` events spend ``n`` tokens; they take ``tasks`` places on the queue (default ``n``).

    ``once``: (key, seconds) of a signed request's spent-signature record: refused (``replayed``)
    when the key exists, else set for that long if the request is admitted.
    ``expect``: (key, value) of a counter that must hold ``value`` (None: must not exist), checked
    first, in the same call: otherwise nothing is decided nor spent (``moved``, and its value)."""
    return admit_all(client, tenant, queue, [Ask(n, tasks, once, expect)], rate, burst, max_queued)[0]


def admit_all(client: redis.Redis, tenant: str, queue: str, asks: Sequence[Ask], rate: int, burst: int,
              max_queued: int) -> list[Admission]:
    """The admissions of several requests of ``tenant`` to ``queue`` in one Redis call, decided
    in their order as ``admit`` of each one after the other would (a bucket that cannot pay for
    them all admits the first ones, the same signature twice is replayed the second time). Every
    ``expect`` names the same counter."""
    keys: list[Any] = [f"jobico:rate:{tenant}", queue, ""]
    args: list[Any] = [rate, burst, repr(time.time()), max_queued]
    for n, tasks, once, expect in asks:
        keys.append(once[0] if once else "")
        args += (n, n if tasks is None else tasks, once[1] if once else 0)
        if expect is None:
            args += ("0", "")
            continue
        if expect[0] != keys[2]:
            if keys[2]:
                raise ValueError(f"admit_all compares one counter, not {keys[2]!r} and {expect[0]!r}")
            keys[2] = expect[0]
        args += ("1", expect[1] or b"")
    try:
        out = client.evalsha(_SHA, len(keys), *keys, *args)
    except redis.exceptions.NoScriptError:
        out = client.eval(_ADMIT, len(keys), *keys, *args)
    return [_admission(a.n, rate, int(out[i]), out[i + 1], int(out[i + 2]))
            for i, a in zip(range(0, len(out), 3), asks)]


def _admission(n: int, rate: int, verdict: int, tokens: Any, depth: int) -> Admission:
    if verdict == 4:
        return Admission(False, False, 0.0, 0, moved=True, counter=tokens or None)
    wait = 0.0 if verdict != 0 else max(0.001, (n - float(tokens)) / rate)
    return Admission(verdict == 1, verdict == 2, wait, depth, replayed=verdict == 3)


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
