"""The worker's Celery application object and settings, apart from ``app`` (its boot steps and
signals) so that the task modules can import it without an import cycle."""
from __future__ import annotations

import os
import tempfile

from jobico_core import tracing
from jobico_core.broker import make_celery
from jobico_core.settings import Settings

settings = Settings.from_env().check()
app = make_celery(settings, name="jobico_worker")
app.conf.worker_consumer = "jobico_worker.consumer:Consumer"  # task events in batches (consumer.py)
tracing.setup("jobico-worker")  # only with OTEL_EXPORTER_OTLP_ENDPOINT set (docs/operating.md)

if settings.worker_metrics_port and not (os.environ.get("PROMETHEUS_MULTIPROC_DIR")
                                         or os.environ.get("prometheus_multiproc_dir")):
    # prefork children write their samples to files the main process's /metrics adds up;
    # must be set before prometheus_client makes the first metric (jobico_core.metrics)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="jobico-worker-metrics-")
