#!/usr/bin/env python3
"""Latency benchmark (issue 7.3): webhook POST -> result visible on the live stream.

Run: .venv/bin/python bench/bench_latency.py [--rate 50] [--seconds 30] [--workers 2]

The API under gunicorn (shipped config) and a worker (``-c 2``, as ``jobico run``)
run against real PostgreSQL/Redis/S3. A client holds ``GET /api/v1/executions/stream``
(SSE) open, and also subscribes to the Redis channel that feeds it
(``jobico:tenant:<tenant>:executions``). Senders POST one echo event at a fixed
offered rate (open loop: each send has a scheduled time, several sender threads
so a slow answer does not delay the next send). Latency = arrival of the
execution on the stream (and, separately, on pub/sub) minus the scheduled send
time. Prints a table, then one JSON line.
"""
from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Services, context, gunicorn, pct, setup_tenant, table, worker  # noqa: E402


def sse_reader(url: str, key: str, seen: dict, stop: threading.Event, ready: threading.Event) -> None:
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.request("GET", "/api/v1/executions/stream", headers={"Authorization": f"Bearer {key}",
                                                               "Accept": "text/event-stream"})
    r = conn.getresponse()
    if r.status != 200:
        raise RuntimeError(f"stream answered {r.status}: {r.read()[:300]!r}")
    ready.set()
    while not stop.is_set():
        line = r.readline()
        if not line:
            break
        if line.startswith(b"data:"):
            t = time.monotonic()
            d = json.loads(line[5:])
            seen.setdefault(d["id"], t)
    conn.close()


def pubsub_reader(client, channel: str, seen: dict, stop: threading.Event, ready: threading.Event) -> None:
    ps = client.pubsub()
    ps.subscribe(channel)
    ps.get_message(timeout=5)  # the subscribe confirmation
    ready.set()
    while not stop.is_set():
        m = ps.get_message(timeout=0.5)
        if m and m["type"] == "message":
            t = time.monotonic()
            seen.setdefault(json.loads(m["data"])["id"], t)
    ps.close()


def sender(url: str, key: str, slots: list[float], sent: dict, errors: list) -> None:
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    body = json.dumps({"data": [{"age": 50, "firstName": "john"}]}).encode()
    hdr = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    for at in slots:
        delay = at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        try:
            conn.request("POST", "/events/t0/e0", body, hdr)
            r = conn.getresponse()
            data = r.read()
            if r.status != 200:
                errors.append(r.status)
                continue
            sent[json.loads(data)["executions"][0]] = at
        except (OSError, http.client.HTTPException) as exc:
            errors.append(repr(exc))
            conn.close()
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)


