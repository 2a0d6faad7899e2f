"""The fixtures of tests/chaos/ (their helpers: tests/chaos/helpers.py)."""
from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path

import pytest
import wasmtime

from jobico_core.db import upgrade_schema
from jobico_core.settings import Settings
from jobico_ops.embedded import RedisServer
from tests.e2e.helpers import serve_app
from tests.services import PostgresServer, S3Server

from .helpers import (
    DB_NUMBERS,
    HERE,
    RESULTS,
    Chaos,
    chaos_env,
)


def pytest_terminal_summary(terminalreporter):
    if not RESULTS:
        return
    tr = terminalreporter
    tr.section("chaos: every accepted event executed at least once, recorded exactly once")
    cols = ("scenario", "sent", "accepted", "executed", "recorded", "duplicates", "lost", "runs", "notes")
    tr.write_line(" | ".join(cols))
    for r in RESULTS:
        tr.write_line(" | ".join(str(r.get(c, "")) for c in cols))
    out = os.environ.get("JOBICO_CHAOS_REPORT")
    if out:
        Path(out).write_text(json.dumps(RESULTS, indent=2))


@pytest.fixture(scope="session")
def chaos_redis():
    server = RedisServer(appendonly=True, appendfsync="always", extra_args=["--databases", "64"])
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def chaos_pg():
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        if server.frozen:
            server.thaw()
        server.stop()


@pytest.fixture(scope="session")
def chaos_s3():
    server = S3Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def spin_wasm(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("wasm") / "spin.wasm"
    path.write_bytes(wasmtime.wat2wasm((HERE / "spin.wat").read_text()))
    return path


@pytest.fixture
def chaos(chaos_redis, chaos_pg, chaos_s3, spin_wasm, tmp_path):
    db = next(DB_NUMBERS)
    redis_url = chaos_redis.url_for(db)
    chaos_redis.client(db).flushdb()
    pg_url = chaos_pg.create_database()
    db_name = pg_url.rsplit("/", 1)[1]
    # statements bounded at 3 s server-side, 5 s client-side (jobico_core.db): a frozen server costs 5 s
    pg_url += "?options=-c%20statement_timeout%3D3000"
    bucket = chaos_s3.create_bucket(f"chaos-{uuid.uuid4().hex[:16]}")
    env = chaos_env(pg_url, redis_url, chaos_s3, bucket, tmp_path)
    upgrade_schema(pg_url)
    settings = Settings.from_env(env).check()
    from jobico_api import create_app
    app = create_app(settings)
    server, url = serve_app(app)
    p = Chaos(env, settings, app.extensions["jobico"], tmp_path, url)
    p.setup_tenant(spin_wasm)
    try:
        yield p
    finally:
        for w in p.workers:
            w.stop(timeout=10)
        server.shutdown()
        with contextlib.suppress(Exception):
            app.extensions["jobico"].db.engine.dispose()
        if chaos_pg.frozen:
            chaos_pg.thaw()
        if not chaos_pg.is_running():
            chaos_pg.restart()
        with contextlib.suppress(Exception):
            chaos_pg.drop_database(db_name)
        if not chaos_redis.is_running():
            chaos_redis.restart()
        if not chaos_s3.is_running():
            chaos_s3.restart()
