"""The execute floor: a bare Celery app with a no-op task.

Same broker, same configuration (``celeryconfig.make_config``: acks_late,
prefetch 1, results ignored, task events on) and the same worker flags as the
Jobico worker; only the task body differs (it does nothing).
``celery -A bench.bare_celery worker -Q bench.noop ...``
"""
from __future__ import annotations

from jobico_core.broker import celery_queue, make_celery
from jobico_core.settings import Settings

QUEUE = "bench.noop"
settings = Settings.from_env()
app = make_celery(settings, name="bare")
app.conf.task_queues = [celery_queue(QUEUE)]


@app.task(name="bench.noop", acks_late=True, ignore_result=True)
def noop(execution_id: str, payload: str, tenant: str | None = None, package: str | None = None,
         event: str | None = None) -> None:
    return None
