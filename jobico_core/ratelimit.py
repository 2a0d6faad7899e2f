"""Webhook admission in one Redis round trip: the tenant's token bucket (shared by
every API process) and the target queue's depth, decided atomically in Lua."""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

import redis

# KEYS[1] bucket, KEYS[2] queue list; ARGV rate, burst, now, n (events), max_queued, tasks (the
# request's tasks: one per JOBICO_TASK_BATCH events). The queue's depth is in tasks (its length).
# Returns {verdict, tokens, depth}: 1 admitted, 0 over the rate, 2 queue full (no token spent).
_ADMIT = """
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local n, cap, tasks = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local depth = redis.call('LLEN', KEYS[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or burst
local ts = tonumber(b[2]) or now
if now > ts then tokens = math.min(burst, tokens + (now - ts) * rate) end
local verdict = 0
if depth + tasks > cap then verdict = 2 elseif tokens >= n then tokens = tokens - n; verdict = 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(math.max(now, ts)))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return {verdict, tostring(tokens), depth}
"""
_SHA = hashlib.sha1(_ADMIT.encode()).hexdigest()


@dataclass(frozen=True)
class Admission:
    admitted: bool
    queue_full: bool
    wait: float      # seconds until the bucket holds enough tokens (0 when admitted)
    depth: int       # tasks already waiting on the queue


def admit(client: redis.Redis, tenant: str, queue: str, n: int, rate: int, burst: int,
          max_queued: int, tasks: int | None = None) -> Admission:
    """``n`` events spend ``n`` tokens; they take ``tasks`` places on the queue (default ``n``)."""
    args = (rate, burst, repr(time.time()), n, max_queued, n if tasks is None else tasks)
    keys = (f"jobico:rate:{tenant}", queue)
    try:
        verdict, tokens, depth = client.evalsha(_SHA, 2, *keys, *args)
    except redis.exceptions.NoScriptError:
        verdict, tokens, depth = client.eval(_ADMIT, 2, *keys, *args)
    verdict, depth = int(verdict), int(depth)
    wait = 0.0 if verdict != 0 else max(0.001, (n - float(tokens)) / rate)
    return Admission(verdict == 1, verdict == 2, wait, depth)


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
