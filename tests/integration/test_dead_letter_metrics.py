"""``jobico_executions_dead_lettered_total{tenant}``: every way an execution is dead-lettered
counts once (guest retries spent, a batch's or a single task's infrastructure retries spent),
and a finished execution is never counted. Real PostgreSQL/Redis/S3, real WASM."""
from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from jobico_core import metrics
from jobico_core.broker import EXECUTE_TASK
from jobico_worker.batch import dead_letter_many, run_batch
from jobico_worker.executor import dead_letter, run_execution

from .test_batch import Runtime, deploy, flaky_tenant, post, rows, take


@pytest.fixture
def h(make_api):
    """test_batch's tenant t1 with its flaky module (traps on {"fail": ...})."""
    return flaky_tenant(make_api)


def dead_lettered(tenant: str) -> float:
    for family in text_string_to_metric_families(metrics.render(metrics.registry()).decode()):
        for sample in family.samples:
            if sample.name == "jobico_executions_dead_lettered_total" and sample.labels.get("tenant") == tenant:
                return sample.value
    return 0.0


def test_each_dead_letter_counts_once_per_tenant(h):
    deploy(h, retries=1)
    before = dead_lettered("t1")
    ids = post(h, [{"n": 0}, {"fail": 1}])
    take(h)
    run_batch(h.ctx, Runtime(), ids, worker="w")  # the failing one is requeued for its guest retry
    (eid, payload), = [args for name, args, _ in take(h) if name == EXECUTE_TASK and args[0] == ids[1]]
    rec = run_execution(h.ctx, Runtime(), eid, payload, worker="w")
    assert (rec["status"], rec["dead_lettered"]) == ("trapped", True)
    assert dead_lettered("t1") == before + 1

    # infrastructure retries spent: a batch parks its unfinished executions, a task its own
    queued = post(h, [{"n": 2}, {"n": 3}, {"n": 4}])
    take(h)
    dead_letter_many(h.ctx, queued[:2] + [ids[0]], "redis unreachable")  # ids[0] finished: not parked
    assert dead_lettered("t1") == before + 3
    dead_letter(h.ctx, queued[2], "redis unreachable")
    dead_letter(h.ctx, ids[0], "redis unreachable")  # finished: nothing
    assert dead_lettered("t1") == before + 4
    got = rows(h, queued + ids)
    assert [got[i].dead_lettered for i in queued] == [True, True, True] and not got[ids[0]].dead_lettered
