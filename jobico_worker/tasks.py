"""Celery tasks: thin wrappers over ``jobico_worker.executor``."""
from __future__ import annotations

import logging

from sqlalchemy.exc import DBAPIError, OperationalError

from jobico_core.broker import EXECUTE_TASK
from jobico_core.errors import Unavailable

from .app import app, settings
from .context import worker_context
from .executor import backoff_cap, dead_letter, retry_delay, run_execution

log = logging.getLogger("jobico.worker")

# Infrastructure failures (database, object store, broker): retried with
# exponential backoff and jitter. Guest failures are results, never retried here.
INFRA_ERRORS = (Unavailable, OperationalError, DBAPIError, ConnectionError, TimeoutError)


@app.task(name=EXECUTE_TASK, bind=True, acks_late=True, reject_on_worker_lost=True,
          max_retries=settings.task_retries)
def execute(self, execution_id: str, payload: str, tenant: str | None = None, package: str | None = None,
            event: str | None = None) -> None:
    from jobico_worker.runtime import get_runtime

    ctx = worker_context(settings, celery=app)
    runtime = get_runtime(cache_dir=ctx.settings.cache_dir / "compiled")
    try:
        record = run_execution(ctx, runtime, execution_id, payload, worker=self.request.hostname or "worker",
                               infra_retries=self.request.retries)
    except INFRA_ERRORS as exc:
        extra = {"execution_id": execution_id, "tenant": tenant, "package": package, "event": event}
        if self.request.retries >= self.max_retries:
            log.error("execution %s: infrastructure failure after %d retries (%s): dead-lettered",
                      execution_id, self.request.retries, exc, extra=extra)
            try:
                dead_letter(ctx, execution_id, f"infrastructure failure after {self.request.retries} retries: {exc}")
            except Exception as again:  # the database is what failed: nothing recorded its fate yet
                # Acknowledging now would lose an accepted event (its row stuck 'running' or 'queued'):
                # keep the task alive, at the longest backoff, until the database can take either outcome.
                log.error("execution %s: could not dead-letter it either (%s); retrying", execution_id, again,
                          extra=extra)
                raise self.retry(exc=again, countdown=retry_delay(30, base=0.5, cap=backoff_cap(settings)),
                                 max_retries=self.request.retries + 1)
            return
        delay = retry_delay(self.request.retries, base=0.5, cap=backoff_cap(settings))
        log.warning("execution %s: infrastructure failure (%s); retry %d in %.1fs",
                    execution_id, exc, self.request.retries + 1, delay, extra=extra)
        raise self.retry(exc=exc, countdown=delay)
    if record:
        log.info("execution %s %s/%s/%s -> %s", execution_id, tenant, package, event, record.get("status"),
                 extra={"execution_id": execution_id, "tenant": tenant, "package": package, "event": event,
                        "status": record.get("status")})
