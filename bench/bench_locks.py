#!/usr/bin/env python3
"""Named locks: what serialising executions on a lock costs, and how fast a freed lock is
handed to the next in line.

Run: .venv/bin/python bench/bench_locks.py [--events 200] [--repeats 2]

One worker with 2 processes drains ``--events`` echo executions enqueued as 1-event requests
(one ``jobico.execute`` task each, the path locked executions always take), first of an event
without locks (the floor, same run), then of an event with ``locks: [l]``: those run one at a
time, in order. Reported: both rates, their ratio, and the hand-off gap (a locked execution's
start minus its predecessor's finish, from the rows: release, the next one's poll, its claim).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_execute import run_jobico  # noqa: E402
from common import ECHO_YAML, Services, context, median, pct, setup_tenant, table  # noqa: E402

LOCKED_YAML = ECHO_YAML.replace("runtime: echo}}", "runtime: echo, locks: [l]}}")


def gaps_ms(ctx) -> list[float]:
    from sqlalchemy import text
    with ctx.db.engine.connect() as conn:
        rows = conn.execute(text("SELECT started_at, finished_at FROM executions ORDER BY started_at")).all()
    return [(b.started_at - a.finished_at).total_seconds() * 1000 for a, b in zip(rows, rows[1:])]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    n = args.events
    runs: dict[str, list[float]] = {"free": [], "locked": []}
    gaps: list[float] = []
    with Services() as svc:
        env = svc.env("locks")
        ctx = context(env)
        setup_tenant(ctx, "t0")  # p0/e0: no locks
        from jobico_core.services import packages as pk
        pk.deploy(ctx, "t0", LOCKED_YAML.format(pkg="p1", event="e1", module="echo.wasm"))
        for rep in range(args.repeats):
            runs["free"].append(run_jobico(svc, ctx, env, "t0", n, 2, f"free-c2-r{rep}", per_request=1))
            runs["locked"].append(run_jobico(svc, ctx, env, "t0", n, 2, f"locked-c2-r{rep}", package=1,
                                             per_request=1))
            g = gaps_ms(ctx)
            if min(g) < 0:
                raise RuntimeError(f"two holders of one lock overlapped by {-min(g):.1f} ms")
            gaps += g
        ctx.db.engine.dispose()
    m = {k: median(v) for k, v in runs.items()}
    res = {"bench": "locks", "events": n, "repeats": args.repeats,
           "free_events_s": round(m["free"], 1), "locked_events_s": round(m["locked"], 1),
           "ratio": round(m["locked"] / m["free"], 3),
           "handoff_p50_ms": round(pct(gaps, 50), 2), "handoff_p99_ms": round(pct(gaps, 99), 2),
           "handoff_max_ms": round(max(gaps), 2),
           "runs": {k: [round(x, 1) for x in v] for k, v in runs.items()}}
    table([("no locks (floor)", res["free_events_s"], "", ""),
           ("locks: [l] (one at a time)", res["locked_events_s"], f"{res['ratio']:.3f}x", ""),
           ("hand-off: next start - previous finish", "", f"p50 {res['handoff_p50_ms']} ms",
            f"p99 {res['handoff_p99_ms']} ms")],
          ("-c 2, 1-event requests (events/s)", "rate", "ratio / p50", "p99"))
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
