"""A warm shutdown of the prefork pool that reads its processes' last results.

Celery's warm shutdown (SIGTERM: what Kubernetes, Docker and ``jobico run`` send) first
``flush()``-es the pool: a task written to a pool process that has not yet acknowledged it is
dropped from the pool's cache (its message is restored to the queue at the end). The process
still runs it, sends its result and, before it exits, waits up to 30 s (billiard's
``GUARANTEE_MESSAGE_CONSUMPTION_RETRY_LIMIT`` x ``_INTERVAL``) for the main process to have read
that result. The main process, meanwhile, reads results only while its cache holds jobs
(``asynpool.ResultHandler.on_stop_not_started``: ``while cache and outqueues``), so nobody reads
it: the shutdown stalls 30 s, longer than the 30 s grace Kubernetes gives a pod by default, and a
SIGKILL at the end of the grace leaves every message the worker had prefetched unacknowledged in
Redis for the visibility timeout (an hour). Celery 5.7.0 / billiard 4.3.2; seen under a steady
flow of events (``tests/worker/test_warm_shutdown.py``, ``make stateful``).

:func:`install` makes the main process go on reading every pool process's results until all of
them have exited, as the pool's join expects.
"""
from __future__ import annotations

import logging

log = logging.getLogger("jobico.worker")

_INSTALLED = "_jobico_reads_until_workers_exit"


def install() -> bool:
    """Wraps the prefork result handler's shutdown drain (once); False if this Celery has none."""
    try:
        from billiard.pool import TERMINATE, WorkersJoined
        from celery.concurrency.asynpool import ResultHandler, iterate_file_descriptors_safely
    except ImportError:  # pragma: no cover - another Celery layout: nothing to fix here
        return False
    drain = getattr(ResultHandler, "on_stop_not_started", None)
    if drain is None:  # pragma: no cover
        return False
    if getattr(drain, _INSTALLED, False):
        return True

    def on_stop_not_started(self) -> None:
        drain(self)  # reads results while the cache holds jobs
        outqueues = set(self.fileno_to_outq)
        while outqueues and self._state != TERMINATE:  # then the results of dropped jobs, until all exit
            gone: set[int] = set()
            for fd in outqueues:
                iterate_file_descriptors_safely([fd], self.fileno_to_outq, self._flush_outqueue, gone.add,
                                                self.fileno_to_outq, self.on_state_change)
                try:
                    self.join_exited_workers(shutdown=True)
                except WorkersJoined:
                    return
            outqueues -= gone

    setattr(on_stop_not_started, _INSTALLED, True)
    on_stop_not_started.__doc__ = drain.__doc__
    ResultHandler.on_stop_not_started = on_stop_not_started
    return True
