"""The Celery app (producer side), queue declarations, task publishing, pub/sub.

Shared by the API (ingest) and the worker (chained events), so there is one
way to put an execution on a tenant's queue.
"""
from __future__ import annotations

import base64
import json
import os
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery
from kombu import Exchange, Queue

from . import celeryconfig, tracing
from .errors import Unavailable
from .settings import Settings

EXECUTE_TASK = "jobico.execute"              # one execution: args (execution_id, payload)
EXECUTE_BATCH_TASK = "jobico.execute_batch"  # several of one request: args (execution_ids,)
CONTROL_QUEUE = "jobico.control"


def celery_queue(name: str) -> Queue:
    """A tenant queue with its own direct exchange and routing key.

    A plain ``Queue(name)`` binds to the default exchange, and on the Redis
    transport a publish can then land in two queues (a known kombu trap).
    """
    return Queue(name, Exchange(name, type="direct", durable=True), routing_key=name, durable=True)


def make_celery(settings: Settings, name: str = "jobico") -> Celery:
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
    locks: tuple[str, ...] = ()  # the event's named locks: the worker takes them before the claim
    waiting: str | None = None   # the row's waiting_for as last written (a lock wait's re-publish)
    token: str | None = None     # a lock waiter's task token (jobico_core.locks: parked and woken)
    flow: str | None = None      # flow control still to pass (jobico_core.flow, jobico_worker.flow)
    priority: int | None = None  # a slot of its queue's prioritised executions (jobico_core.priority)
    traceparent: str | None = None  # W3C trace context of the row (jobico_core.tracing): a message header


@dataclass(frozen=True)
class BatchMessage:
    """Several executions of one tenant/package/event/queue carried by one task.

    Only the ids travel: the worker reads each payload from the row it claims.
    """
    execution_ids: tuple[str, ...]
    tenant: str
    package: str
    event: str
    queue: str


def publish(app: Celery, messages: Iterable[TaskMessage | BatchMessage], countdown: float | None = None,
            retries: int = 0) -> None:
    """Put every message on its queue; raises ``Unavailable`` if the broker refuses.

    A ``TaskMessage`` becomes a ``jobico.execute`` task, a ``BatchMessage`` a
    ``jobico.execute_batch`` task (docs/delivery.md has the contract of both).
    Each message is Celery's own protocol-2 task message, as kombu's Redis transport
    puts it on the anonymous exchange with the queue's name as routing key: LPUSHed
    onto exactly that list (no binding lookup, no chance of landing in a second queue).
    Without a countdown the envelope is built here (``task_envelope``) and all of a
    call's messages leave in one pipeline of the process's pooled Redis client; with
    one (an ETA) through ``app.amqp.as_task_v2`` and kombu's ``producer.batch()``.
    A failed flush raises here, and the caller (ingest) deletes its rows and
    answers 503, while a worker drops any task whose row does not exist.
    ``countdown`` delays execution (a retry's backoff, capped well under the
    visibility timeout); ``retries`` is the Celery retry count the task starts
    with (infrastructure failures already spent on it). Measured in bench/bench_publish.py.
    """
    messages = list(messages)
    if not messages:
        return
    with tracing.span("jobico.publish", {"jobico.messages": len(messages)}, kind="producer"):
        if countdown is None:
            _push(app, messages, retries)
        else:
            _publish(app, messages, countdown, retries)


def _shadow(m: TaskMessage | BatchMessage) -> str:
    """The task's name as logs and Flower show it: tenant, package, event (and a batch's size)."""
    if isinstance(m, BatchMessage):
        return f"jobico.execute_batch[{m.tenant}/{m.package}/{m.event} x{len(m.execution_ids)}]"
    return f"jobico.execute[{m.tenant}/{m.package}/{m.event}]"


def _kwargs(m: TaskMessage | BatchMessage) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"tenant": m.tenant, "package": m.package, "event": m.event}
    if isinstance(m, TaskMessage):
        for name in ("locks", "waiting", "token", "flow", "priority"):
            value = getattr(m, name)
            if value:
                kwargs[name] = list(value) if name == "locks" else value
    return kwargs


_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
_EMBED_JSON = json.dumps(_EMBED)
REPR_MAX = 1024  # Celery's argsrepr_maxsize / kwargsrepr_maxsize
_origin: list[str] = []


def _repr(value: Any) -> str:
    return _cut(repr(value))


def _cut(text: str) -> str:
    return text if len(text) <= REPR_MAX else text[:REPR_MAX - 3] + "..."


def _plain(texts: list[str]) -> bool:
    """Whether ``json.dumps`` and ``repr`` write each text as itself between quotes: printable
    ASCII without quotes or backslashes (execution ids)."""
    joined = "".join(texts)
    return joined.isascii() and joined.isprintable() and not ('"' in joined or "'" in joined or "\\" in joined)


_BODY_AT = len('{"body": "')


