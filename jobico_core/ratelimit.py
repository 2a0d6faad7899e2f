"""Per-tenant token bucket in Redis: shared by every API process."""
from __future__ import annotations

import math
import time

_BUCKET = """
local rate, burst, now, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or burst
local ts = tonumber(b[2]) or now
if now > ts then tokens = math.min(burst, tokens + (now - ts) * rate) end
local ok = 0
if tokens >= n then tokens = tokens - n; ok = 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(math.max(now, ts)))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return {ok, tostring(tokens)}
"""


def take(redis_client, tenant: str, n: int, rate: int, burst: int) -> float:
    """Take ``n`` tokens; returns 0 when allowed, else the seconds to wait."""
    script = redis_client.register_script(_BUCKET)
    ok, tokens = script(keys=[f"jobico:rate:{tenant}"], args=[rate, burst, repr(time.time()), n])
    if int(ok):
        return 0.0
    return max(0.001, (n - float(tokens)) / rate)


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
