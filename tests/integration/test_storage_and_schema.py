"""Object store implementations (filesystem and S3 on a real server) and the
Alembic migrations on both PostgreSQL and SQLite."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import create_engine, inspect, text

from jobico_core.db import Base, Database, Execution, Tenant, upgrade_schema
from jobico_core.errors import Unavailable
from jobico_core.storage import FileStore, ObjectNotFound, S3Store, blob_key, sha256_hex

TABLES = {"counters", "tenants", "api_keys", "files", "packages", "package_versions", "event_routes", "executions",
          "execution_logs", "alembic_version"}


def _exercise(store):
    key = blob_key("acme", sha256_hex(b"hello"))
    assert not store.exists(key)
    with pytest.raises(ObjectNotFound):
        store.get(key)
    store.put(key, b"hello")
    assert store.exists(key) and store.get(key) == b"hello"
    store.put(key, b"hello")  # idempotent overwrite
    store.delete(key)
    assert not store.exists(key)
    for bad in ("../x", "/abs", "a//b", "tenants/../../etc"):
        with pytest.raises(ValueError):
            store.put(bad, b"x")
    store.ping()


def test_file_store(tmp_path):
    _exercise(FileStore(tmp_path / "objects"))


def test_s3_store(s3_server, s3_bucket):
    _exercise(S3Store(s3_server.endpoint, s3_bucket, s3_server.access_key, s3_server.secret_key))


def test_s3_store_bad_credentials_and_unreachable_are_unavailable(s3_server, s3_bucket):
    wrong = S3Store(s3_server.endpoint, s3_bucket, s3_server.access_key, "not-the-secret")
    with pytest.raises(Unavailable):
        wrong.put("tenants/a/blobs/x", b"x")
    from jobico_ops.embedded import free_port
    down = S3Store(f"127.0.0.1:{free_port()}", s3_bucket, "k", "s")
    with pytest.raises(Unavailable):
        down.ping()


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_migrations_run_on_both_databases(backend, pg_url, tmp_path):
    url = pg_url if backend == "postgresql" else f"sqlite:///{tmp_path / 'j.db'}"
    upgrade_schema(url)
    upgrade_schema(url)  # idempotent
    assert set(inspect(create_engine(url)).get_table_names()) >= TABLES
    db = Database(url)
    with db.session() as s:
        s.add(Tenant(id="t"))
    big = (1 << 64) - 1  # u64 result codes are stored without loss
    with db.session() as s:
        s.add(Execution(id="01a00000-0000-7000-8000-000000000001", tenant_id="t", package="p", version=1,
                        version_id=1, event="e", queue="q", payload="{}", code=big))
    with db.session() as s:
        assert s.get(Execution, "01a00000-0000-7000-8000-000000000001").code == big
    # the models and the migrated schema agree (nothing a migration forgot)
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    # a cron fire time is recorded once per tenant and event; webhook rows (no scheduled_at) never collide
    import datetime as dt

    from sqlalchemy.exc import IntegrityError
    when = dt.datetime(2026, 1, 1, 8, 0, tzinfo=dt.UTC)

    def row(n: int, **kw) -> Execution:
        return Execution(id=f"01a00000-0000-7000-8000-00000000010{n}", tenant_id="t", package="p", version=1,
                         version_id=1, event="e", queue="q", payload="{}", **kw)
    with db.session() as s:
        s.add_all([row(1), row(2), row(3, trigger="cron", scheduled_at=when)])
    with pytest.raises(IntegrityError), db.session() as s:
        s.add(row(4, trigger="cron", scheduled_at=when))
    with db.session() as s:
        s.add(row(5, trigger="cron", scheduled_at=when + dt.timedelta(seconds=1)))
        s.flush()
        assert s.get(Execution, row(3).id).scheduled_at == when


def _predicate(sql: str) -> str:
    """An index's WHERE clause as text without casts and parentheses (PostgreSQL's pg_indexes
    writes ``((status)::text = 'running'::text)`` for the model's ``status = 'running'``)."""
    return " ".join(re.sub(r"::[a-z]+|[()]", "", sql).split())


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_partial_indexes_match_the_models(backend, pg_url, tmp_path):
    """Which indexes of ``executions`` are partial, and on what, is the same in the migrated
    schema as in the models (autogenerate's comparison does not look at index predicates).
    Migration 0011 made the seq, chained_from and resubmitted_from ones partial: a webhook's
    INSERT (all three NULL) adds no entry to them."""
    url = pg_url if backend == "postgresql" else f"sqlite:///{tmp_path / 'j.db'}"
    upgrade_schema(url)
    table = "executions"
    with create_engine(url).connect() as conn:
        if backend == "postgresql":
            defs = conn.execute(text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = :t"),
                                {"t": table}).all()
        else:
            defs = conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = :t "
                                     "AND sql IS NOT NULL"), {"t": table}).all()
    found = {name: _predicate(sql.split(" WHERE ", 1)[1]) for name, sql in defs if " WHERE " in sql}
    wanted = {ix.name: _predicate(str(ix.dialect_options[backend]["where"]))
              for ix in Execution.__table__.indexes if ix.dialect_options[backend]["where"] is not None}
    assert found == wanted
    assert {"ix_executions_tenant_seq", "ix_executions_chained_from", "ix_executions_resubmitted_from"} <= set(found)