def task_envelope(m: TaskMessage | BatchMessage, retries: int = 0) -> str:
    """The message the Redis transport LPUSHes for ``m`` (no countdown): Celery's protocol-2
    task message (what ``app.amqp.as_task_v2`` + kombu's ``basic_publish`` make, field for field;
    ``argsrepr``/``kwargsrepr`` are plain reprs cut at Celery's 1024 characters), built without
    either (their cost per message was most of a single-event webhook request's publish).

    The text is ``json.dumps``' of the message, built faster where it can be by joining: a
    batch's ids (``_plain``) joined into their JSON and their repr, the base64 body (which holds
    nothing to escape) put into the envelope's text rather than encoded into it (a 100-id
    batch: 33 us against 53)."""
    if not _origin:
        from celery.utils.nodenames import anon_nodename
        _origin.append(anon_nodename())
    kwargs = _kwargs(m)
    args: tuple[Any, ...]
    if isinstance(m, BatchMessage):
        ids = list(m.execution_ids)
        task_id, name, args = f"{ids[0]}+{len(ids) - 1}", EXECUTE_BATCH_TASK, (ids,)
        if _plain(ids):  # json.dumps((ids,)) and repr((ids,)), joined
            args_json, argsrepr = '[["' + '", "'.join(ids) + '"]]', _cut("(['" + "', '".join(ids) + "'],)")
        else:
            args_json, argsrepr = json.dumps(args), _repr(args)
    else:
        task_id, name, args = m.execution_id, EXECUTE_TASK, (m.execution_id, m.payload)
        args_json, argsrepr = json.dumps(args), _repr(args)
    headers: dict[str, Any] = {
        "lang": "py", "task": name, "id": task_id, "shadow": _shadow(m), "eta": None, "expires": None,
        "group": None, "group_index": None, "retries": retries, "timelimit": [None, None], "root_id": task_id,
        "parent_id": None, "argsrepr": argsrepr, "kwargsrepr": _repr(kwargs), "origin": _origin[0],
        "ignore_result": False, "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {}}
    if isinstance(m, TaskMessage) and m.traceparent:
        headers["traceparent"] = m.traceparent
    # json.dumps([args, kwargs, _EMBED])
    body = base64.b64encode(f"[{args_json}, {json.dumps(kwargs)}, {_EMBED_JSON}]".encode()).decode()
    text = json.dumps({
        "body": "", "content-encoding": "utf-8", "content-type": "application/json", "headers": headers,
        "properties": {"correlation_id": task_id, "reply_to": "", "delivery_mode": 2,
                       "delivery_info": {"exchange": "", "routing_key": m.queue}, "priority": 0,
                       "body_encoding": "base64", "delivery_tag": str(uuid.uuid4())}})
    return text[:_BODY_AT] + body + text[_BODY_AT:]


def _push(app: Celery, messages: list[TaskMessage | BatchMessage], retries: int) -> None:
    """Every message LPUSHed onto its queue in one pipeline of the process's pooled client of
    the broker (kombu's producer builds a new Redis client per publish)."""
    try:
        pipe = redis_client(app.conf.broker_url).pipeline(transaction=False)
        for m in messages:
            pipe.lpush(m.queue, task_envelope(m, retries))
        pipe.execute()
    except Exception as exc:  # redis connection errors of every flavour
        raise Unavailable(f"the message broker is unavailable: {type(exc).__name__}: {exc}") from exc


def _publish(app: Celery, messages: list[TaskMessage | BatchMessage], countdown: float | None, retries: int) -> None:
    try:
        with app.producer_or_acquire() as producer, producer.batch():
            for m in messages:
                kwargs = _kwargs(m)
                if isinstance(m, BatchMessage):
                    ids = list(m.execution_ids)
                    req = app.amqp.as_task_v2(
                        f"{ids[0]}+{len(ids) - 1}", EXECUTE_BATCH_TASK, args=(ids,), kwargs=kwargs,
                        countdown=countdown, retries=retries,
                        shadow=_shadow(m))
                else:
                    req = app.amqp.as_task_v2(
                        m.execution_id, EXECUTE_TASK, args=(m.execution_id, m.payload), kwargs=kwargs,
                        countdown=countdown, retries=retries,
                        shadow=_shadow(m))
                if isinstance(m, TaskMessage) and m.traceparent:
                    req.headers["traceparent"] = m.traceparent
                producer.publish(req.body, exchange="", routing_key=m.queue, headers=req.headers,
                                 serializer="json", retry=False, **req.properties)
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


# ``jobico executions cancel`` of a running execution: the API publishes one message per request
# (and again while it waits); every worker pool process listens (jobico_worker/cancellation.py)
# and stops the execution if it runs there.
CANCEL_CHANNEL = "jobico:cancel"


def cancel_message(execution_id: str, by: str | None) -> str:
    """What goes on ``CANCEL_CHANNEL``: the execution id and who asked, as JSON."""
    return json.dumps({"id": execution_id, "by": by}, ensure_ascii=False)


def parse_cancel_message(data: bytes | str) -> tuple[str, str | None] | None:
    """(execution id, who asked) of a ``CANCEL_CHANNEL`` message; None when it is not one."""
    try:
        doc = json.loads(data)
        return (doc["id"], doc.get("by")) if isinstance(doc, dict) and isinstance(doc.get("id"), str) else None
    except (ValueError, TypeError, KeyError):
        return None
