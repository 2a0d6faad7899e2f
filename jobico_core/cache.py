"""A small thread-safe LRU used for every in-process cache (versions, schema
validators, compiled modules): one implementation, bounded everywhere."""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class LRU(Generic[V]):
    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
            return value

    def put(self, key: Hashable, value: V) -> V:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def get_or_create(self, key: Hashable, create: Callable[[], V]) -> V:
        value = self.get(key)
        if value is None:
            value = self.put(key, create())
        return value

    def pop(self, key: Hashable) -> None:
        with self._lock:
            self._items.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class TTLCache:
    """A bounded LRU whose entries expire ``ttl`` seconds after they were stored.

    For lookups that may be served slightly stale (the webhook's tenant, key and
    route reads: JOBICO_WEBHOOK_CACHE_SECONDS); ``ttl`` 0 disables it.
    """

    def __init__(self, ttl: float, size: int = 10000, clock: Callable[[], float] | None = None):
        import time
        self.ttl = ttl
        self._lru: LRU[tuple] = LRU(size)
        self._clock = clock or time.monotonic

    def get(self, key: Hashable):
        if self.ttl <= 0:
            return None
        hit = self._lru.get(key)
        if hit is None:
            return None
        expires, value = hit
        if self._clock() >= expires:
            self._lru.pop(key)
            return None
        return value

    def put(self, key: Hashable, value):
        if self.ttl > 0:
            self._lru.put(key, (self._clock() + self.ttl, value))
        return value

    def clear(self) -> None:
        self._lru.clear()
