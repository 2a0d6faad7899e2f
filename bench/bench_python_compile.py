#!/usr/bin/env python3
"""Benchmark of the Python interpreter's two compiled artifacts (issue 21 item 8).

Run: .venv/bin/python bench/bench_python_compile.py [--events N] [--fresh]

Measures, with the interpreter's artifacts in the cache ($JOBICO_PYTHON_CACHE_DIR, else
~/.cache/jobico/python; each compiled first if missing):
  * warm per-event cost of the Python echo (examples/python/echo.py) and of a loop of
    100 000 iterations on the quick artifact (Cranelift, no optimisation) and on the
    optimized one (Cranelift "speed"): p50 / p99;
  * with --fresh, what a fresh host sees, in a new empty cache directory: the background
    preparation started (as a worker or the API does at start), an echo event tried every
    0.5 s; the time of its first success (on the quick artifact), the time each artifact
    took to compile, and when the process switched to the optimized one. Minutes of CPU.
Prints a table, then one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jobico_core.limits import PYTHON_DEFAULT_LIMITS  # noqa: E402
from jobico_runtime import Runtime, Status, interpreter  # noqa: E402
from jobico_runtime.python import load_interpreter, load_python  # noqa: E402

PAYLOAD = b'{"age":50,"firstName":"john"}'
CACHE = Path(os.environ.get("JOBICO_PYTHON_CACHE_DIR") or Path.home() / ".cache" / "jobico" / "python")
ECHO = load_python((ROOT / "examples" / "python" / "echo.py").read_bytes(), "echo.py")
#: interpreter-bound work (the echo is mostly the instance and the runner's entry)
LOOP = load_python(b"def event(data):\n    return 0, str(sum(i * i for i in range(100000)))\n", "loop.py")


def warm(tier: str, events: int) -> dict[str, float]:
    interpreter.prepare(CACHE, tier, say=lambda m: print(f"  [{tier}] {m}", flush=True))
    rt = Runtime(python_cache_dir=CACHE, python_tier=tier)
    t0 = time.monotonic()
    out = rt.run(ECHO, PAYLOAD)
    load_ms = (time.monotonic() - t0) * 1000
    assert out.status is Status.SUCCEEDED, out.to_dict()
    res = {"load_and_first_ms": round(load_ms, 1)}
    for name, module, n in (("echo", ECHO, events), ("loop", LOOP, max(events // 10, 5))):
        times = []
        for _ in range(n):
            t = time.perf_counter()
            out = rt.run(module, PAYLOAD)
            times.append((time.perf_counter() - t) * 1000)
            assert out.status is Status.SUCCEEDED, out.to_dict()
        times.sort()
        res[f"{name}_p50_ms"] = round(statistics.median(times), 2)
        res[f"{name}_p99_ms"] = round(times[min(len(times) - 1, int(len(times) * 0.99))], 2)
    return res


def fresh() -> dict[str, float]:
    cache = Path(tempfile.mkdtemp(prefix="jobico-python-fresh-"))
    try:
        rt = Runtime(python_cache_dir=cache)
        t0 = time.monotonic()
        interpreter.start_preparing(cache)
        first = switched = None
        deadline = t0 + 3600
        while switched is None and time.monotonic() < deadline:
            try:
                out = rt.run(ECHO, PAYLOAD)
            except interpreter.InterpreterNotReady:
                time.sleep(0.5)   # a client's retry after 503, not synchronisation
                continue
            assert out.status is Status.SUCCEEDED, out.to_dict()
            now = time.monotonic() - t0
            if first is None:
                first = now
            if load_interpreter(rt, PYTHON_DEFAULT_LIMITS.stack_kb).tier == "optimized":
                switched = now
            else:
                time.sleep(0.5)
        quick_done = interpreter.module_path(cache, "quick").stat().st_mtime
        best_done = interpreter.module_path(cache, "optimized").stat().st_mtime
        started = interpreter.stdlib_dir(cache).stat().st_mtime
        return {"first_execution_s": round(first or -1, 1), "quick_compile_s": round(quick_done - started, 1),
                "optimized_compile_s": round(best_done - quick_done, 1),
                "switched_to_optimized_s": round(switched or -1, 1)}
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=200)
    p.add_argument("--fresh", action="store_true", help="also time a fresh host's preparation (minutes)")
    args = p.parse_args()
    res: dict[str, object] = {"cpus": os.cpu_count(), "load": os.getloadavg()[0]}
    if args.fresh:
        print("fresh host: preparing into an empty cache directory ...", flush=True)
        res["fresh"] = fresh()
    for tier in interpreter.TIERS:
        res[tier] = warm(tier, args.events)
    print(f"{'tier':<10} {'load+1st ms':>12} {'echo p50':>9} {'echo p99':>9} {'loop p50':>9} {'loop p99':>9}")
    for tier in interpreter.TIERS:
        r = res[tier]
        assert isinstance(r, dict)
        print(f"{tier:<10} {r['load_and_first_ms']:>12} {r['echo_p50_ms']:>9} {r['echo_p99_ms']:>9} "
              f"{r['loop_p50_ms']:>9} {r['loop_p99_ms']:>9}")
    if args.fresh:
        print("fresh host:", res["fresh"])
    print(json.dumps(res))


if __name__ == "__main__":
    main()
