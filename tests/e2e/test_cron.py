"""Cron triggers end to end: real beat processes (Jobico's scheduler), a real worker, real
Redis, PostgreSQL and S3. A per-second schedule fires on time, moves with a redeploy, stops
with a delete, and two beat processes never fire one time twice."""
from __future__ import annotations

import datetime as dt
import json
import signal

from sqlalchemy import select

from jobico_core.db import Execution
from tests.waiting import holds_for, wait_until

from .helpers import example

CLOCK_YAML = """
id: clock
queues: [{id: q}]
jobs:
  - event:
      id: tick
      schema: {id: s, schemaref: any.json}
      supplierqueue: q
      runtime: echo
      schedule: {cron: "CRON", timezone: Europe/Paris, payload: {from: cron, n: 1}}
runtimes: [{id: echo, moduleref: echo.wasm}]
"""


def _clock(cron: str) -> str:
    return CLOCK_YAML.replace("CRON", cron)


def _fires(p, event: str = "tick") -> list[Execution]:
    with p.ctx.db.session() as s:
        return list(s.scalars(select(Execution).where(Execution.tenant_id == "cron", Execution.event == event)
                              .order_by(Execution.scheduled_at)))


def _wait_for(cond, timeout: float, what: str, logs) -> None:
    try:
        wait_until(cond, timeout, what=what, interval=0.2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{logs()}") from None


def test_per_second_schedule_fires_on_time_moves_stops_and_never_doubles(platform):
    p = platform
    key = p.tenant("cron")
    for f in ("jobicolets/echo.wasm", "schemas/any.json"):
        p.upload(key, example(f))
    worker = p.start_worker(wait=False)
    lock = {"JOBICO_BEAT_LOCK_SECONDS": "3"}  # a takeover within 3 s of the holder's death (10 by default)
    # two started by mistake (at once, with the worker): one fires, one stands by
    beats = [p.start_beat("b1", extra_env=lock, wait=False), p.start_beat("b2", extra_env=lock, wait=False)]
    p.ready(worker, *beats)
    logs = lambda: "\n".join(w.log_tail(40) for w in p.workers)  # noqa: E731

    deployed = dt.datetime.now(dt.UTC)
    p.deploy(key, _clock("* * * * * *"))
    _wait_for(lambda: len(_fires(p)) >= 5, 20, "5 fires of a per-second schedule", logs)

    rows = _fires(p)
    times = [e.scheduled_at for e in rows]
    assert all(t.microsecond == 0 for t in times)
    assert all(b - a == dt.timedelta(seconds=1) for a, b in zip(times, times[1:])), times  # every second, once
    assert times[0] > deployed - dt.timedelta(seconds=1)
    for e in rows:
        assert (e.trigger, e.submitter, e.version) == ("cron", "cron", 1)
        assert json.loads(e.payload) == {"from": "cron", "n": 1}
        assert e.created_at - e.scheduled_at < dt.timedelta(seconds=2.5), (e.created_at, e.scheduled_at)  # on time
    done = p.wait(key, rows[0].id)  # the same path as a webhook event: the worker ran it
    assert done["status"] == "succeeded" and json.loads(done["result"]) == {"from": "cron", "n": 1}
    assert done["trigger"] == "cron" and done["submitter"] == "cron"
    assert done["scheduled_at"] == rows[0].scheduled_at.isoformat().replace("+00:00", "Z")

    # the lock holder dies without releasing the lock: the standby takes over (after the lock's TTL)
    holder = [b for b in beats if b.holds_lock()]
    assert len(holder) == 1, logs()
    standby = next(b for b in beats if b is not holder[0])
    holder[0].stop(signal.SIGKILL)
    killed = dt.datetime.now(dt.UTC)
    _wait_for(standby.holds_lock, 20, "the standby beat taking over", logs)
    _wait_for(lambda: _fires(p)[-1].scheduled_at > killed + dt.timedelta(seconds=2), 15,
              "fires after the takeover", logs)
    times = [e.scheduled_at for e in _fires(p)]
    assert len(times) == len(set(times))  # never twice...
    assert all(b - a == dt.timedelta(seconds=1) for a, b in zip(times, times[1:])), times  # ...nor a gap

    # a redeploy moves the schedule: every 3rd second from now on, from version 2
    moved = dt.datetime.now(dt.UTC)
    p.deploy(key, _clock("*/3 * * * * *"), redeploy_id="clock")
    settle = moved + dt.timedelta(seconds=2)  # the beat learns of it at its next tick
    _wait_for(lambda: len([e for e in _fires(p) if e.scheduled_at > settle]) >= 3, 20,
              "3 fires of the moved schedule", logs)
    after = [e for e in _fires(p) if e.scheduled_at > settle]
    assert all(e.scheduled_at.second % 3 == 0 and e.version == 2 for e in after), \
        [(e.scheduled_at, e.version) for e in after]
    assert all(b.scheduled_at - a.scheduled_at == dt.timedelta(seconds=3) for a, b in zip(after, after[1:]))

    # a delete stops it
    r = p.call(key, "DELETE", "/api/v1/packages/clock")
    assert r.status_code == 204, r.text
    stopped = dt.datetime.now(dt.UTC)
    count = len(_fires(p))
    holds_for(lambda: len(_fires(p)) == count, 4.5, what="no fire after the delete (a 3 s schedule)")
    rows = _fires(p)
    assert all(e.scheduled_at <= stopped + dt.timedelta(seconds=1) for e in rows)
    times = [e.scheduled_at for e in rows]
    assert len(times) == len(set(times))
