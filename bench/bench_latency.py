#!/usr/bin/env python3
"""Latency benchmark (issue 7.3): webhook POST -> result visible on the live stream.

Run: .venv/bin/python bench/bench_latency.py [--rates 50,200,500] [--seconds 30] [--workers 2]

The API under gunicorn (shipped config) and a worker (``-c 2``, as ``jobico run``)
run against real PostgreSQL/Redis/S3. A client holds ``GET /api/v1/executions/stream``
(SSE) open, and also subscribes to the Redis channel that feeds it
(``jobico:tenant:<tenant>:executions``). Senders POST one echo event at a fixed
offered rate (open loop: each send has a scheduled time, several sender threads
so a slow answer does not delay the next send). Latency = arrival of the
execution on the stream (and, separately, on pub/sub) minus the scheduled send
time. Each offered rate is one phase of ``--seconds`` on the same platform, one after
the other (``--rate R`` alone: one phase). The webhook's own answer time (send ->
200) is reported beside it: the tail of the request itself. Prints a table per rate,
then one JSON line: the first rate's figures under the historical keys
(``stream_p50_ms``, ``stream_p99_ms``, ...), every rate's under ``rates`` and as flat
``stream_p50_ms_<rate>`` / ``stream_p99_ms_<rate>`` / ``webhook_p99_ms_<rate>`` keys.
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


def sender(url: str, key: str, slots: list[float], sent: dict, errors: list, answered: dict | None = None) -> None:
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
            eid = json.loads(data)["executions"][0]
            sent[eid] = at
            if answered is not None:
                answered[eid] = time.monotonic()
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


def phase(url: str, key: str, ctx, rate: float, seconds: float, senders: int, sse_seen: dict,
          ps_seen: dict, dump: str | None = None) -> dict:
    """``rate`` events/s for ``seconds`` (open loop), then wait for every one on the stream."""
    n = int(rate * seconds)
    start = time.monotonic() + 0.5
    slots = [start + i / rate for i in range(n)]
    sent: dict = {}
    answered: dict = {}
    errors: list = []
    senders = max(senders, int(rate / 10))  # a slow answer must not hold the next send
    threads = [threading.Thread(target=sender, args=(url, key, slots[i::senders], sent, errors, answered))
               for i in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.monotonic() + 60
    while not all(i in sse_seen for i in sent) and time.monotonic() < deadline:
        time.sleep(0.05)
    sse = [(sse_seen[i] - at) * 1000 for i, at in sent.items() if i in sse_seen]
    ps = [(ps_seen[i] - at) * 1000 for i, at in sent.items() if i in ps_seen]
    web = [(answered[i] - at) * 1000 for i, at in sent.items()]
    if dump:  # one line per request: its scheduled second in the phase, its answer time and the
        # time it took to reach the stream (ms; "-" when it did not)
        with open(f"{dump}.{rate:g}", "w") as f:
            for i, at in sorted(sent.items(), key=lambda x: x[1]):
                seen = f"{(sse_seen[i] - at) * 1000:.1f}" if i in sse_seen else "-"
                f.write(f"{at - start:.3f} {(answered[i] - at) * 1000:.1f} {seen}\n")
    r = {"offered_rate": rate, "sent": len(sent), "errors": len(errors), "missing_on_stream": len(sent) - len(sse)}
    for name, xs in (("stream", sse), ("pubsub", ps), ("webhook", web)):
        for p in (50, 95, 99):
            r[f"{name}_p{p}_ms"] = round(pct(xs, p), 1) if xs else None
        r[f"{name}_max_ms"] = round(max(xs), 1) if xs else None
    r["stages_ms"] = breakdown(ctx, sent, ps_seen)
    return r


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="50,200,500", help="offered rates (events/s), comma-separated")
    ap.add_argument("--rate", type=float, help="one offered rate only (overrides --rates)")
    ap.add_argument("--seconds", type=float, default=30, help="per rate")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (-c)")
    ap.add_argument("--senders", type=int, default=8, help="sender threads (at least rate/10)")
    ap.add_argument("--dump", help="write each request's answer and stream times to DUMP.<rate> (where the tail is)")
    args = ap.parse_args()
    rates = [args.rate] if args.rate else [float(x) for x in args.rates.split(",") if x.strip()]
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
            results = [phase(url, key, ctx, rate, args.seconds, args.senders, sse_seen, ps_seen, args.dump)
                       for rate in rates]
            stop.set()
        finally:
            w.stop()
            api.stop()
            ctx.db.engine.dispose()
    first = results[0]
    res = {"bench": "latency", "offered_rate": first["offered_rate"], "seconds": args.seconds,
           "workers": args.workers, **{k: v for k, v in first.items() if k != "offered_rate"}}
    for r in results:
        tag = f"{r['offered_rate']:g}"
        for k in ("stream_p50_ms", "stream_p99_ms", "webhook_p50_ms", "webhook_p99_ms"):
            res[f"{k}_{tag}"] = r[k]
    res["rates"] = {f"{r['offered_rate']:g}": r for r in results}
    for r in results:
        table([(name, *(v[k] for k in ("p50", "p95", "p99"))) for name, v in r["stages_ms"].items()],
              (f"{r['offered_rate']:g} ev/s: where the time goes (ms, from the rows' timestamps)", "p50", "p95",
               "p99"))
    table([(f"{r['offered_rate']:g} ev/s, {name}", r[f"{k}_p50_ms"], r[f"{k}_p95_ms"], r[f"{k}_p99_ms"],
            r[f"{k}_max_ms"], f"{r['errors']} errors, {r['missing_on_stream']} missing" if k == "stream" else "")
           for r in results for name, k in (("POST -> SSE stream", "stream"), ("POST -> pub/sub", "pubsub"),
                                            ("POST -> 200 (webhook)", "webhook"))],
          (f"latency, {args.seconds:g}s per rate (ms)", "p50", "p95", "p99", "max", ""))
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
