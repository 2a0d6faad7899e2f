"""Warm a new API worker process before it serves (gunicorn's ``post_worker_init``).

A fresh gunicorn worker's first webhook request used to import ~200 modules
(psycopg, minio, urllib3, ...), connect to PostgreSQL and Redis and build the
Celery app: ~600 ms alone, seconds when the pool's workers start together on a
busy host; and the objects it created set off a full garbage collection of
the ~166,000 objects of the loaded app, 0.2 to 1.4 s with every thread of
the process stopped (docs/benchmarks.md, "Issue 19"). So each worker does that
work before it accepts a connection: connects its pools, opens the object
store, builds the Celery app, sends itself one webhook request that goes
through routing, the database lookup and the JSON error path (a tenant that
cannot exist: 404, nothing written, not counted in ``/metrics``), then ``gc.freeze()``: everything alive
after start-up moves to the permanent generation, which no collection scans
again, so a full collection later looks at the objects made since (ms).
A service that is down is logged and left for the requests to find (503).
"""
from __future__ import annotations

import gc
import logging
import time

from flask import Flask

from jobico_core.services.context import Context

from .blueprints.metrics import NOT_COUNTED
from .split import PortDispatcher

log = logging.getLogger(__name__)
NO_TENANT = "_warm-up"  # no tenant can have this id (a name starts with a letter or digit): always 404


def _apps(app) -> list[Flask]:
    """The Jobico Flask apps ``app`` serves (none when gunicorn serves another WSGI app)."""
    apps = list(app.apps.values()) if isinstance(app, PortDispatcher) else [app]
    return [a for a in apps if "jobico" in getattr(a, "extensions", {})]


def _connect(ctx: Context) -> None:
    steps = (("database", lambda: ctx.db.ping()), ("redis", lambda: ctx.redis.ping()),
             ("object store", lambda: ctx.store), ("celery", lambda: ctx.celery.conf.broker_url))
    for what, step in steps:
        try:
            step()
        except Exception as exc:  # a service down: the requests will find it (503)
            log.warning("warm-up: %s unavailable: %s", what, exc)


def warm(app) -> float:
    """Warm ``app`` (a Flask app or ``PortDispatcher``; any other WSGI app is only frozen) and freeze
    the heap; returns the seconds it took."""
    started = time.monotonic()
    contexts: dict[int, Context] = {}
    for flask_app in _apps(app):
        ctx = flask_app.extensions["jobico"]
        contexts[id(ctx)] = ctx
    for ctx in contexts.values():
        _connect(ctx)
    for flask_app in _apps(app):
        if flask_app.extensions.get("jobico_role") == "control":
            continue  # the webhook is the gateway's
        try:
            flask_app.test_client().post(f"/events/{NO_TENANT}/e", data=b'{"data": [{}]}',
                                         headers={"Content-Type": "application/json"},
                                         environ_base={NOT_COUNTED: True})  # not in /metrics
        except Exception as exc:  # pragma: no cover - the warm-up must never stop a worker
            log.warning("warm-up request failed: %s", exc)
    gc.collect()
    gc.freeze()
    return time.monotonic() - started
