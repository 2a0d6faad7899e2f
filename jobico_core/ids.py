"""UUIDv7 execution ids (RFC 9562): time-ordered, so ids sort by creation."""
from __future__ import annotations

import os
import threading
import time
import uuid
from itertools import repeat

_lock = threading.Lock()
_last_ms = 0
_counter = 0

# the version nibble (7) and each 12-bit counter value, as hex: an id's third group
_VERSION_COUNTER = [f"7{c:03x}" for c in range(0x1000)]
# each byte with its top two bits set to the variant, 10: the first byte of rand_b
_VARIANT = bytes(b & 0x3F | 0x80 for b in range(256))


def uuid7() -> str:
    """A UUIDv7 string, monotonic within a process (12-bit counter in rand_a)."""
    return uuid7s(1)[0]


def uuid7s(n: int) -> list[str]:
    """``n`` UUIDv7 strings in increasing order (``uuid7``'s, drawn together: one lock, one
    read of the random source). Built a millisecond's run at a time by C-level string
    operations, none per id in Python (100 ids: ~20 us, against 74 us formatting each)."""
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms = ms
            # a random start (leaving headroom), taken by the first id below
            _counter = (int.from_bytes(os.urandom(2), "big") & 0x3FF) - 1
        runs = []  # (millisecond, first counter, how many)
        left = n
        while left:
            take = min(left, 0xFFF - _counter)
            if take == 0:  # counter exhausted in this millisecond: borrow the next one
                _last_ms += 1
                _counter = -1
                continue
            runs.append((_last_ms, _counter + 1, take))
            _counter += take
            left -= take
    # rand_b: 62 random bits after the 2 variant bits, as 2 + 6 bytes per id (the 2 first, then
    # the 6), the variant set on each first byte by one translate; then each id joined from its
    # four groups ("-".join mapped over them: no Python code per id)
    rand = bytearray(os.urandom(8 * n))
    rand[0:2 * n:2] = rand[0:2 * n:2].translate(_VARIANT)
    heads = rand[:2 * n].hex(",", 2).split(",")
    tails = rand[2 * n:].hex(",", 6).split(",")
    out: list[str] = []
    i = 0
    for ms, first, count in runs:
        hex_ms = f"{ms & ((1 << 48) - 1):012x}"
        out += map("-".join, zip(repeat(f"{hex_ms[:8]}-{hex_ms[8:]}", count), _VERSION_COUNTER[first:first + count],
                                 heads[i:i + count], tails[i:i + count]))
        i += count
    return out


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return False
    return True
