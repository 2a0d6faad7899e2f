"""Prometheus metrics of the platform, defined once (names in docs/operating.md).

* The API serves them at ``GET /metrics`` (``jobico_api.blueprints.metrics``).
* A worker serves them on ``JOBICO_WORKER_METRICS_PORT`` (off by default),
  from its main process (``serve_worker_metrics``).

Processes that fork (gunicorn's workers, Celery's prefork pool) need
prometheus-client's *multiprocess mode*: set ``PROMETHEUS_MULTIPROC_DIR`` to an
empty directory writable by the process before it starts (the container
entrypoint, the Helm chart and ``jobico run`` do; gunicorn's hooks keep it clean,
``jobico_core.multiproc``; a worker with a metrics port and no such directory
makes a private one). Each process then writes its samples to files
there and a scrape adds them up. Without it, ``/metrics`` shows the samples of
whichever gunicorn worker answered.

Label cardinality is bounded: tenant labels come from the URL only after they
pass the id rule, and at most ``MAX_TENANT_LABELS`` distinct tenants get their
own series per process (later ones are counted as ``_other``).
"""
from __future__ import annotations

import logging
import threading
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from . import multiproc
from .names import is_valid_name

log = logging.getLogger(__name__)

# the value class is chosen from PROMETHEUS_MULTIPROC_DIR when prometheus_client is
# first imported; re-read it so a process that set the variable later still gets it
values.ValueClass = values.get_value_class()

MAX_TENANT_LABELS = 1000
MAX_QUEUES_SCANNED = 2000
QUEUE_DEPTH_CACHE_S = 5.0

EVENTS_ACCEPTED = Counter(
    "jobico_events_accepted", "Events accepted by the webhook (one per element, each became an execution)",
    ["tenant"])
