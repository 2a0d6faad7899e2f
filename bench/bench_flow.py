#!/usr/bin/env python3
"""Flow control per key: what declaring it costs, and that not declaring it costs nothing.

Run: .venv/bin/python bench/bench_flow.py [--events 200] [--repeats 1]

One worker with 2 processes drains ``--events`` echo executions enqueued as 1-event requests
(one ``jobico.execute`` task each, the path flow-controlled executions always take), of an event
declaring nothing (the floor), then of one with ``concurrency: {key: $.firstName, limit: 1000}``
(a counted lease taken and released, never waited for), then ``rate_limit: {key: k,
per_second: 10000, burst: 10000}`` (a reservation, never waited for). For each: the rate, and
the Lua scripts Redis ran per execution (``INFO commandstats``: evalsha + eval), which must be 0
for the undeclared event. Also the ingest side: building 1000 rows (``new_executions``) with and
without a declaration.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_execute import run_jobico  # noqa: E402
from common import ECHO_YAML, Services, context, median, setup_tenant, table  # noqa: E402

DECLARED = {
    1: "concurrency: {key: $.firstName, limit: 1000}",
    2: "rate_limit: {key: k, per_second: 10000, burst: 10000}",
}


def scripts_run(redis) -> int:
    stats = redis.info("commandstats")
    return sum(stats.get(k, {}).get("calls", 0) for k in ("cmdstat_evalsha", "cmdstat_eval"))


def ingest_us(ctx, tenant: str, event: str, n: int = 1000) -> float:
    """Microseconds per row to build ``n`` new rows (flow keys resolved when declared)."""
    from jobico_core.services.executions import new_executions
    from jobico_core.services.packages import route
    info = route(ctx, tenant, event)
    payloads = ['{"age":50,"firstName":"john"}'] * n
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        new_executions(info, event, payloads, submitter="bench", trigger="webhook")
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e6


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    n = args.events
    labels = {0: "none declared (floor)", 1: "concurrency (limit 1000)", 2: "rate_limit (10000/s)"}
    runs: dict[int, list[float]] = {k: [] for k in labels}
    scripts: dict[int, float] = {}
    ingest: dict[int, float] = {}
    with Services() as svc:
        env = svc.env("flow")
        ctx = context(env)
        setup_tenant(ctx, "t0")  # p0/e0: nothing declared
        from jobico_core.services import packages as pk
        for i, line in DECLARED.items():
            template = ECHO_YAML.replace("runtime: echo}}", "runtime: echo, " + line.replace("{", "{{")
                                         .replace("}", "}}") + "}}")
            pk.deploy(ctx, "t0", template.format(pkg=f"p{i}", event=f"e{i}", module="echo.wasm"))
            if not pk.route(ctx, "t0", f"e{i}").spec.events[f"e{i}"].flow:
                raise RuntimeError(f"e{i} declares no flow control")
        for rep in range(args.repeats):
            for i in labels:
                before = scripts_run(ctx.redis)
                runs[i].append(run_jobico(svc, ctx, env, "t0", n, 2, f"flow{i}-r{rep}", package=i, per_request=1))
                scripts[i] = (scripts_run(ctx.redis) - before) / n
        for i in labels:
            ingest[i] = ingest_us(ctx, "t0", f"e{i}")
        ctx.db.engine.dispose()
    m = {i: median(v) for i, v in runs.items()}
    res = {"bench": "flow", "events": n, "repeats": args.repeats,
           **{f"e{i}_events_s": round(m[i], 1) for i in labels},
           **{f"e{i}_scripts_per_execution": round(scripts[i], 2) for i in labels},
           **{f"e{i}_ingest_us_per_row": round(ingest[i], 1) for i in labels}}
    table([(labels[i], round(m[i], 1), f"{m[i] / m[0]:.3f}x", f"{scripts[i]:.2f}", f"{ingest[i]:.1f}")
           for i in labels],
          ("-c 2, 1-event requests", "events/s", "ratio", "Lua/exec", "ingest us/row"))
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
