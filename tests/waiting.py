"""The tests' one way to wait: poll a condition until a deadline (never a fixed sleep).

    wait_until(lambda: api.get(...).status_code == 200, timeout=30, what="the API")

returns the condition's first truthy value; on the deadline raises AssertionError naming
``what`` and the last value (or exception) seen. ``what`` may be a function, called then for the
text (a log's tail as it is at the deadline). ``ignore``: exceptions that count as "not yet"
(a server still starting refuses connections).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float = 30.0, *, what: str | Callable[[], str] = "the condition",
               interval: float = 0.05, ignore: tuple[type[BaseException], ...] = ()) -> T:
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            last = condition()
            if last:
                return last
        except ignore as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what() if callable(what) else what}: not within {timeout:g}s (last: {last!r})")
        time.sleep(interval)


def holds_for(condition: Callable[[], object], seconds: float, *, what: str = "the condition",
              interval: float = 0.05) -> None:
    """Assert that ``condition`` stays true for ``seconds`` (what must NOT happen, e.g. a duplicate
    or a fire after a delete, is given that long to show up): checked all along, failing at once."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        assert value, f"{what}: broken after {seconds - (deadline - time.monotonic()):.2f}s (got {value!r})"
        if time.monotonic() >= deadline:
            return
        time.sleep(interval)
