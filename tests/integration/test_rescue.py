"""The rescue of executions left queued with no task in Redis (jobico_core/services/rescue.py)."""
from __future__ import annotations

import base64
import datetime as dt
import json

from jobico_core.db import utcnow
from jobico_core.services.rescue import rescue_stalled, sweep

LATER = dt.timedelta(seconds=600)


def _queued(api, tenant, n=2) -> tuple[list[str], str]:
    r = api.post_events(tenant.id, "person_added", {"data": [{"name": f"p{i}", "age": i} for i in range(n)]},
                        headers=tenant.headers)
    assert r.status_code == 200, r.get_json()
    ids = r.get_json()["executions"]
    queues = {e.queue for e in api.executions_in_db()}
    assert len(queues) == 1
    return ids, queues.pop()


def _ids_on(redis, queue) -> list[str]:
    """The execution ids the tasks on ``queue`` carry (their bodies' first argument: one id, or a batch's)."""
    out = []
    for raw in redis.lrange(queue, 0, -1):
        first = json.loads(base64.b64decode(json.loads(raw)["body"]))[0][0]
        out += first if isinstance(first, list) else [first]
    return out


def test_a_backlog_or_a_young_row_is_left_alone(api):
    t = api.deployed_tenant()
    ids, queue = _queued(api, t)
    assert rescue_stalled(api.ctx, 60) == []                        # young rows
    assert rescue_stalled(api.ctx, 60, now=utcnow() + LATER) == []  # their tasks are still on the queue
    assert sorted(_ids_on(api.redis, queue)) == sorted(ids)


def test_rows_whose_tasks_were_lost_are_published_again_once(api):
    t = api.deployed_tenant()
    ids, queue = _queued(api, t)
    api.redis.delete(queue)  # what a Redis crash between BRPOP and the unacked copy amounts to
    rescued = rescue_stalled(api.ctx, 60, now=utcnow() + LATER)
    assert sorted(rescued) == sorted(ids)
    assert sorted(_ids_on(api.redis, queue)) == sorted(ids)
    # the republished tasks are on the queue now: a second sweep adds nothing
    assert rescue_stalled(api.ctx, 60, now=utcnow() + LATER) == []
    assert sorted(_ids_on(api.redis, queue)) == sorted(ids)


def test_a_task_a_worker_holds_in_unacked_is_not_published_again(api):
    t = api.deployed_tenant()
    first, queue = _queued(api, t, n=1)
    raw = api.redis.rpop(queue)  # a worker took it: kombu keeps [message, exchange, routing key] in `unacked`
    api.redis.hset("unacked", "tag-1", json.dumps([json.loads(raw), "", queue]))
    api.redis.zadd("unacked_index", {"tag-1": 1.0})
    assert rescue_stalled(api.ctx, 60, now=utcnow() + LATER) == []
    second, _ = _queued(api, t, n=1)
    api.redis.delete(queue)
    assert rescue_stalled(api.ctx, 60) == []  # too young
    with api.ctx.db.session() as s:  # age the second row instead of moving the clock
        from sqlalchemy import update

        from jobico_core.db import Execution
        s.execute(update(Execution).where(Execution.id == second[0])
                  .values(created_at=utcnow() - dt.timedelta(seconds=120)))
        s.commit()
    assert rescue_stalled(api.ctx, 60) == second


def test_finished_or_dead_lettered_rows_are_never_rescued_and_sweep_is_one_at_a_time(api):
    t = api.deployed_tenant()
    ids, queue = _queued(api, t, n=3)
    api.redis.delete(queue)
    with api.ctx.db.session() as s:
        from sqlalchemy import update

        from jobico_core.db import Execution
        s.execute(update(Execution).where(Execution.id == ids[0]).values(
            status="succeeded", created_at=utcnow() - dt.timedelta(seconds=120)))
        s.execute(update(Execution).where(Execution.id == ids[1]).values(
            created_at=utcnow() - dt.timedelta(seconds=120)))
        s.execute(update(Execution).where(Execution.id == ids[2]).values(
            dead_lettered=True, created_at=utcnow() - dt.timedelta(seconds=120)))
        s.commit()
    assert sweep(api.ctx, 0) == []              # 0 turns it off
    assert sweep(api.ctx, 60) == [ids[1]]       # only the queued one
    api.redis.delete(queue)
    assert sweep(api.ctx, 60) == []             # another worker within the period: the lock says no
    api.redis.delete("jobico:rescue:lock")
    assert sweep(api.ctx, 60) == [ids[1]]
