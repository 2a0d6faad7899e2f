#!/usr/bin/env python3
"""Ingest benchmark (issue 7.1): events/s accepted by the webhook vs the bare floor.

Run: .venv/bin/python bench/bench_ingest.py [--seconds 8] [--repeats 3] [--connections 32]
         [--variant NAME:VAR=VALUE[,VAR=VALUE]] ...

Both servers run under gunicorn with jobico_api/gunicorn_conf.py (gthread,
2 x cores + 1 workers, 8 threads) at the same time, against the same Redis;
the same load generator (wrk, else a Python keep-alive client) drives one of
them at a time, alternating, ``--repeats`` times; medians are reported.

  * jobico: POST /events/<tenant>/e0 (key auth, echo package, any.json schema):
    validation, rows committed in PostgreSQL, then tasks published to Redis;
  * bare:   POST /events/<tenant>/e0 on bench/bare_app.py: json.loads + one LPUSH.

``--variant`` adds a third (fourth, ...) server: the Jobico API with those JOBICO_*
variables (e.g. ``--variant nolinger:JOBICO_INGEST_COALESCE=0``), measured with 1-event
requests in the same alternation (label ``jobico 1 NAME``), to compare settings within one run.

The per-tenant rate limit and queue cap are lifted for the run (they are admission
control, not cost). Executions and queues are emptied between runs.
Prints a table, then one JSON line.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Services, body, context, gunicorn, have_wrk, load, log, median, setup_tenant, sized_event, table  # noqa: E402

PAYLOAD = {"age": 50, "firstName": "john"}


def reset(ctx) -> None:
    """Empty executions and Redis between runs so every run starts from the same state."""
    from sqlalchemy import text
    with ctx.db.engine.begin() as conn:
        conn.execute(text("TRUNCATE executions CASCADE"))
    ctx.redis.flushdb()


def measure(svc: Services, scenarios: dict[str, list], seconds: float, repeats: int, connections: int,
            name: str = "ingest", tenants: int = 1, packages: int = 1,
            variants: dict[str, dict[str, str]] | None = None) -> dict[str, list]:
    """scenarios: label -> list of (path, body) targets ('jobico:' or 'bare:' label prefix; a
    label ending in a name of ``variants`` goes to that variant's server: the Jobico API with
    those environment variables).

    Returns label -> list of events/s (one per repeat)."""
    env = svc.env(name)
    ctx = context(env)
    keys = {}
    for t in range(tenants):
        keys[f"t{t}"] = setup_tenant(ctx, f"t{t}", packages=packages)
    logdir = svc.tmp / name / "logs"
    api, api_url = gunicorn("api", "jobico_api.wsgi:app", env, logdir)
    bare, bare_url = gunicorn("bare", "bench.bare_app:app", env, logdir)
    servers = [api, bare]
    urls: dict[str, str] = {}
    for vname, venv in (variants or {}).items():
        proc, urls[vname] = gunicorn(f"api-{vname}", "jobico_api.wsgi:app", {**env, **venv}, logdir)
        servers.append(proc)

    def url_of(label: str) -> str:
        variant = next((v for v in urls if label.endswith(f" {v}")), None)
        if variant is not None:
            return urls[variant]
        return api_url if label.startswith("jobico") else bare_url
    out: dict[str, list] = {k: [] for k in scenarios}
    failures: dict[str, int] = {k: 0 for k in scenarios}
    try:
        for label, targets in scenarios.items():  # warm every worker of both pools
            url = url_of(label)
            load(url, [(p, keys[t], b) for t, p, b, _ in targets], 2, connections)
        for rep in range(repeats):
            for label, targets in scenarios.items():
                reset(ctx)
                url = url_of(label)
                r = load(url, [(p, keys[t], b) for t, p, b, _ in targets], seconds, connections)
                per_req = targets[0][3]
                out[label].append(r.requests_per_s * per_req)
                failures[label] += r.non_2xx + r.errors
                log(f"{name} rep {rep + 1} {label}: {r.requests_per_s:.0f} req/s = "
                    f"{r.requests_per_s * per_req:.0f} events/s ({r.non_2xx} non-2xx, {r.errors} errors, {r.tool})")
    finally:
        for server in servers:
            server.stop()
        reset(ctx)
        ctx.db.engine.dispose()
    bad = {k: v for k, v in failures.items() if v}
    if bad:
        raise RuntimeError(f"failed requests during the run: {bad}; see {logdir}")
    return out


def targets(n_events: int, size: int | None = None, tenants: int = 1, kind: str = "jobico"):
    ev = sized_event(size) if size else PAYLOAD
    b = body([ev] * n_events)
    return [(f"t{t}", f"/events/t{t}/e0", b, n_events) for t in range(tenants)]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:VAR=VALUE[,VAR=VALUE]",
                    help="also measure 1-event requests on an API with these JOBICO_* variables")
    args = ap.parse_args()
    variants: dict[str, dict[str, str]] = {}
    for v in args.variant:
        vname, _, assigns = v.partition(":")
        if not vname or not assigns or any("=" not in a for a in assigns.split(",")):
            ap.error(f"--variant {v!r}: expected NAME:VAR=VALUE[,VAR=VALUE]")
        variants[vname] = dict(a.split("=", 1) for a in assigns.split(","))
    if not have_wrk():
        log("wrk not found (apt-get install -y wrk): falling back to the Python load generator")
    scen = {
        "bare 1": targets(1), "jobico 1": targets(1),
        "bare 100": targets(100), "jobico 100": targets(100),
        **{f"jobico 1 {v}": targets(1) for v in variants},
    }
    with Services() as svc:
        r = measure(svc, scen, args.seconds, args.repeats, args.connections, variants=variants)
    m = {k: median(v) for k, v in r.items()}
    res = {
        "bench": "ingest",
        "tool": "wrk" if have_wrk() else "python",
        "seconds": args.seconds, "repeats": args.repeats, "connections": args.connections,
        "bare_1_events_s": round(m["bare 1"]), "jobico_1_events_s": round(m["jobico 1"]),
        "ratio_1": round(m["jobico 1"] / m["bare 1"], 3),
        "bare_100_events_s": round(m["bare 100"]), "jobico_100_events_s": round(m["jobico 100"]),
        "ratio_100": round(m["jobico 100"] / m["bare 100"], 3),
        "runs": {k: [round(x) for x in v] for k, v in r.items()},
    }
    for v, venv in variants.items():
        res[f"variant_{v}"] = {"env": venv, "jobico_1_events_s": round(m[f"jobico 1 {v}"]),
                               "ratio_1": round(m[f"jobico 1 {v}"] / m["bare 1"], 3)}
    table([
        ("1 event/request", res["bare_1_events_s"], res["jobico_1_events_s"], f"{res['ratio_1']:.3f}x", "goal >= 0.8x"),
        ("100 events/request", res["bare_100_events_s"], res["jobico_100_events_s"], f"{res['ratio_100']:.3f}x",
         "goal >= 0.5x and >= 50000 ev/s"),
        *((f"1 event/request, {v}", res["bare_1_events_s"], res[f"variant_{v}"]["jobico_1_events_s"],
           f"{res[f'variant_{v}']['ratio_1']:.3f}x", " ".join(f"{k}={x}" for k, x in venv.items()))
          for v, venv in variants.items()),
    ], ("ingest (events/s, median)", "bare Flask+LPUSH", "jobico webhook", "ratio", ""))
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
