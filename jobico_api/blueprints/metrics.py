"""``GET /metrics``: Prometheus metrics (names and meaning in docs/operating.md).

Under gunicorn (several worker processes) set ``PROMETHEUS_MULTIPROC_DIR`` to an
empty writable directory before it starts, so a scrape adds up every worker's
samples (the container entrypoint, the Helm chart and ``jobico run`` do;
``jobico_api.gunicorn_conf`` empties it at start and drops a dead worker's live
gauges). ``instrument(app)`` counts every answer (route, method, status, time)
and the webhook's rejections, from the status of its error responses, so the
error handlers and the views stay free of metrics code.
"""
from __future__ import annotations

import time

from flask import Flask, Response, current_app, g, request
from flask_smorest import Blueprint

from jobico_core import metrics

from ..auth import ctx

blp = Blueprint("metrics", __name__, description="Prometheus metrics.")

WEBHOOK_ENDPOINT = "webhook.post_events"
REASONS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict",
           413: "too_large", 422: "invalid", 503: "unavailable"}


@blp.route("/metrics", methods=["GET"])
@blp.doc(summary="Prometheus metrics (text exposition format)",
         responses={"200": {"description": "metrics", "content": {"text/plain": {}}}})
def get_metrics():
    reg = current_app.extensions.get("jobico_metrics")
    if reg is None:  # one per app: the queue depth collector caches its reads
        reg = current_app.extensions["jobico_metrics"] = metrics.registry(ctx())
    return Response(metrics.render(reg), mimetype="text/plain; version=0.0.4; charset=utf-8")


#: a request whose WSGI environ holds this key is not counted (a worker's warm-up request, jobico_api.warm)
NOT_COUNTED = "jobico.not_counted"


def instrument(app: Flask) -> None:
    """Count every request the app answers (whatever its role) in ``jobico_http_*`` and the
    webhook's refusals in ``jobico_events_rejected_total``."""
    app.before_request(_started)
    app.after_request(_answered)
    app.teardown_request(_done)


def _started():
    if request.environ.get(NOT_COUNTED):
        return
    g.jobico_started = time.monotonic()
    metrics.HTTP_IN_FLIGHT.inc()


def _answered(response):
    started = g.get("jobico_started")
    if started is not None:
        # the URL rule, never the URL: a bounded label whatever clients send
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        metrics.http_answered(route, request.method, response.status_code, time.monotonic() - started)
    if request.endpoint == WEBHOOK_ENDPOINT and response.status_code >= 400 and started is not None:
        tenant = (request.view_args or {}).get("tenant")
        metrics.rejected(REASONS.get(response.status_code, "error"), tenant)
    return response


def _done(exc=None):
    if g.pop("jobico_started", None) is not None:
        metrics.HTTP_IN_FLIGHT.dec()
