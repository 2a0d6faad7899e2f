#!/usr/bin/env python3
"""What tracing costs (jobico_core.tracing): off (no OTEL_EXPORTER_OTLP_ENDPOINT) vs on.

Run: .venv/bin/python bench/bench_tracing.py [--events 200] [--repeats 3]

Real Redis, PostgreSQL and S3, one process. Each event goes the whole way: the webhook's
``ingest.accept`` (admission, row, task published to Redis), then the task read back and
run with ``executor.run_execution`` (claim, the echo WASM module, record). Tracing off and
on (the SDK with an in-memory exporter, exported synchronously: the span work without the
network) alternate, ``--repeats`` times each, in the same run; medians are reported as
µs per event, plus the cost of one disabled helper call (``tracing.span``), the whole
no-op path. Prints a table, then one JSON line.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Services, context, log, median, queue_of, setup_tenant, table  # noqa: E402

from jobico_core import tracing  # noqa: E402

PAYLOAD = b'{"data": [{"age": 50, "firstName": "john"}]}'


def one_round(ctx, key: str, runtime, n: int) -> float:
    """µs per event over ``n`` events, webhook to record."""
    from jobico_core.services import ingest
    from jobico_worker.executor import run_execution
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    queue = queue_of("bench")
    t0 = time.perf_counter()
    for _ in range(n):
        [eid] = ingest.accept(ctx, "bench", "e0", PAYLOAD, headers)
        ctx.redis.rpop(queue)  # the task this process runs itself
        rec = run_execution(ctx, runtime, eid, '{"age":50,"firstName":"john"}', worker="bench")
        assert rec["status"] == "succeeded", rec
    return (time.perf_counter() - t0) / n * 1e6


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from jobico_runtime import get_runtime
    with Services() as svc:
        ctx = context(svc.env("tracing"))
        key = setup_tenant(ctx, "bench")
        runtime = get_runtime(cache_dir=svc.tmp / "compiled")
        one_round(ctx, key, runtime, 20)  # warm: module compiled, caches filled
        off, on, spans = [], [], 0
        for _ in range(args.repeats):
            tracing.shutdown()
            off.append(one_round(ctx, key, runtime, args.events))
            exporter = InMemorySpanExporter()  # a provider's shutdown stops its exporter too
            tracing.setup("jobico-bench", exporter=exporter)
            on.append(one_round(ctx, key, runtime, args.events))
            spans = len(exporter.get_finished_spans()) // args.events
        tracing.shutdown()
        noop_ns = min(timeit.repeat(lambda: tracing.span("x"), number=100_000, repeat=5)) / 100_000 * 1e9
    log(f"{args.events} events x {args.repeats} repeats")
    rows = [("off", f"{median(off):.0f}", f"{1e6 / median(off):.0f}", "0"),
            ("on (in-memory exporter)", f"{median(on):.0f}", f"{1e6 / median(on):.0f}", str(spans))]
    table(rows, ("tracing", "µs/event", "events/s", "spans/event"))
    print(f"disabled helper call (tracing.span): {noop_ns:.0f} ns")
    print(json.dumps({"bench": "tracing", "events": args.events, "repeats": args.repeats,
                      "off_us_per_event": round(median(off), 1), "on_us_per_event": round(median(on), 1),
                      "overhead_pct": round((median(on) / median(off) - 1) * 100, 1), "spans_per_event": spans,
                      "disabled_span_call_ns": round(noop_ns, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
