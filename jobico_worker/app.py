"""The Celery application of the worker: `celery -A jobico_worker.app worker`.

Consumes every tenant queue: those deployed before it started (read from the
database at start), those announced by a deploy (Celery's ``add_consumer``
broadcast) and, as a safety net for a missed broadcast, those found by a
periodic re-read every JOBICO_QUEUE_REFRESH seconds.
"""
from __future__ import annotations

import logging

from celery import bootsteps
from celery.signals import setup_logging, worker_init, worker_process_init

from jobico_core.broker import celery_queue

from .celery_app import app, settings  # first: the settings, the metrics directory
from .pool_shutdown import install as _read_results_until_pool_exits

_read_results_until_pool_exits()  # the warm shutdown (pool_shutdown.py)

log = logging.getLogger("jobico.worker")

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
        pool = settings.worker_tenants or None  # JOBICO_WORKER_TENANTS: a per-tenant pool
        try:
            wanted = active_queues(worker_context(settings, celery=app), tenants=pool)
        except Exception as exc:  # database unreachable: keep what we consume, try again later
            log.warning("could not read deployed queues: %s", exc)
            return
        consuming = {q.name for q in c.task_consumer.queues} if c.task_consumer else set()
        for name in sorted(wanted - consuming):
            q = celery_queue(name)
            c.add_task_queue(q.name, exchange=q.exchange.name, exchange_type="direct", routing_key=q.routing_key)
            log.info("consuming %s", name)
        if pool:  # drop another tenant's queue a prefix look-alike (dotted tenant ids) let in
            for name in sorted(n for n in consuming - wanted if n.startswith("jobico.")
                               and n != app.conf.task_default_queue):
                c.cancel_task_queue(name)
                log.info("stopped consuming %s (not one of JOBICO_WORKER_TENANTS)", name)

class _Periodic(bootsteps.StartStopStep):
    """Calls ``work`` every ``period()`` seconds on the consumer's timer (``period()`` 0: never)."""

    requires = {"celery.worker.consumer.tasks:Tasks"}
    what = ""

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.tref = None

    def period(self) -> float:
        raise NotImplementedError

    def start(self, c):
        if self.period() > 0:
            self.tref = c.timer.call_repeatedly(self.period(), self.run, (), priority=20)

    def stop(self, c):
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    def run(self):
        from .context import worker_context
        try:
            self.work(worker_context(settings, celery=app))
        except Exception as exc:  # database or Redis unreachable: the next round tries again
            log.warning("could not %s: %s", self.what, exc)

    def work(self, ctx) -> None:
        raise NotImplementedError

class StalledRescue(_Periodic):
    """Publishes again the tasks of executions left ``queued`` with none in Redis
    (``jobico_core.services.rescue``), every JOBICO_RESCUE_AFTER / 2 seconds, one worker at a time."""

    what = "look for stalled executions"

    def period(self) -> float:
        from jobico_core.services.rescue import sweep_period
        return sweep_period(settings)

    def work(self, ctx) -> None:
        from jobico_core.services.rescue import sweep
        sweep(ctx, settings.rescue_after)

class LeaseRecovery(_Periodic):
    """Takes back the running executions whose lease ran out (their worker is lost) and records
    the cancels no worker acted on (``jobico_core.services.leases``), every
    JOBICO_EXECUTION_LEASE_SECONDS / 2 seconds, one worker at a time."""

    what = "look for running executions whose worker is lost"

    def period(self) -> float:
        from jobico_core.services.leases import sweep_period
        return sweep_period(settings)

    def work(self, ctx) -> None:
        from jobico_core.services.leases import sweep
        sweep(ctx)

def in_pool(queue: str, tenants=None) -> bool:
    """Whether a per-tenant pool consumes ``queue`` (``jobico.<tenant>.<package>.<queue>``).

    By prefix, so cheap enough for the ``add_consumer`` broadcast; tenant ids may
    contain dots, so ``refresh`` re-checks against the database and drops a
    look-alike.
    """
    tenants = settings.worker_tenants if tenants is None else tenants
    if not tenants or not queue.startswith("jobico.") or queue == app.conf.task_default_queue:
        return True
    return any(queue.startswith(f"jobico.{t}.") for t in tenants)

def _pooled_add_consumer():
    """A per-tenant pool ignores a deploy's ``add_consumer`` broadcast for other tenants' queues."""
    from celery.worker.control import Panel
    builtin = Panel.data["add_consumer"]
    if getattr(builtin, "_jobico_pool", False):
        return

    def add_consumer(state, queue, *args, **kwargs):
        if not in_pool(queue):
            log.debug("ignoring add_consumer %s: not one of JOBICO_WORKER_TENANTS", queue)
            return {"ok": f"ignored {queue}: not in this worker's tenant pool"}
        return builtin(state, queue, *args, **kwargs)

    add_consumer._jobico_pool = True
    Panel.data["add_consumer"] = add_consumer

if settings.worker_tenants:
    _pooled_add_consumer()

app.steps["consumer"].add(QueueDiscovery)
app.steps["consumer"].add(StalledRescue)
app.steps["consumer"].add(LeaseRecovery)

@setup_logging.connect
def _logging(**_):
    from jobico_core.logs import configure_logging
    configure_logging(settings)

@worker_init.connect
def _metrics_server(**_):
    """JOBICO_WORKER_METRICS_PORT: Prometheus metrics from the main process (all pool children)."""
    if settings.worker_metrics_port:
        from jobico_core.metrics import serve_worker_metrics
        serve_worker_metrics(settings.worker_metrics_port)

@worker_init.connect
def _prepare_python(**_):
    """Compile the Python interpreter in the background when this host has not yet (docs/python.md).

    In the main process, in a subprocess of its own (never on an event's path): a Python
    event that arrives first is requeued until it is ready; WASM events are not affected.
    """
    if settings.python_prepare:
        from jobico_runtime.interpreter import start_preparing
        start_preparing(settings.python_cache_dir)

@worker_process_init.connect
def _after_fork(**_):
    """Engines, sockets and the runtime's ticker thread must be made in the child.

    Database engines and Redis clients are keyed by pid, and the runtime checks
    its pid, so the child builds its own; the parent's are left untouched
    (disposing them here would close the parent's connections).
    """
    from .context import reset
    reset()
    _listen_for_cancels()

def _listen_for_cancels() -> None:
    """This process's cancel listener (jobico_worker/cancellation.py): subscribed before the
    process takes its first task, so a cancel request for what it runs is never missed."""
    from . import cancellation
    from .context import worker_context
    cancellation.start(settings.redis_url,
                       check=lambda ids: cancellation.asked_to_stop(worker_context(settings, celery=app), ids))

@worker_init.connect
def _cancels_in_main_process(sender=None, **_):
    """A pool that runs tasks in the main process (solo, threads) gets no worker_process_init."""
    pool = getattr(sender, "pool_cls", None)
    name = pool if isinstance(pool, str) else getattr(pool, "__module__", "") or ""
    if "prefork" not in name and name:
        _listen_for_cancels()

from . import tasks  # noqa: E402,F401  (registers the tasks; they import celery_app, not this module)
