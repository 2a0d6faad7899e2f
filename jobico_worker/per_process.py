"""One object per process and context: what a worker's pool process keeps running beside its
tasks (a thread: the lease heartbeat, the stream announcer). Threads do not survive a fork, so a
forked child makes its own; a new context (tests) makes a new one."""
from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from jobico_core.services.context import Context

T = TypeVar("T")


class PerProcess(Generic[T]):
    """``get(ctx)``: this process's ``make(ctx)``, made once per pid and context (the object
    keeps its context as ``.ctx``)."""

    def __init__(self, make: Callable[[Context], T]):
        self._make = make
        self._items: dict[int, Any] = {}
        self._lock = threading.Lock()

    def get(self, ctx: Context) -> T:
        with self._lock:
            item = self._items.get(os.getpid())
            if item is None or item.ctx is not ctx:
                item = self._items[os.getpid()] = self._make(ctx)
            return item

    def current(self) -> T | None:
        """This process's object, if one was made."""
        return self._items.get(os.getpid())
