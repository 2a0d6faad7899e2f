"""A new API worker warms up before it serves (``jobico_api.warm``, gunicorn's post_worker_init):
its pools connected, the webhook path run once with nothing written, its heap frozen."""
from __future__ import annotations

import gc

import pytest

from jobico_api.warm import warm

pytestmark = pytest.mark.services


def _webhook_answers() -> float:
    from prometheus_client import REGISTRY
    return REGISTRY.get_sample_value("jobico_http_request_duration_seconds_count",
                                     {"route": "/events/<tenant>/<event>"}) or 0.0


def test_warm_connects_runs_the_webhook_path_writes_nothing_and_freezes(api):
    api.deployed_tenant("tenant_1")
    try:
        before = _webhook_answers()
        warm(api.app)
        assert gc.get_freeze_count() > 0
        assert _webhook_answers() == before  # its request is not in /metrics (nor a rejection)
        assert api.ctx.db.engine.pool.checkedin() >= 1  # a PostgreSQL connection waits in the pool
        assert api.executions_in_db() == [] and api.lists() == {}
    finally:
        gc.unfreeze()


def test_warm_survives_services_down_and_foreign_apps(make_api):
    from jobico_ops.embedded import free_port
    down = make_api(database_url=f"postgresql+psycopg://u:p@127.0.0.1:{free_port()}/db",
                    redis_url=f"redis://127.0.0.1:{free_port()}/0")
    try:
        assert warm(down.app) >= 0  # logged, not raised: the requests will answer 503
        assert warm(lambda environ, start_response: []) >= 0  # not a Jobico app: only frozen
    finally:
        gc.unfreeze()
