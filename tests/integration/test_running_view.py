"""`GET /api/v1/executions/running` (services.executions.running_executions) after real claims
(jobico_worker.batch.claim_many, the batch task's one claim statement) on PostgreSQL and on
SQLite: a batch's executions are listed as one running execution with the others claimed."""
from __future__ import annotations

import datetime as dt

import pytest

from jobico_core.db import Execution
from jobico_core.ids import uuid7
from jobico_core.services.executions import running_executions
from jobico_worker.batch import claim_many

pytestmark = pytest.mark.services


def _rows(ctx, tenant: str, n: int, package: str = "people") -> list[str]:
    ids = [uuid7() for _ in range(n)]
    with ctx.db.session() as s:
        s.add_all([Execution(id=i, tenant_id=tenant, package=package, version=1, version_id=1, event="person_added",
                             queue=f"jobico.{tenant}.{package}.main", payload="{}") for i in ids])
    return ids


def _check(ctx, tenant: str) -> None:
    batch = _rows(ctx, tenant, 4)
    alone = _rows(ctx, tenant, 1)
    other = _rows(ctx, tenant, 2, package="zoo")
    t0 = dt.datetime.now(dt.UTC)
    assert len(claim_many(ctx, batch, "w1@host", t0)) == 4
    claim_many(ctx, alone, "w1@host", t0 + dt.timedelta(milliseconds=3))  # another task of the same worker
    claim_many(ctx, other, "w2@host", t0)  # another worker's batch, same instant
    doc = running_executions(ctx, tenant)
    assert doc["total"] == 3 and doc["truncated"] is False
    people, zoo = doc["packages"]
    assert (people["package"], people["running"], people["claimed"]) == ("people", 2, 3)
    assert [(e["id"], e["batch_waiting"]) for e in people["items"]] == [(batch[0], 3), (alone[0], 0)]
    assert (zoo["running"], zoo["claimed"], [e["id"] for e in zoo["items"]]) == (1, 1, [other[0]])
    # the batch records its first execution: the next one is the one listed
    with ctx.db.session() as s:
        s.get(Execution, batch[0]).status = "succeeded"
    people = running_executions(ctx, tenant, package="people")["packages"][0]
    assert [(e["id"], e["batch_waiting"]) for e in people["items"]] == [(batch[1], 2), (alone[0], 0)]
    assert running_executions(ctx, tenant, limit=1)["truncated"] is True


def test_running_view_on_postgresql(api):
    api.deployed_tenant("tenant_1")
    _check(api.ctx, "tenant_1")


def test_running_view_on_sqlite(sqlite_ctx):
    _check(sqlite_ctx, "t1")
