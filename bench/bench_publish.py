#!/usr/bin/env python3
"""Micro-benchmark of task publishing (jobico_core.broker.publish) against real Redis.

Run: .venv/bin/python bench/bench_publish.py [--repeats 300]

Compares, alternating in one process, the shipped ``publish`` (one kombu
``producer.batch()`` pipeline per call) with the previous per-message loop
(``send_task`` for each message, each LPUSH its own round trip), for 1 and 100
messages per call. Prints a table, then one JSON line.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Services, table  # noqa: E402

from jobico_core.broker import EXECUTE_TASK, TaskMessage, celery_queue, publish  # noqa: E402

# the retry policy the old loop used
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0.05, "interval_step": 0.2, "interval_max": 0.5}


def publish_unbatched(app, messages) -> None:
    """The original publish loop: Celery send_task per message, routed through the queue's exchange
    (a binding lookup per message), one LPUSH each (for comparison only)."""
    declared = {}
    with app.producer_or_acquire() as producer:
        for m in messages:
            q = declared.get(m.queue)
            if q is None:
                q = declared[m.queue] = celery_queue(m.queue)
            app.send_task(EXECUTE_TASK, args=(m.execution_id, m.payload),
                          kwargs={"tenant": m.tenant, "package": m.package, "event": m.event},
                          task_id=m.execution_id, queue=q, exchange=q.exchange, routing_key=q.routing_key,
                          declare=[q], producer=producer, retry=True, retry_policy=PUBLISH_RETRY,
                          shadow=f"jobico.execute[{m.tenant}/{m.package}/{m.event}]")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=300)
    args = ap.parse_args()
    from jobico_core.services.context import Context
    from jobico_core.settings import Settings
    res = {"bench": "publish"}
    rows = []
    with Services().start(s3=False) as svc:
        env = svc.env("publish")
        ctx = Context(Settings.from_env({**env, "JOBICO_STORAGE_URL": "file://" + str(svc.tmp / "store")}))
        for n in (1, 100):
            msgs = [TaskMessage(f"0190b6a1-0000-7000-8000-{i:012d}", '{"a":1}', "t0", "p0", "e0", "jobico.t0.p0.q")
                    for i in range(n)]
            publish(ctx.celery, msgs)
            publish_unbatched(ctx.celery, msgs)
            a, b = [], []
            for _ in range(max(3, args.repeats // n)):
                t = time.perf_counter()
                publish_unbatched(ctx.celery, msgs)
                a.append(time.perf_counter() - t)
                t = time.perf_counter()
                publish(ctx.celery, msgs)
                b.append(time.perf_counter() - t)
                ctx.redis.delete("jobico.t0.p0.q")
            before, after = statistics.median(a) * 1000, statistics.median(b) * 1000
            res[f"unbatched_{n}_ms"], res[f"batched_{n}_ms"] = round(before, 3), round(after, 3)
            res[f"speedup_{n}"] = round(before / after, 2)
            rows.append((f"{n} message(s) per publish", f"{before:.2f} ms", f"{after:.2f} ms",
                         f"{before / after:.2f}x"))
    table(rows, ("publish (median)", "per-message loop", "producer.batch()", "speedup"))
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