def breakdown(ctx, sent: dict, ps_seen: dict) -> dict:
    """Split each latency by the execution row's timestamps: scheduled send -> row created (the
    webhook), -> claimed by a worker (queue wait), -> recorded (run + record), -> on pub/sub."""
    from sqlalchemy import select

    from jobico_core.db import Execution
    offset = time.time() - time.monotonic()  # monotonic -> wall clock (same host)
    with ctx.db.session() as s:
        rows = list(s.execute(select(Execution.id, Execution.created_at, Execution.started_at,
                                     Execution.finished_at).where(Execution.id.in_(list(sent)))))
    parts: dict[str, list[float]] = {"webhook (send -> row inserted)": [], "commit, publish, queue (-> claimed)": [],
                                     "run + record (claimed -> recorded)": [], "announce (recorded -> pub/sub)": []}
    for r in rows:
        if r.started_at is None or r.finished_at is None:
            continue
        at = sent[r.id] + offset
        c, st, fin = r.created_at.timestamp(), r.started_at.timestamp(), r.finished_at.timestamp()
        vals = [c - at, st - c, fin - st]
        if r.id in ps_seen:
            vals.append(ps_seen[r.id] + offset - fin)
        for key, v in zip(parts, vals):
            parts[key].append(v * 1000)
    return {k: {"p50": round(pct(v, 50), 1), "p95": round(pct(v, 95), 1), "p99": round(pct(v, 99), 1)}
            for k, v in parts.items() if v}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=50)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--workers", type=int, default=2, help="worker processes (-c)")
    ap.add_argument("--senders", type=int, default=8)
    args = ap.parse_args()
    with Services() as svc:
        env = svc.env("latency")
        ctx = context(env)
        key = setup_tenant(ctx, "t0")
        logdir = svc.tmp / "logs"
        api, url = gunicorn("api", "jobico_api.wsgi:app", env, logdir)
        w = worker("lat", env, logdir, args.workers)
        try:
            stop = threading.Event()
            sse_seen: dict = {}
            ps_seen: dict = {}
            r1, r2 = threading.Event(), threading.Event()
            ths = [threading.Thread(target=sse_reader, args=(url, key, sse_seen, stop, r1), daemon=True),
                   threading.Thread(target=pubsub_reader, args=(ctx.redis, "jobico:tenant:t0:executions",
                                                               ps_seen, stop, r2), daemon=True)]
            for t in ths:
                t.start()
            if not (r1.wait(30) and r2.wait(30)):
                raise RuntimeError("stream or pub/sub not ready")
            # warm-up: a few events through the whole path (module fetch, compile, pools)
            warm: dict = {}
            sender(url, key, [time.monotonic() + i * 0.05 for i in range(20)], warm, [])
            deadline = time.monotonic() + 30
            while not all(i in sse_seen for i in warm) and time.monotonic() < deadline:
                time.sleep(0.05)
            n = int(args.rate * args.seconds)
            start = time.monotonic() + 0.5
            slots = [start + i / args.rate for i in range(n)]
            sent: dict = {}
            errors: list = []
            senders = [threading.Thread(target=sender, args=(url, key, slots[i::args.senders], sent, errors))
                       for i in range(args.senders)]
            for t in senders:
                t.start()
            for t in senders:
                t.join()
            deadline = time.monotonic() + 60
            while not all(i in sse_seen for i in sent) and time.monotonic() < deadline:
                time.sleep(0.05)
            stop.set()
            stages = breakdown(ctx, sent, ps_seen)
        finally:
            w.stop()
            api.stop()
            ctx.db.engine.dispose()
    sse = [(sse_seen[i] - at) * 1000 for i, at in sent.items() if i in sse_seen]
    ps = [(ps_seen[i] - at) * 1000 for i, at in sent.items() if i in ps_seen]
    res = {
        "bench": "latency", "offered_rate": args.rate, "seconds": args.seconds, "workers": args.workers,
        "sent": len(sent), "errors": len(errors), "missing_on_stream": len(sent) - len(sse),
        "stream_p50_ms": round(pct(sse, 50), 1), "stream_p95_ms": round(pct(sse, 95), 1),
        "stream_p99_ms": round(pct(sse, 99), 1), "stream_max_ms": round(max(sse), 1),
        "pubsub_p50_ms": round(pct(ps, 50), 1), "pubsub_p95_ms": round(pct(ps, 95), 1),
        "pubsub_p99_ms": round(pct(ps, 99), 1),
    }
    res["stages_ms"] = stages
    table([(name, *(v[k] for k in ("p50", "p95", "p99"))) for name, v in stages.items()],
          ("where the time goes (ms, from the rows' timestamps)", "p50", "p95", "p99"))
    table([
        ("SSE /api/v1/executions/stream", res["stream_p50_ms"], res["stream_p95_ms"], res["stream_p99_ms"],
         "goal p50 <= 15, p99 <= 50"),
        ("Redis pub/sub (feeds the stream)", res["pubsub_p50_ms"], res["pubsub_p95_ms"], res["pubsub_p99_ms"], ""),
    ], (f"POST -> visible, {args.rate:g} ev/s x {args.seconds:g}s (ms)", "p50", "p95", "p99", ""))
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
