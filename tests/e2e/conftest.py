"""The fixtures of tests/e2e/ (their helpers: tests/e2e/helpers.py)."""
from __future__ import annotations

import signal

import pytest

from jobico_core.settings import Settings

from .helpers import (
    Platform,
    platform_env,
    serve_app,
)


@pytest.fixture
def platform(api_db_url, redis_url, s3_server, s3_bucket, tmp_path):
    env = platform_env(api_db_url, redis_url, s3_server, s3_bucket, tmp_path)
    settings = Settings.from_env(env)
    from jobico_api import create_app
    app = create_app(settings)
    server, url = serve_app(app)
    p = Platform(env, settings, app.extensions["jobico"], tmp_path, url)
    try:
        yield p
    finally:
        # teardown checks nothing: SIGKILL, not a warm shutdown, which waits for the guests still
        # running (a sleeping one, up to Worker.stop's 20 s) and for span exports to a collector the
        # test already shut down; a test that checks a shutdown stops its processes itself
        for w in p.workers:
            w.stop(signal.SIGKILL)
        server.shutdown()
