"""A worker's claim and record run on the pool's psycopg connection (db.DriverStatement,
Database.driver_autocommit): the same rows and conversions as through SQLAlchemy, and the
same errors. Real PostgreSQL, Redis and S3."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.exc import DBAPIError, OperationalError

from jobico_worker.executor import INFRA_ERRORS, claim, record

from .test_batch import deploy, flaky_tenant, post, rows, take


@pytest.fixture
def h(make_api):
    api = flaky_tenant(make_api)
    deploy(api)
    return api


def test_claim_and_record_return_what_sqlalchemy_reads(h):
    assert h.ctx.db.engine.dialect.name == "postgresql"
    [eid] = post(h, [{"n": 0}])
    take(h)
    state, row = claim(h.ctx, eid, "w1")
    assert state == "run" and row.prev_status == "queued"
    stored = rows(h, [eid])[eid]
    for name in ("id", "tenant_id", "package", "version", "version_id", "event", "queue", "status", "payload",
                 "attempts", "worker", "started_at", "lease_until", "created_at", "chain_depth", "locks"):
        assert getattr(row, name) == getattr(stored, name), name
    assert row.status == "running" and row.attempts == 1 and row.worker == "w1"
    assert row.started_at.tzinfo is not None and row.lease_until > row.started_at

    big = (1 << 64) - 1  # U64: stored as a negative BIGINT, read back unsigned
    fin = record(h.ctx, row, None, status="failed", code=big, result="r", stdout="out", duration_ms=1.5)
    assert fin.recorded and fin.execution["code"] == big and fin.execution["status"] == "failed"
    assert fin.execution["seq"] is not None and fin.execution["finished_at"]
    stored = rows(h, [eid])[eid]
    assert (stored.code, stored.status, stored.result, stored.stdout, stored.duration_ms) == \
        (big, "failed", "r", "out", 1.5)
    with pytest.raises(ValueError):  # U64's own check, as through SQLAlchemy
        record(h.ctx, row, None, status="failed", code=1 << 64)

    # a second delivery: found final, nothing recorded twice
    assert claim(h.ctx, eid, "w2")[0] == "done"
    again = record(h.ctx, row, None, status="succeeded", code=0)
    assert not again.recorded and rows(h, [eid])[eid].status == "failed"


def test_a_lost_connection_is_an_infrastructure_error_and_is_not_reused(h):
    import psycopg
    [eid, other] = post(h, [{"n": 0}, {"n": 1}])
    take(h)
    engine = h.ctx.db.engine
    engine.dispose()  # the pool holds one connection from here: the one killed below
    with h.ctx.db.driver_autocommit() as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    with psycopg.connect(engine.url.set(drivername="postgresql").render_as_string(hide_password=False),
                         autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(OperationalError) as lost:
        claim(h.ctx, eid, "w1")
    assert isinstance(lost.value, INFRA_ERRORS) and lost.value.connection_invalidated
    assert rows(h, [eid])[eid].status == "queued"
    state, row = claim(h.ctx, other, "w1")  # the next statement gets a live connection
    assert state == "run" and row.started_at > dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)


def test_the_connection_goes_back_to_the_pool_out_of_autocommit_whatever_was_raised(h):
    """SQLAlchemy's transactions on a pooled connection need it out of autocommit: an error inside
    (U64's range check, a statement refused) must not hand it back in autocommit."""
    with pytest.raises(ValueError), h.ctx.db.driver_autocommit() as conn:
        raise ValueError("not the database's")
    assert conn.autocommit is False and not conn.closed
    with pytest.raises(DBAPIError) as refused, h.ctx.db.driver_autocommit() as conn:
        conn.execute("SELECT 1/0")
    assert not refused.value.connection_invalidated
    assert conn.autocommit is False and not conn.closed
