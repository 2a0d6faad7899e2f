"""This process's stream announcements, off the task's path.

A recorded execution is announced on its tenant's pub/sub channel (the live stream,
``jobico_core.services.stream``). Pub/sub is at most once and the stream's catch-up reads
from the database what it missed (every ``stream.CATCHUP_SECONDS``), so the announcement
does not need to be on the task's path: ``announce_many`` hands the records to a thread of
the process, which publishes everything handed to it meanwhile in one pipeline, in the
order given. A task saves the Redis round trip of its PUBLISH; while tasks follow each
other, several tasks' records go in one round trip.

If Redis cannot take them they are dropped with a warning, as the inline publish did (the
records are safe in the database; the stream's catch-up sends them). If the process exits
with some still pending, the same catch-up covers them.
"""
from __future__ import annotations

import atexit
import logging
import threading
from collections import deque

from jobico_core.services.context import Context
from jobico_core.services.executions import announce_many as publish_records

from .per_process import PerProcess

log = logging.getLogger("jobico.worker")

MAX_PENDING = 10_000  # records waiting at most (Redis away): the oldest are dropped past it
DRAIN_AT_EXIT_S = 2.0


class Announcer:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self._pending: deque[dict] = deque()
        self._cond = threading.Condition()
        self._busy = False
        self.published = 0     # records published (tests, diagnostics)
        self.dropped = 0
        threading.Thread(target=self._loop, name="jobico-announcer", daemon=True).start()

    def put(self, records: list[dict]) -> None:
        with self._cond:
            self._pending.extend(r for r in records if r)
            over = len(self._pending) - MAX_PENDING
            for _ in range(max(0, over)):
                self._pending.popleft()
            self.dropped += max(0, over)
            self._cond.notify()
        if over > 0:  # Redis has been away a while: the stream's catch-up sends them
            log.warning("stream announcements: %d dropped (more than %d waiting)", over, MAX_PENDING)

    def drain(self, timeout: float) -> bool:
        """Wait until everything handed over so far is published (or dropped); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending)
                batch = list(self._pending)
                self._pending.clear()
                self._busy = True
            try:
                self._publish(batch)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _publish(self, records: list[dict]) -> None:
        if publish_records(self.ctx, records):
            self.published += len(records)
        else:
            self.dropped += len(records)


_announcers: PerProcess[Announcer] = PerProcess(Announcer)


def announcer(ctx: Context) -> Announcer:
    """This process's announcer (threads do not survive a fork: one per pid)."""
    return _announcers.get(ctx)


def announce_many(ctx: Context, records: list[dict]) -> None:
    """Stream recorded executions on their tenants' channels, soon, in this order."""
    if records:
        announcer(ctx).put(records)


@atexit.register
def _drain_at_exit() -> None:
    a = _announcers.current()
    if a is not None:
        a.drain(DRAIN_AT_EXIT_S)
