#!/usr/bin/env python3
"""Execute benchmark (issue 7.2): events/s completed and recorded per worker process.

Run: .venv/bin/python bench/bench_execute.py [--events 2000] [--repeats 3]

For each repeat, in the same run and against the same Redis/PostgreSQL:
  * jobico -c 1 / -c 2: N executions of the echo jobicolet are enqueued the way the
    webhook does for requests of 100 events (rows committed, then one
    ``jobico.execute_batch`` task per request), and for -c 1 also as 1-event
    requests (one ``jobico.execute`` task each), then a worker starts
    (``celery -A jobico_worker.app worker -P prefork -c C -l INFO --without-gossip
    --without-mingle``, the flags ``jobico run`` uses); the rate is N over the time
    from the first claim to the last record (the rows' started_at and finished_at),
    so start-up and the idle tail are excluded; every row must end `succeeded`;
  * bare -c 1 / -c 2: N no-op tasks (bench/bare_celery.py, same config and flags,
    results ignored), measured while the queue (+ unacked) goes from 90 % to 10 % of N.
Prints a table, then one JSON line.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Services, context, log, median, preload, setup_tenant, table, worker  # noqa: E402

PAYLOAD = '{"age":50,"firstName":"john"}'


def unfinished(ctx, tenant: str | None = None) -> int:
    from sqlalchemy import text
    with ctx.db.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM executions WHERE status IN ('queued','running')"))
                   .scalar_one())


def drain_rate(remaining, n: int, timeout: float) -> tuple[float, float]:
    """Poll remaining() until 0; returns (events/s between 90 % and 10 % left, seconds to drain)."""
    t_hi = t_lo = None
    t0 = time.monotonic()
    deadline = t0 + timeout
    while True:
        left = remaining()
        now = time.monotonic()
        if t_hi is None and left <= 0.9 * n:
            t_hi = now
        if t_lo is None and left <= 0.1 * n:
            t_lo = now
        if left == 0:
            break
        if now > deadline:
            raise RuntimeError(f"{left} of {n} still unfinished after {timeout}s")
        time.sleep(0.02)
    return 0.8 * n / max(1e-6, (t_lo - t_hi)), time.monotonic() - t0


def run_jobico(svc, ctx, env, tenant: str, n: int, concurrency: int, label: str, payload: str = PAYLOAD,
               tenants: list[str] | None = None, package: int = 0, timeout: float = 600,
               per_request: int = 100) -> float:
    """``per_request``: events per enqueue call, as a webhook request of that many events
    (they share tasks of up to JOBICO_TASK_BATCH executions)."""
    from sqlalchemy import text
    with ctx.db.engine.begin() as conn:
        conn.execute(text("TRUNCATE executions CASCADE"))
    for t in tenants or [tenant]:
        preload(ctx, t, n // len(tenants or [tenant]), payload=payload, package=package, batch=per_request)
    n = unfinished(ctx)
    w = worker(label, env, svc.tmp / "logs", concurrency)
    try:
        _, secs = drain_rate(lambda: unfinished(ctx), n, timeout)
    finally:
        w.stop()
    from sqlalchemy import text as t_
    with ctx.db.engine.connect() as conn:
        bad = conn.execute(t_("SELECT status, count(*) FROM executions WHERE status <> 'succeeded' "
                              "GROUP BY status")).all()
        # Batches record their executions together (every 0.1 s), so the count of unfinished rows
        # drops in steps: the rate comes from the rows themselves, first claim to last record
        # (worker start-up and the idle tail excluded, the first module fetch and compile included).
        first, last = conn.execute(t_("SELECT min(started_at), max(finished_at) FROM executions")).one()
    rate = n / max(1e-3, (last - first).total_seconds())
    if bad:
        raise RuntimeError(f"{label}: not every execution succeeded: {bad}\n{w.tail()}")
    log(f"{label}: {rate:.0f} events/s ({n} in {secs:.1f}s incl. start-up and tail)")
    return rate


def run_bare(svc, env, n: int, concurrency: int, label: str) -> float:
    from jobico_core.broker import celery_queue, make_celery
    from jobico_core.settings import Settings
    app = make_celery(Settings.from_env(env), name="bare-producer")
    q = celery_queue("bench.noop")
    r = svc.redis.client(int(env["JOBICO_REDIS_URL"].rsplit("/", 1)[1]))
    r.delete("bench.noop")
    with app.producer_or_acquire() as producer:
        for i in range(n):
            app.send_task("bench.noop", args=(f"id-{i}", PAYLOAD), kwargs={"tenant": "t0", "package": "p0",
                                                                           "event": "e0"},
                          queue=q, exchange=q.exchange, routing_key=q.routing_key, declare=[q], producer=producer)
    w = worker(label, {**env, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}, svc.tmp / "logs",
               concurrency, app="bench.bare_celery", queues="bench.noop")
    try:
        rate, secs = drain_rate(lambda: r.llen("bench.noop") + r.hlen("unacked"), n, 300)
    finally:
        w.stop()
    log(f"{label}: {rate:.0f} tasks/s ({n} in {secs:.1f}s incl. start-up and tail)")
    return rate


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    n = args.events
    runs: dict[str, list[float]] = {"bare c1": [], "jobico c1": [], "jobico c1 single": [], "bare c2": [],
                                    "jobico c2": []}
    with Services() as svc:
        env = svc.env("execute")
        ctx = context(env)
        setup_tenant(ctx, "t0")
        for rep in range(args.repeats):
            runs["bare c1"].append(run_bare(svc, env, n, 1, f"bare-c1-r{rep}"))
            runs["jobico c1"].append(run_jobico(svc, ctx, env, "t0", n, 1, f"jobico-c1-r{rep}"))
            runs["jobico c1 single"].append(run_jobico(svc, ctx, env, "t0", n, 1, f"jobico-c1-single-r{rep}",
                                                       per_request=1))
            runs["bare c2"].append(run_bare(svc, env, n, 2, f"bare-c2-r{rep}"))
            runs["jobico c2"].append(run_jobico(svc, ctx, env, "t0", n, 2, f"jobico-c2-r{rep}"))
        ctx.db.engine.dispose()
    m = {k: median(v) for k, v in runs.items()}
    res = {
        "bench": "execute", "events": n, "repeats": args.repeats,
        "bare_c1_events_s": round(m["bare c1"], 1), "jobico_c1_events_s": round(m["jobico c1"], 1),
        "ratio_c1": round(m["jobico c1"] / m["bare c1"], 3),
        "jobico_c1_single_events_s": round(m["jobico c1 single"], 1),
        "ratio_c1_single": round(m["jobico c1 single"] / m["bare c1"], 3),
        "bare_c2_events_s": round(m["bare c2"], 1), "jobico_c2_events_s": round(m["jobico c2"], 1),
        "ratio_c2": round(m["jobico c2"] / m["bare c2"], 3),
        "jobico_c2_over_c1": round(m["jobico c2"] / m["jobico c1"], 2),
        "runs": {k: [round(x, 1) for x in v] for k, v in runs.items()},
    }
    table([
        ("1 worker process (-c 1), 100-event requests", res["bare_c1_events_s"], res["jobico_c1_events_s"],
         f"{res['ratio_c1']:.3f}x", "goal >= 1.0x"),
        ("1 worker process (-c 1), 1-event requests", res["bare_c1_events_s"], res["jobico_c1_single_events_s"],
         f"{res['ratio_c1_single']:.3f}x", "one task per event"),
        ("2 worker processes (-c 2), 100-event requests", res["bare_c2_events_s"], res["jobico_c2_events_s"],
         f"{res['ratio_c2']:.3f}x",
         f"c2/c1 {res['jobico_c2_over_c1']:.2f}x"),
    ], ("execute (events/s, median)", "bare Celery no-op", "jobico echo", "ratio", ""))
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
