"""Webhook admission in one Redis round trip: the tenant's token bucket (shared by
every API process), the target queue's depth and, for a signed request, whether
its signature was already spent, decided atomically in Lua."""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any

import redis

# KEYS[1] bucket, KEYS[2] queue list, KEYS[3] a counter (the routing generation), KEYS[4]
# (optional) the request's spent-signature record; ARGV rate, burst, now, n (events), max_queued,
# tasks (the request's tasks: one per JOBICO_TASK_BATCH events), the record's lifetime in seconds,
# '1' to compare the counter with ARGV[9] (its expected value, '' for none) first. The queue's
# depth is in tasks (its length). Returns {verdict, tokens, depth}: 1 admitted, 0 over the rate,
# 2 queue full (no token spent), 3 signature already spent (nothing looked at), 4 the counter is
# not the one expected (nothing looked at; its value in place of the tokens). The record is kept
# only when admitted.
_ADMIT = """
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local n, cap, tasks = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
if ARGV[8] == '1' then
  local generation = redis.call('GET', KEYS[3]) or ''
  if generation ~= ARGV[9] then return {4, generation, 0} end
end
if KEYS[4] and not redis.call('SET', KEYS[4], '1', 'NX', 'EX', tonumber(ARGV[7])) then
  return {3, '0', 0}
end
local depth = redis.call('LLEN', KEYS[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or burst
local ts = tonumber(b[2]) or now
if now > ts then tokens = math.min(burst, tokens + (now - ts) * rate) end
local verdict = 0
if depth + tasks > cap then verdict = 2 elseif tokens >= n then tokens = tokens - n; verdict = 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(math.max(now, ts)))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
if KEYS[4] and verdict ~= 1 then redis.call('DEL', KEYS[4]) end
return {verdict, tostring(tokens), depth}
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


def admit(client: redis.Redis, tenant: str, queue: str, n: int, rate: int, burst: int,
          max_queued: int, tasks: int | None = None, once: tuple[str, int] | None = None,
          expect: tuple[str, bytes | None] | None = None) -> Admission:
    """``n`` events spend ``n`` tokens; they take ``tasks`` places on the queue (default ``n``).

    ``once``: (key, seconds) of a signed request's spent-signature record: refused (``replayed``)
    when the key exists, else set for that long if the request is admitted.
    ``expect``: (key, value) of a counter that must hold ``value`` (None: must not exist), checked
    first, in the same call: otherwise nothing is decided nor spent (``moved``, and its value)."""
    keys: tuple[str, ...] = (f"jobico:rate:{tenant}", queue, expect[0] if expect else "")
    args: tuple[Any, ...] = (rate, burst, repr(time.time()), n, max_queued, n if tasks is None else tasks,
                             once[1] if once else 0, "1" if expect else "0", (expect[1] or b"") if expect else "")
    if once is not None:
        keys += (once[0],)
    try:
        verdict, tokens, depth = client.evalsha(_SHA, len(keys), *keys, *args)
    except redis.exceptions.NoScriptError:
        verdict, tokens, depth = client.eval(_ADMIT, len(keys), *keys, *args)
    verdict, depth = int(verdict), int(depth)
    if verdict == 4:
        return Admission(False, False, 0.0, 0, moved=True, counter=tokens or None)
    wait = 0.0 if verdict != 0 else max(0.001, (n - float(tokens)) / rate)
    return Admission(verdict == 1, verdict == 2, wait, depth, replayed=verdict == 3)


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
