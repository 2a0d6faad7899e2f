#!/usr/bin/env python3
"""Execute benchmark (issue 7.2): events/s completed and recorded per worker process.

Run: .venv/bin/python bench/bench_execute.py [--events 2000] [--repeats 3] [--only c1,single,...]

For each repeat, in the same run and against the same Redis/PostgreSQL:
  * jobico -c 1 / -c 2: N executions of the echo jobicolet are enqueued the way the
    webhook does for requests of 100 events (rows committed, then one
    ``jobico.execute_batch`` task per request), and for -c 1 also as 1-event
    requests: one at a time (``single``: one ``jobico.execute`` task each, nothing to
    coalesce) and sent concurrently (``concurrent``: N 1-event requests POSTed to the
    webhook under gunicorn over 32 connections; the tasks are whatever the API makes of
    them), then a worker starts
    (``celery -A jobico_worker.app worker -P prefork -c C -l INFO --without-gossip
    --without-mingle``, the flags ``jobico run`` uses); the rate is N over the time
    from the first claim to the last record (the rows' started_at and finished_at),
    so start-up and the idle tail are excluded; every row must end `succeeded`;
  * bare -c 1 / -c 2: N no-op tasks (bench/bare_celery.py, same config and flags,
    results ignored), measured while the queue (+ unacked) goes from 90 % to 10 % of N.
The workers run with ``JOBICO_PYTHON_PREPARE=0``: echo is WASM, and the Python interpreter's
first compile (a subprocess busy for a minute on a fresh cache) would share the two cores with
the measured worker and not with the floor.
Prints a table, then one JSON line (``ratio_c1_single``: one at a time; ``ratio_c1_concurrent``:
sent concurrently).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Services, context, gunicorn, log, median, preload, setup_tenant, table, worker  # noqa: E402

PAYLOAD = '{"age":50,"firstName":"john"}'
CONNECTIONS = 32
MEASURES = ("bare c1", "jobico c1", "jobico c1 single", "jobico c1 concurrent", "bare c2", "jobico c2")
SHORT = {"bare": ("bare c1", "bare c2"), "c1": ("jobico c1",), "single": ("jobico c1 single",),
         "concurrent": ("jobico c1 concurrent",), "c2": ("jobico c2",)}


def post_concurrently(url: str, key: str, n: int, connections: int = CONNECTIONS, payload: str = PAYLOAD) -> float:
    """POST ``n`` 1-event requests to the webhook over ``connections`` keep-alive connections
    (threads); every answer must be 200. Returns requests/s."""
    import http.client
    import threading
    from urllib.parse import urlsplit
    u = urlsplit(url)
    body = ('{"data":[' + payload + ']}').encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    left = [n]
    lock = threading.Lock()
    bad: list[str] = []

    def client() -> None:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        while True:
            with lock:
                if left[0] <= 0:
                    break
                left[0] -= 1
            conn.request("POST", "/events/t0/e0", body, headers)
            r = conn.getresponse()
            text = r.read()
            if r.status != 200:
                bad.append(f"{r.status} {text[:200]!r}")
        conn.close()

    t0 = time.monotonic()
    ths = [threading.Thread(target=client) for _ in range(connections)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    if bad:
        raise RuntimeError(f"{len(bad)} of {n} requests not accepted, e.g. {bad[0]}")
    return n / (time.monotonic() - t0)


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
               per_request: int = 100, api: tuple[str, str] | None = None) -> float:
    """``per_request``: events per enqueue call, as a webhook request of that many events
    (they share tasks of up to JOBICO_TASK_BATCH executions). ``api`` (url, key): the events
    are POSTed instead, one per request, concurrently (``post_concurrently``)."""
    from sqlalchemy import text
    with ctx.db.engine.begin() as conn:
        conn.execute(text("TRUNCATE executions CASCADE"))
    if api is not None:
        rps = post_concurrently(api[0], api[1], n, payload=payload)
        log(f"{label}: {n} 1-event requests accepted at {rps:.0f}/s over {CONNECTIONS} connections")
    for t in tenants or [tenant] if api is None else ():
        preload(ctx, t, n // len(tenants or [tenant]), payload=payload, package=package, batch=per_request)
    n = unfinished(ctx)
    # no Python interpreter compile beside the measured worker unless the caller asks for it
    w = worker(label, {"JOBICO_PYTHON_PREPARE": "0", **env}, svc.tmp / "logs", concurrency)
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
    ap.add_argument("--only", default="", help="comma-separated subset of " + ",".join(SHORT)
                    + " (the floor 'bare' always runs)")
    args = ap.parse_args()
    n = args.events
    wanted = {m for k in (args.only.split(",") if args.only else SHORT) for m in SHORT[k.strip()]} | {"bare c1"}
    if "jobico c2" in wanted:
        wanted.add("bare c2")
    runs: dict[str, list[float]] = {k: [] for k in MEASURES if k in wanted}
    with Services() as svc:
        env = svc.env("execute", JOBICO_PYTHON_PREPARE="0")
        ctx = context(env)
        key = setup_tenant(ctx, "t0")
        api = None
        if "jobico c1 concurrent" in wanted:
            api_proc, url = gunicorn("api", "jobico_api.wsgi:app", env, svc.tmp / "logs")
            api = (url, key)
        try:
            def step(k: str, rep: int) -> float:
                if k.startswith("bare"):
                    c = 1 if k == "bare c1" else 2
                    return run_bare(svc, env, n, c, f"bare-c{c}-r{rep}")
                label = f"{k.replace(' ', '-')}-r{rep}"
                if k == "jobico c1 single":
                    return run_jobico(svc, ctx, env, "t0", n, 1, label, per_request=1)
                if k == "jobico c1 concurrent":
                    return run_jobico(svc, ctx, env, "t0", n, 1, label, api=api)
                return run_jobico(svc, ctx, env, "t0", n, 1 if k == "jobico c1" else 2, label)

            for rep in range(args.repeats):
                for k in runs:  # floor and product alternate, in this order
                    runs[k].append(step(k, rep))
        finally:
            if api is not None:
                api_proc.stop()
        ctx.db.engine.dispose()
    m = {k: median(v) for k, v in runs.items()}

    def ratio(a: str, b: str) -> float | None:
        return round(m[a] / m[b], 3) if a in m and b in m else None

    def rate(k: str) -> float | None:
        return round(m[k], 1) if k in m else None

    res = {
        "bench": "execute", "events": n, "repeats": args.repeats, "connections": CONNECTIONS,
        "bare_c1_events_s": rate("bare c1"), "jobico_c1_events_s": rate("jobico c1"),
        "ratio_c1": ratio("jobico c1", "bare c1"),
        "jobico_c1_single_events_s": rate("jobico c1 single"),
        "ratio_c1_single": ratio("jobico c1 single", "bare c1"),
        "jobico_c1_concurrent_events_s": rate("jobico c1 concurrent"),
        "ratio_c1_concurrent": ratio("jobico c1 concurrent", "bare c1"),
        "bare_c2_events_s": rate("bare c2"), "jobico_c2_events_s": rate("jobico c2"),
        "ratio_c2": ratio("jobico c2", "bare c2"),
        "jobico_c2_over_c1": ratio("jobico c2", "jobico c1"),
        "runs": {k: [round(x, 1) for x in v] for k, v in runs.items()},
    }

    def show(x, fmt: str = "{}") -> str:
        return "-" if x is None else fmt.format(x)

    table([
        ("1 worker process (-c 1), 100-event requests", show(res["bare_c1_events_s"]),
         show(res["jobico_c1_events_s"]), show(res["ratio_c1"], "{:.3f}x"), "goal >= 3x"),
        ("1 worker process (-c 1), 1-event requests one at a time", show(res["bare_c1_events_s"]),
         show(res["jobico_c1_single_events_s"]), show(res["ratio_c1_single"], "{:.3f}x"),
         "one task per event; goal >= 0.5x"),
        (f"1 worker process (-c 1), 1-event requests, {CONNECTIONS} connections", show(res["bare_c1_events_s"]),
         show(res["jobico_c1_concurrent_events_s"]), show(res["ratio_c1_concurrent"], "{:.3f}x"),
         "through the webhook; goal >= 1.0x"),
        ("2 worker processes (-c 2), 100-event requests", show(res["bare_c2_events_s"]),
         show(res["jobico_c2_events_s"]), show(res["ratio_c2"], "{:.3f}x"),
         f"c2/c1 {show(res['jobico_c2_over_c1'], '{:.2f}x')}"),
    ], ("execute (events/s, median)", "bare Celery no-op", "jobico echo", "ratio", ""))
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
