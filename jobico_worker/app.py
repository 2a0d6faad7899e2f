"""The Celery application of the worker: `celery -A jobico_worker.app worker`.

Consumes every tenant queue: those deployed before it started (read from the
database at start), those announced by a deploy (Celery's ``add_consumer``
broadcast) and, as a safety net for a missed broadcast, those found by a
periodic re-read every JOBICO_QUEUE_REFRESH seconds.
"""
from __future__ import annotations

import logging

from celery import bootsteps
from celery.signals import setup_logging, worker_process_init

from jobico_core.broker import celery_queue, make_celery
from jobico_core.settings import Settings

log = logging.getLogger("jobico.worker")

settings = Settings.from_env().check()
app = make_celery(settings, name="jobico_worker")


class QueueDiscovery(bootsteps.StartStopStep):
    """Keeps the consumer subscribed to every deployed tenant queue."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.tref = None

    def start(self, c):
        self.refresh(c)
        self.tref = c.timer.call_repeatedly(settings.queue_refresh, self.refresh, (c,), priority=10)

    def stop(self, c):
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    def refresh(self, c):
        from jobico_core.services.packages import active_queues
        from .context import worker_context
        try:
            wanted = active_queues(worker_context(settings, celery=app))
        except Exception as exc:  # database unreachable: keep what we consume, try again later
            log.warning("could not read deployed queues: %s", exc)
            return
        consuming = {q.name for q in c.task_consumer.queues} if c.task_consumer else set()
        for name in sorted(wanted - consuming):
            q = celery_queue(name)
            c.add_task_queue(q.name, exchange=q.exchange.name, exchange_type="direct", routing_key=q.routing_key)
            log.info("consuming %s", name)


app.steps["consumer"].add(QueueDiscovery)


@setup_logging.connect
def _logging(**_):
    from jobico_core.logs import configure_logging
    configure_logging(settings)


@worker_process_init.connect
def _after_fork(**_):
    """Engines, sockets and the runtime's ticker thread must be made in the child.

    Database engines and Redis clients are keyed by pid, and the runtime checks
    its pid, so the child builds its own; the parent's are left untouched
    (disposing them here would close the parent's connections).
    """
    from .context import reset
    reset()


from . import tasks  # noqa: E402,F401  (registers the tasks)
