"""Celery tasks: thin wrappers over ``jobico_worker.executor``."""
from __future__ import annotations

import logging
import random

from sqlalchemy.exc import DBAPIError, OperationalError

from jobico_core.broker import EXECUTE_TASK
from jobico_core.errors import Unavailable

from .app import app, settings
from .context import worker_context
from .executor import run_execution

log = logging.getLogger("jobico.worker")

# Infrastructure failures (database, object store, broker): retried with
# exponential backoff and jitter. Guest failures are results, never retried here.
INFRA_ERRORS = (Unavailable, OperationalError, DBAPIError, ConnectionError, TimeoutError)


def backoff(retries: int, base: float = 0.5, cap: float = 60.0) -> float:
    return random.uniform(0, min(cap, base * (2 ** retries)))


@app.task(name=EXECUTE_TASK, bind=True, acks_late=True, reject_on_worker_lost=True,
          max_retries=settings.task_retries)
def execute(self, execution_id: str, payload: str, tenant: str | None = None, package: str | None = None,
            event: str | None = None) -> None:
    from jobico_worker.runtime import get_runtime

    ctx = worker_context(settings, celery=app)
    runtime = get_runtime(cache_dir=ctx.settings.cache_dir / "compiled")
    try:
        record = run_execution(ctx, runtime, execution_id, payload, worker=self.request.hostname or "worker")
    except INFRA_ERRORS as exc:
        delay = backoff(self.request.retries)
        log.warning("execution %s: infrastructure failure (%s); retry %d in %.1fs",
                    execution_id, exc, self.request.retries + 1, delay)
        raise self.retry(exc=exc, countdown=delay)
    if record:
        log.info("execution %s %s/%s/%s -> %s", execution_id, tenant, package, event, record.get("status"))
