"""The fixtures of tests/integration/ (their helpers: tests/integration/helpers.py)."""
from __future__ import annotations

import pytest
import redis

from jobico_core.settings import Settings

from .helpers import (
    ADMIN_TOKEN,
    SECRET_KEY,
    ApiHarness,
)


@pytest.fixture
def sqlite_ctx(tmp_path, redis_url):
    """`make run`'s database: a Context on a migrated SQLite file, a filesystem store, with tenant t1."""
    from jobico_core.db import upgrade_schema
    from jobico_core.services import tenants
    from jobico_core.services.context import Context
    settings = Settings.from_env({}, embedded=True, data_dir=tmp_path, cache_dir=tmp_path / "cache",
                                 database_url=f"sqlite:///{tmp_path / 'j.db'}", redis_url=redis_url,
                                 storage_url=f"file://{tmp_path / 'objects'}")
    upgrade_schema(settings.database_url)
    ctx = Context(settings)
    tenants.create_tenant(ctx, "t1")
    return ctx


@pytest.fixture
def api_settings(api_db_url, redis_url, s3_server, s3_bucket, tmp_path) -> Settings:
    return Settings.from_env(
        {},
        embedded=False,
        data_dir=tmp_path,
        cache_dir=tmp_path / "cache",
        database_url=api_db_url,
        redis_url=redis_url,
        storage_url=f"s3://{s3_bucket}",
        s3_endpoint=s3_server.endpoint,
        s3_access_key=s3_server.access_key,
        s3_secret_key=s3_server.secret_key,
        s3_region=s3_server.region,
        admin_token=ADMIN_TOKEN,
        secret_key=SECRET_KEY,
        max_body_kb=64,
        max_element_kb=2,
        max_elements=20,
        max_upload_kb=256,
    )


@pytest.fixture
def make_api(api_settings):
    from jobico_api import create_app
    from jobico_core.services.context import Context

    harnesses: list[ApiHarness] = []

    def make(**overrides) -> ApiHarness:
        settings = api_settings.replace(**overrides) if overrides else api_settings
        ctx = Context(settings)
        app = create_app(ctx=ctx)
        app.testing = True
        r = redis.Redis.from_url(api_settings.redis_url)  # the real one, even when the app's is dead
        h = ApiHarness(app=app, ctx=ctx, settings=settings, redis=r)
        h._closers += [r.close, lambda: ctx.celery.close(), lambda: ctx.db.engine.dispose()]
        harnesses.append(h)
        return h

    yield make
    for h in harnesses:
        h.close()


@pytest.fixture
def api(make_api) -> ApiHarness:
    return make_api()
