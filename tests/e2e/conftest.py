"""The fixtures of tests/e2e/ (their helpers: tests/e2e/helpers.py)."""
from __future__ import annotations

import pytest

from jobico_core.db import upgrade_schema
from jobico_core.settings import Settings

from .helpers import (
    Platform,
    platform_env,
    serve_app,
)


@pytest.fixture
def platform(pg_url, redis_url, s3_server, s3_bucket, tmp_path):
    env = platform_env(pg_url, redis_url, s3_server, s3_bucket, tmp_path)
    settings = Settings.from_env(env)
    upgrade_schema(pg_url)
    from jobico_api import create_app
    app = create_app(settings)
    server, url = serve_app(app)
    p = Platform(env, settings, app.extensions["jobico"], tmp_path, url)
    try:
        yield p
    finally:
        for w in p.workers:
            w.stop()
        server.shutdown()
