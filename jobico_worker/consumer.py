"""The worker's Celery consumer: task events leave in batches, off each task's turn.

Celery buffers task events (``task-received``, ``task-started``, ``task-succeeded``...) and
its consumer publishes the buffer at the next turn of the event loop: with one task in
flight per pool process (``worker_prefetch_multiplier`` 1, late acks) that is about three
Redis ``PUBLISH`` round trips per task in the main process, between one task's result and
the next task's dispatch. Here the buffer is published at most ``EVENTS_FLUSH_S`` after its
first event (or as soon as Celery's buffer limit is reached, and at shutdown): the same
events, in the same order, as ``task.multi`` messages of several tasks each. Task events only
serve monitoring (Flower); nothing of an execution's delivery depends on them.
"""
from __future__ import annotations

import contextlib

from celery.worker.consumer import Consumer as CeleryConsumer

EVENTS_FLUSH_S = 0.1  # the longest a task event waits in the buffer


class Consumer(CeleryConsumer):
    _events_flush = None  # the timer entry of the next flush, while one is pending

    def on_send_event_buffered(self):
        if self.hub is None:
            return super().on_send_event_buffered()
        due = self._events_flush
        if due is None or due.canceled:  # a reconnection cancels the entries made meanwhile
            self._events_flush = self.hub.call_later(EVENTS_FLUSH_S, self._flush_events_due)

    def _flush_events_due(self):
        self._events_flush = None
        self._flush_events()

    def shutdown(self):
        with contextlib.suppress(Exception):  # what is still buffered, as the loop stops
            self._flush_events()
        super().shutdown()
