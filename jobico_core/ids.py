"""UUIDv7 execution ids (RFC 9562): time-ordered, so ids sort by creation."""
from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def uuid7() -> str:
    """A UUIDv7 string, monotonic within a process (12-bit counter in rand_a)."""
    return uuid7s(1)[0]


def uuid7s(n: int) -> list[str]:
    """``n`` UUIDv7 strings in increasing order (``uuid7``'s, drawn together: one lock, one
    read of the random source; a request's 100 events take 0.1 ms instead of 1)."""
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms = ms
            # a random start (leaving headroom), taken by the first id below
            _counter = (int.from_bytes(os.urandom(2), "big") & 0x3FF) - 1
        stamps = []
        for _ in range(n):
            _counter += 1
            if _counter > 0xFFF:  # counter exhausted in this millisecond: borrow the next one
                _last_ms += 1
                _counter = 0
            stamps.append((_last_ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | _counter << 64 | 0b10 << 62)
    rand = os.urandom(8 * n)
    out = []
    for i, stamp in enumerate(stamps):
        h = f"{stamp | int.from_bytes(rand[8 * i:8 * i + 8], 'big') & ((1 << 62) - 1):032x}"
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return False
    return True
