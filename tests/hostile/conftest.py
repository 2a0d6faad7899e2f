"""The fixtures of tests/hostile/ (their helpers: tests/hostile/helpers.py)."""
from __future__ import annotations

import contextlib

import pytest
import redis

from jobico_core.settings import Settings
from tests.integration.helpers import (
    ADMIN_TOKEN,
    PACKAGE,
    SECRET_KEY,
    ApiHarness,
    package_yaml,
)
from tests.services import redis_db_numbers

from .helpers import (
    GOOD,
    World,
    deploy_source,
)


@pytest.fixture(scope="package")
def hostile_settings(postgres_server, migrated_template, redis_server, s3_server, tmp_path_factory) -> Settings:
    import uuid
    db_url = postgres_server.create_database(template=migrated_template)
    bucket = s3_server.create_bucket(f"t-hostile-{uuid.uuid4().hex[:16]}")
    db = next(redis_db_numbers)
    client = redis_server.client(db)
    client.flushdb()
    client.close()
    tmp = tmp_path_factory.mktemp("hostile")
    settings = Settings.from_env(
        {}, embedded=False, data_dir=tmp, cache_dir=tmp / "cache",
        database_url=db_url, redis_url=redis_server.url_for(db), storage_url=f"s3://{bucket}",
        s3_endpoint=s3_server.endpoint, s3_access_key=s3_server.access_key, s3_secret_key=s3_server.secret_key,
        s3_region=s3_server.region, admin_token=ADMIN_TOKEN, secret_key=SECRET_KEY,
        # room for a 100k-deep `[[[...` body to reach the JSON parser; small element/upload caps
        max_body_kb=256, max_element_kb=2, max_elements=20, max_upload_kb=256,
    )
    yield settings
    with contextlib.suppress(Exception):
        postgres_server.drop_database(db_url.rsplit("/", 1)[1])
    with contextlib.suppress(Exception):
        s3_server.drop_bucket(bucket)


@pytest.fixture(scope="package")
def world(hostile_settings) -> World:
    from jobico_api import create_app
    from jobico_core.services.context import Context

    ctx = Context(hostile_settings)
    app = create_app(ctx=ctx)
    app.testing = True
    r = redis.Redis.from_url(hostile_settings.redis_url)
    api = ApiHarness(app=app, ctx=ctx, settings=hostile_settings, redis=r)
    api._closers += [r.close, lambda: ctx.celery.close(), lambda: ctx.db.engine.dispose()]
    try:
        acme = api.tenant("acme")
        deploy_source(api, acme, PACKAGE)
        other = api.tenant("other")
        deploy_source(api, other, PACKAGE)
        signed = api.tenant("signed", webhook_auth="hmac")
        deploy_source(api, signed, package_yaml(event="signed_added"))
        opened = api.tenant("open", webhook_auth="none")
        deploy_source(api, opened, package_yaml(event="open_added"))
        w = World(api=api, acme=acme, other=other, signed=signed, open=opened)
        resp = w.post(GOOD)
        assert resp.status_code == 200, resp.get_data()
        [w.baseline_exec] = resp.get_json()["executions"]
        w.baseline = w.snapshot()
        yield w
    finally:
        api.close()
