"""The Celery app (producer side), queue declarations, task publishing, pub/sub.

Shared by the API (ingest) and the worker (chained events), so there is one
way to put an execution on a tenant's queue.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Iterable

import redis
from celery import Celery
from kombu import Exchange, Queue

from .errors import Unavailable
from .settings import Settings

EXECUTE_TASK = "jobico.execute"
CONTROL_QUEUE = "jobico.control"


def celery_queue(name: str) -> Queue:
    """A tenant queue with its own direct exchange and routing key.

    A plain ``Queue(name)`` binds to the default exchange, and on the Redis
    transport a publish can then land in two queues (a known kombu trap).
    """
    return Queue(name, Exchange(name, type="direct", durable=True), routing_key=name, durable=True)


def make_celery(settings: Settings, name: str = "jobico") -> Celery:
    import celeryconfig

    app = Celery(name, set_as_current=False)
    app.conf.update(celeryconfig.make_config(settings))
    app.conf.task_queues = [celery_queue(CONTROL_QUEUE)]
    app.conf.jobico_settings = settings
    return app


@dataclass(frozen=True)
class TaskMessage:
    execution_id: str
    payload: str           # canonical JSON
    tenant: str
    package: str
    event: str
    queue: str             # jobico.<tenant>.<package>.<queue>


# Short, bounded retries: the webhook must answer 503 promptly when Redis is down.
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0.05, "interval_step": 0.2, "interval_max": 0.5}


def publish(app: Celery, messages: Iterable[TaskMessage], countdown: float | None = None) -> None:
    """Put every message on its queue; raises ``Unavailable`` if the broker refuses.

    ``countdown`` delays execution (a retry's backoff); it must stay well under
    the broker's visibility timeout, which it does (backoff is capped at 60 s).
    """
    messages = list(messages)
    if not messages:
        return
    declared: dict[str, Queue] = {}
    try:
        # producer.batch() (kombu >= 5.7): the LPUSHes of all messages go out in one Redis
        # pipeline when the block exits (bench/bench_publish.py: 100 messages ~1.75x faster).
        # A failed flush raises here, like a failed single publish: the caller (ingest)
        # deletes the rows and answers 503; a worker drops a task with no row.
        with app.producer_or_acquire() as producer, producer.batch():
            for m in messages:
                q = declared.get(m.queue)
                if q is None:
                    q = declared[m.queue] = celery_queue(m.queue)
                app.send_task(
                    EXECUTE_TASK, args=(m.execution_id, m.payload),
                    kwargs={"tenant": m.tenant, "package": m.package, "event": m.event},
                    task_id=m.execution_id, queue=q, exchange=q.exchange, routing_key=q.routing_key,
                    declare=[q], producer=producer, retry=True, retry_policy=PUBLISH_RETRY, countdown=countdown,
                    shadow=f"jobico.execute[{m.tenant}/{m.package}/{m.event}]",
                )
    except Exception as exc:  # kombu/redis connection errors of every flavour
        raise Unavailable(f"the message broker is unavailable: {type(exc).__name__}: {exc}") from exc


def declare_queues(app: Celery, names: Iterable[str]) -> None:
    """Declare queues and their bindings so publishes route even before a worker consumes."""
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        for name in names:
            celery_queue(name)(channel).declare()


def broadcast_consume(app: Celery, names: Iterable[str]) -> None:
    """Ask every running worker to consume these queues (Celery's add_consumer control)."""
    for name in names:
        q = celery_queue(name)
        app.control.add_consumer(q.name, exchange=q.exchange.name, exchange_type="direct",
                                 routing_key=q.routing_key, reply=False)


# -- Redis (pub/sub, idempotency keys) ------------------------------------------------
_redis_clients: dict[str, redis.Redis] = {}
_redis_lock = threading.Lock()


def redis_client(url: str) -> redis.Redis:
    """One pooled client per URL and process."""
    key = f"{os.getpid()}:{url}"
    with _redis_lock:
        client = _redis_clients.get(key)
        if client is None:
            client = _redis_clients[key] = redis.Redis.from_url(
                url, socket_timeout=5, socket_connect_timeout=3, health_check_interval=15)
        return client


def results_channel(tenant: str) -> str:
    return f"jobico:tenant:{tenant}:executions"