INGEST_GROUP_EVENTS = Histogram(
    "jobico_ingest_group_events", "Events of concurrent webhook requests recorded by one statement and "
    "published as one task (the webhook's group commit; a lone request is a group of its size)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 100))
EVENTS_REJECTED = Counter(
    "jobico_events_rejected", "Webhook requests refused, by reason (too_large, not_found, unauthorized, "
    "forbidden, bad_request, invalid, conflict, unavailable, error)", ["reason", "tenant"])
EXECUTIONS = Counter(
    "jobico_executions", "Executions finished by a worker, by final status", ["tenant", "status"])
EXECUTION_DURATION = Histogram(
    "jobico_execution_duration_seconds", "Time a module ran in the sandbox, by final status", ["status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0))
MQTT_MESSAGES = Counter(
    "jobico_mqtt_messages", "MQTT messages handled by the bridge, by outcome (accepted: became an execution; "
    "rejected: recorded as a rejection; duplicate: a redelivery already recorded)", ["tenant", "outcome"])
MQTT_REJECTED = Counter(
    "jobico_mqtt_rejected", "MQTT messages recorded as rejected, by reason (bad_request, too_large, invalid, "
    "not_deployed)", ["tenant", "reason"])
EXECUTIONS_DEAD_LETTERED = Counter(
    "jobico_executions_dead_lettered", "Executions dead-lettered (retries or deliveries exhausted; they wait for "
    "`jobico executions retry`)", ["tenant"])
HTTP_REQUESTS = Counter(
    "jobico_http_requests", "HTTP requests the API answered, by route (the URL rule, not the URL), method and "
    "status code", ["route", "method", "status"])
HTTP_DURATION = Histogram(
    "jobico_http_request_duration_seconds", "Time the API took to answer (until the response headers), by route",
    ["route"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
HTTP_IN_FLIGHT = Gauge(
    "jobico_http_requests_in_flight", "HTTP requests being answered now (summed over the live API processes)",
    multiprocess_mode="livesum")
MODULE_CACHE_HITS = Counter(
    "jobico_module_cache_hits", "Compiled modules found in the worker's in-memory cache")
MODULE_CACHE_MISSES = Counter(
    "jobico_module_cache_misses", "Compiled modules loaded (disk cache or object store) and compiled")

_tenant_labels: set[str] = set()
_tenant_lock = threading.Lock()


def tenant_label(tenant: object) -> str:
    """A bounded label for a tenant id that may come from a URL."""
    if not isinstance(tenant, str) or not is_valid_name(tenant):
        return "_invalid"
    with _tenant_lock:
        if tenant in _tenant_labels:
            return tenant
        if len(_tenant_labels) < MAX_TENANT_LABELS:
            _tenant_labels.add(tenant)
            return tenant
    return "_other"


def rejected(reason: str, tenant: object) -> None:
    EVENTS_REJECTED.labels(reason=reason or "error", tenant=tenant_label(tenant)).inc()


def accepted(tenant: str, count: int) -> None:
    EVENTS_ACCEPTED.labels(tenant=tenant_label(tenant)).inc(count)


def ingest_group(events: int) -> None:
    INGEST_GROUP_EVENTS.observe(events)


def mqtt_message(tenant: str, outcome: str, reason: str | None = None) -> None:
    label = tenant_label(tenant)
    MQTT_MESSAGES.labels(tenant=label, outcome=outcome).inc()
    if reason is not None:
        MQTT_REJECTED.labels(tenant=label, reason=reason).inc()


def finished(tenant: str, status: str, duration_ms: float | None = None, dead_lettered: bool = False) -> None:
    EXECUTIONS.labels(tenant=tenant_label(tenant), status=status).inc()
    if duration_ms is not None:
        EXECUTION_DURATION.labels(status=status).observe(max(0.0, duration_ms) / 1000.0)
    if dead_lettered:
        dead_letters(tenant)


def dead_letters(tenant: str, count: int = 1) -> None:
    if count:
        EXECUTIONS_DEAD_LETTERED.labels(tenant=tenant_label(tenant)).inc(count)


def http_answered(route: str, method: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(route=route, method=method, status=str(status)).inc()
    HTTP_DURATION.labels(route=route).observe(max(0.0, seconds))


# -- queue depth ----------------------------------------------------------------------
def deployed_queues(ctx) -> list[tuple[str, str]]:
    """(tenant, queue name) of every deployed version's queues, sorted."""
    from sqlalchemy import select

    from .db import Package, PackageVersion
    from .names import queue_name
    with ctx.db.session() as s:
        rows = s.execute(select(Package.tenant_id, Package.name, PackageVersion.spec)
                         .join(PackageVersion, PackageVersion.package_id == Package.id)).all()
    return sorted({(t, queue_name(t, p, q["id"])) for t, p, spec in rows for q in spec["queues"]})


class QueueDepthCollector:
    """``jobico_queue_depth{tenant}``: tasks waiting in Redis, LLEN of every deployed queue.

    Read on scrape, at most every QUEUE_DEPTH_CACHE_S seconds, for at most
    MAX_QUEUES_SCANNED queues (``jobico_queue_depth_truncated`` says when more
    exist), in one pipelined round trip.
    """

    def __init__(self, ctx, max_queues: int = MAX_QUEUES_SCANNED, cache_s: float = QUEUE_DEPTH_CACHE_S):
        self.ctx, self.max_queues, self.cache_s = ctx, max_queues, cache_s
        self._lock = threading.Lock()
        self._at = 0.0
        self._last: tuple[dict[str, int], bool, bool] = ({}, False, False)

    def _read(self) -> tuple[dict[str, int], bool, bool]:
        try:
            queues = deployed_queues(self.ctx)
            truncated = len(queues) > self.max_queues
            queues = queues[: self.max_queues]
            pipe = self.ctx.redis.pipeline(transaction=False)
            for _, name in queues:
                pipe.llen(name)
            lengths = pipe.execute() if queues else []
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail because Redis or SQL is down
            log.warning("queue depth: %s: %s", type(exc).__name__, exc)
            return {}, False, False
        depth: dict[str, int] = {}
        for (tenant, _), n in zip(queues, lengths):
            depth[tenant] = depth.get(tenant, 0) + int(n or 0)
        return depth, truncated, True

    def collect(self):
        with self._lock:
            if time.monotonic() - self._at >= self.cache_s:
                self._last, self._at = self._read(), time.monotonic()
            depth, truncated, ok = self._last
        g = GaugeMetricFamily("jobico_queue_depth", "Tasks waiting in Redis, summed over the tenant's deployed "
                              "queues", labels=["tenant"])
        for tenant, n in sorted(depth.items()):
            g.add_metric([tenant], n)
        yield g
        yield GaugeMetricFamily("jobico_queue_depth_truncated", "1 when more queues are deployed than a scrape "
                                "reads", value=1 if truncated else 0)
        yield GaugeMetricFamily("jobico_queue_depth_up", "1 when the last queue depth read succeeded",
                                value=1 if ok else 0)


# -- exposition ---------------------------------------------------------------------------
def registry(ctx=None) -> CollectorRegistry:
    """What a scrape shows: this process's metrics (or every process's, in multiprocess mode)."""
    from prometheus_client import REGISTRY
    if multiproc.directory():
        reg = CollectorRegistry()
        MultiProcessCollector(reg)
    else:
        reg = CollectorRegistry()
        reg.register(_Forward(REGISTRY))
    if ctx is not None:
        reg.register(QueueDepthCollector(ctx))
    return reg


class _Forward:
    """Exposes another registry's metrics through a per-scrape registry."""

    def __init__(self, inner):
        self.inner = inner

    def collect(self):
        return self.inner.collect()


def render(reg: CollectorRegistry) -> bytes:
    return generate_latest(reg)


def serve_worker_metrics(port: int, addr: str = "0.0.0.0"):
    """Start the worker's /metrics HTTP server in this (the main) process."""
    from prometheus_client import start_http_server
    server, thread = start_http_server(port, addr=addr, registry=registry())
    log.info("serving Prometheus metrics on %s:%d", addr, port)
    return server
