#!/usr/bin/env python3
"""Scaling benchmark (issue 7.4): how ingest and execute rates change with
payload size, number of tenants, number of deployed packages and module size.

Run: .venv/bin/python bench/bench_scaling.py [--seconds 4] [--repeats 1] [--events 300]
     [--only payload,tenants,packages,module]

Ingest: jobico webhook vs the bare Flask+LPUSH floor (bench_ingest.measure), 1 event
per request, wrk round robin over the targets (tenants: one target per tenant).
Execute: one worker process (-c 1) draining N preloaded echo executions
(bench_execute.run_jobico). Each dimension reports the figure relative to its
smallest setting; "grows faster than linear" is judged on cost per event
(1/rate) against the growth of the input (size x, tenants x, packages x).
Prints a table, then one JSON line.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_execute  # noqa: E402
import bench_ingest  # noqa: E402
from common import EXAMPLES, Services, context, log, median, setup_tenant, sized_event, table  # noqa: E402


def padded_echo(target: int) -> bytes:
    """echo.wasm plus unexported filler functions until the module weighs ~target bytes."""
    import wasmtime
    wat = (EXAMPLES / "jobicolets/echo.wat").read_text().rstrip()
    assert wat.endswith(")")

    def fn(i: int) -> str:
        body = " ".join(f"(local.set $x (i32.add (i32.mul (local.get $x) (i32.const {i * 7 + k + 3})) "
                        f"(i32.xor (local.get $x) (i32.const {k * 131 + i}))))" for k in range(40))
        return f"(func $pad{i} (param $x i32) (result i32) {body} (local.get $x))"
    base = len(wasmtime.wat2wasm(wat))
    per = (len(wasmtime.wat2wasm(wat[:-1] + " ".join(fn(i) for i in range(10)) + ")")) - base) / 10
    count = max(0, int((target - base) / per))
    return wasmtime.wat2wasm(wat[:-1] + " ".join(fn(i) for i in range(count)) + ")")


def ingest_rates(svc, label: str, seconds: float, repeats: int, size: int | None = None, tenants: int = 1,
                 packages: int = 1) -> tuple[float, float]:
    from common import body
    ev = sized_event(size) if size else bench_ingest.PAYLOAD
    b = body([ev])
    scen = {"bare": [(f"t{t}", f"/events/t{t}/e0", b, 1) for t in range(tenants)],
            "jobico": [(f"t{t}", f"/events/t{t}/e0", b, 1) for t in range(tenants)]}
    r = bench_ingest.measure(svc, scen, seconds, repeats, 32, name=label, tenants=tenants, packages=packages)
    return median(r["bare"]), median(r["jobico"])


def execute_rate(svc, label: str, n: int, repeats: int, payload: str = bench_execute.PAYLOAD, tenants: int = 1,
                 packages: int = 1, module: bytes | None = None) -> tuple[float, float]:
    """(median events/s, seconds of setup)"""
    env = svc.env(label)
    ctx = context(env)
    t0 = time.monotonic()
    for t in range(tenants):
        setup_tenant(ctx, f"t{t}", packages=packages, module=module)
    setup = time.monotonic() - t0
    rates = [bench_execute.run_jobico(svc, ctx, env, "t0", n, 1, f"{label}-r{i}", payload=payload,
                                      tenants=[f"t{t}" for t in range(tenants)]) for i in range(repeats)]
    ctx.db.engine.dispose()
    return median(rates), setup


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--events", type=int, default=300)
    ap.add_argument("--only", default="payload,tenants,packages,module")
    args = ap.parse_args()
    only = set(args.only.split(","))
    rows: list[tuple] = []
    res: dict = {"bench": "scaling", "seconds": args.seconds, "repeats": args.repeats, "events": args.events}
    with Services() as svc:
        if "payload" in only:
            base = None
            for size in (100, 10_000, 100_000):
                bare, job = ingest_rates(svc, f"pay{size}", args.seconds, args.repeats, size=size)
                ex, _ = execute_rate(svc, f"xpay{size}", args.events, args.repeats,
                                     payload=json.dumps(sized_event(size), separators=(",", ":")))
                base = base or (job, ex)
                res[f"payload_{size}"] = {"ingest_bare": round(bare), "ingest_jobico": round(job),
                                          "ingest_ratio": round(job / bare, 3), "execute": round(ex, 1)}
                rows.append((f"payload {size} B", round(bare), round(job), f"{job / bare:.3f}x",
                             f"{base[0] / job:.2f}x", round(ex, 1), f"{base[1] / ex:.2f}x"))
        if "tenants" in only:
            base = None
            for nt in (1, 10, 100):
                bare, job = ingest_rates(svc, f"ten{nt}", args.seconds, args.repeats, tenants=nt)
                ex, setup = execute_rate(svc, f"xten{nt}", args.events, args.repeats, tenants=nt)
                base = base or (job, ex)
                res[f"tenants_{nt}"] = {"ingest_bare": round(bare), "ingest_jobico": round(job),
                                        "ingest_ratio": round(job / bare, 3), "execute": round(ex, 1)}
                rows.append((f"tenants {nt}", round(bare), round(job), f"{job / bare:.3f}x",
                             f"{base[0] / job:.2f}x", round(ex, 1), f"{base[1] / ex:.2f}x"))
        if "packages" in only:
            base = None
            for npk in (1, 1000):
                bare, job = ingest_rates(svc, f"pk{npk}", args.seconds, args.repeats, packages=npk)
                ex, setup = execute_rate(svc, f"xpk{npk}", args.events, args.repeats, packages=npk)
                log(f"{npk} packages deployed in {setup:.1f}s")
                base = base or (job, ex)
                res[f"packages_{npk}"] = {"ingest_bare": round(bare), "ingest_jobico": round(job),
                                          "ingest_ratio": round(job / bare, 3), "execute": round(ex, 1),
                                          "deploy_s": round(setup, 1)}
                rows.append((f"packages {npk}", round(bare), round(job), f"{job / bare:.3f}x",
                             f"{base[0] / job:.2f}x", round(ex, 1), f"{base[1] / ex:.2f}x"))
        if "module" in only:
            base = None
            for size in (10_000, 1_000_000):
                mod = padded_echo(size)
                ex, _ = execute_rate(svc, f"mod{size}", args.events, args.repeats, module=mod)
                base = base or ex
                res[f"module_{size}"] = {"bytes": len(mod), "execute": round(ex, 1)}
                rows.append((f"module {len(mod)} B", "", "", "", "", round(ex, 1), f"{base / ex:.2f}x"))
    table(rows, ("dimension", "ingest bare ev/s", "ingest jobico ev/s", "ratio", "cost x",
                 "execute -c1 ev/s", "cost x"))
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
