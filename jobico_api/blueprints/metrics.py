"""``GET /metrics``: Prometheus metrics (names and meaning in docs/operating.md).

Under gunicorn (several worker processes) set ``PROMETHEUS_MULTIPROC_DIR`` to an
empty writable directory before it starts, so a scrape adds up every worker's
samples (the container entrypoint and the Helm chart do). The webhook's
rejections are counted here too, from the status of its error responses, so
the error handlers and the webhook stay free of metrics code.
"""
from __future__ import annotations

from flask import Response, current_app, request
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


@blp.after_app_request
def count_rejections(response):
    if request.endpoint == WEBHOOK_ENDPOINT and response.status_code >= 400:
        tenant = (request.view_args or {}).get("tenant")
        metrics.rejected(REASONS.get(response.status_code, "error"), tenant)
    return response
