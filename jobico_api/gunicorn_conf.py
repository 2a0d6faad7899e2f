"""gunicorn defaults for the Jobico API.

``gunicorn -c python:jobico_api.gunicorn_conf jobico_api.wsgi:app``

gthread workers: the live stream (SSE) holds a connection for minutes, and a
sync worker would be blocked by one client. Everything comes from the
environment: JOBICO_API_HOST/JOBICO_API_PORT (bind; and JOBICO_GATEWAY_HOST/
JOBICO_GATEWAY_PORT, a second address for the webhook gateway), JOBICO_API_WORKERS
(default: 2 x cores + 1, at most 8), JOBICO_API_THREADS (default 8),
JOBICO_API_TIMEOUT, JOBICO_LOG_LEVEL.

Requests gunicorn itself refuses (request line over ``limit_request_line``:
414; more than ``limit_request_fields`` header fields or one over
``limit_request_field_size``: 431; a malformed request line or header: 400)
are answered with the API's JSON error body (``jobico_api.gunicorn_errors``).

With PROMETHEUS_MULTIPROC_DIR set (the image, the chart and ``jobico run`` set it),
the master empties it at start and drops each dead worker's live gauges, so any
worker's ``/metrics`` shows the sum over all of them (jobico_core.multiproc).
"""
from __future__ import annotations

import multiprocessing
import os

from jobico_api.gunicorn_errors import install as _json_errors

_json_errors()


def _int(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        return default


_api_host = os.environ.get("JOBICO_API_HOST", "127.0.0.1")
bind = [f"{_api_host}:{os.environ.get('JOBICO_API_PORT', '8080')}"]
if os.environ.get("JOBICO_GATEWAY_PORT"):  # jobico_api.split: each port serves its own app
    bind.append(f"{os.environ.get('JOBICO_GATEWAY_HOST') or _api_host}:{os.environ['JOBICO_GATEWAY_PORT']}")
worker_class = "gthread"
workers = _int("JOBICO_API_WORKERS", min(2 * multiprocessing.cpu_count() + 1, 8))
threads = _int("JOBICO_API_THREADS", 8)
# a gthread worker heartbeats from its main loop, so long-lived streams do not trip this
timeout = _int("JOBICO_API_TIMEOUT", 60)
graceful_timeout = 30
keepalive = 5
# fork first, then each worker builds its own engine/pools (jobico_core keys them by pid)
preload_app = False
max_requests = _int("JOBICO_API_MAX_REQUESTS", 10000)
max_requests_jitter = 500
loglevel = os.environ.get("JOBICO_LOG_LEVEL", "info").lower()
accesslog = "-"
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# what gunicorn reads before refusing (docs/hostile-inputs.md): the request line (method, URL with its
# query, version) up to gunicorn's maximum, 100 header fields of up to 16 KB each
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 16384


def on_starting(server):
    from jobico_core import multiproc
    multiproc.reset()


def child_exit(server, worker):
    from jobico_core import multiproc
    multiproc.process_exited(worker.pid)



def post_worker_init(worker):
    """Before the worker serves: its first request's imports, connections and full garbage
    collection done, its heap frozen (``jobico_api.warm``)."""
    from jobico_api.warm import warm
    took = warm(worker.wsgi)
    worker.log.info("worker warmed up in %.0f ms", took * 1000)
