"""Group commit: concurrent callers of one process hand their items to one flush.

The webhook's single-event requests (``services.ingest``) go through it, in the spirit
of a Kafka producer's ``linger.ms`` / ``batch.size`` and a database's group commit:

* the first caller for a key becomes the **leader** of a new batch; callers arriving
  for the same key while that batch is still open join it as **followers**;
* the leader flushes as soon as no other flush of its key is in progress; with a
  linger it may wait longer, up to the linger, but only while the batch is not full and
  callers announced by ``coming()`` are still on their way (a request being parsed and
  checked that may join): an idle process flushes at once and adds no latency, linger
  or not; under load the callers arriving during a flush are gathered into the next one;
* every caller returns only after the flush of its batch returned, and a flush that
  raises raises in every caller of the batch (each gets its own copy of the error).

The flush of a key runs one at a time (the batches of one key stay in order); other
keys are independent.
"""
from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class _Batch(Generic[T]):
    __slots__ = ("items", "size", "callers", "opened", "done", "error")

    def __init__(self, opened: float):
        self.items: list[T] = []
        self.size = 0  # what the items count for against ``max_items``
        self.callers = 0
        self.opened = opened
        self.done = threading.Event()
        self.error: BaseException | None = None


class GroupCommit(Generic[T]):
    """``linger_s``: how long a leader waits for more callers (0: not at all, it flushes as soon
    as its key is free); ``max_items``: a batch takes no more items (a caller whose items do not
    fit opens the next batch; a caller may say what its items count for: ``submit(size=...)``).
    ``flushes``/``flushed_items``/``callers`` count what went through (the tests and benchmarks
    read them)."""

    def __init__(self, linger_s: float = 0.0, max_items: int = 100, clock: Callable[[], float] = time.monotonic):
        self.linger_s = linger_s
        self.max_items = max_items
        self._clock = clock
        self._cond = threading.Condition()
        self._open: dict[Hashable, _Batch[T]] = {}  # the batch of a key still taking callers
        self._busy: set[Hashable] = set()           # keys whose flush is running
        self._coming = 0                            # callers inside ``coming()`` not submitted yet
        self._local = threading.local()
        self.flushes = 0
        self.flushed_items = 0
        self.callers = 0

    @contextmanager
    def coming(self) -> Iterator[None]:
        """Announce a caller that may ``submit`` within the block (a lingering leader waits for
        it); it stops counting when it submits or leaves the block."""
        with self._cond:
            self._coming += 1
        self._local.coming = True
        try:
            yield
        finally:
            if self._local.coming:
                self._arrived()

    def _arrived(self) -> None:
        self._local.coming = False
        with self._cond:
            self._coming -= 1
            self._cond.notify_all()

    def submit(self, key: Hashable, items: list[T], flush: Callable[[list[T]], Any],
               size: int | None = None) -> None:
        """Have ``items`` flushed with those of concurrent callers of ``key``; returns once they
        were (``flush`` returned), raises what ``flush`` raised. ``flush`` is the leader's: every
        caller of a key must pass an equivalent one. ``size``: what the items count for against
        ``max_items`` (default: their number; an item that stands for several rows, say)."""
        if getattr(self._local, "coming", False):
            self._arrived()
        size = len(items) if size is None else size
        with self._cond:
            batch = self._open.get(key)
            if batch is not None and batch.size + size <= self.max_items:
                batch.items.extend(items)
                batch.size += size
                batch.callers += 1
                if batch.size >= self.max_items:
                    self._cond.notify_all()  # a lingering leader flushes now
                leader = False
            else:
                batch = self._open[key] = _Batch(self._clock())
                batch.items.extend(items)
                batch.size = size
                batch.callers = 1
                leader = True
        if not leader:
            batch.done.wait()
            if batch.error is not None:
                raise _copy(batch.error)
            return
        self._lead(key, batch, flush)

    def _lead(self, key: Hashable, batch: _Batch[T], flush: Callable[[list[T]], Any]) -> None:
        with self._cond:
            while True:
                wait = None
                if key not in self._busy:
                    wait = batch.opened + self.linger_s - self._clock()
                    if wait <= 0 or not self._coming or batch.size >= self.max_items:
                        break
                self._cond.wait(wait)
            if self._open.get(key) is batch:
                del self._open[key]  # closed: later callers open the next batch
            self._busy.add(key)
            self.flushes += 1
            self.flushed_items += batch.size
            self.callers += batch.callers
        try:
            flush(batch.items)
        except BaseException as exc:
            batch.error = exc
            raise
        finally:
            with self._cond:
                self._busy.discard(key)
                self._cond.notify_all()
            batch.done.set()


def _copy(exc: BaseException) -> BaseException:
    """A follower's own copy of the batch's error (one exception object raised in several
    threads would share and grow one traceback)."""
    try:
        own = copy.copy(exc)
    except Exception:  # pragma: no cover - an exception that cannot be copied: shared
        return exc
    own.__cause__ = exc  # the flush's traceback, for the logs
    return own
