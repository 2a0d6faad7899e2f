#!/usr/bin/env python3
"""Benchmark of the Python interpreter's two compiled artifacts (issue 21 item 8).

Run: .venv/bin/python bench/bench_python_compile.py [--events N] [--fresh]

Measures, with the interpreter's artifacts in the cache ($JOBICO_PYTHON_CACHE_DIR, else
~/.cache/jobico/python; each compiled first if missing):
  * warm per-event cost of the Python echo (examples/python/echo.py) and of a loop of
    100 000 iterations on the quick artifact (Winch, wasmtime's baseline compiler) and on the
    optimized one (Cranelift "speed"): p50 / p99;
  * with --fresh, the two ways a fresh host gets to its first Python event, in a new empty
    cache directory (nothing cached):
      - start-up path (what a worker or the API does at start): the background preparation
        started, an echo event tried every 0.5 s; the time of its first success (on the
        quick artifact), the CPU seconds compiling took until then, the time each artifact
        took to compile, and when the process switched to the optimized one;
      - install-time path (`jobico prepare-python` during installation): the optimized
        artifact compiled from nothing (the same compile as above, measured apart in the
        same run), then the first event; its wall time is what installation adds.
    Minutes of CPU.
  * with --make-run, the whole way as a user takes it: `jobico run` started on a new data
    directory (nothing cached), then, as in docs/python.md's tutorial, `jobico new python
    greeter`, `jobico deploy ...` (retried every second while it answers 503), `jobico send`
    and `jobico executions show` until the event is done: the seconds from `jobico run` to
    the banner, the deploy accepted and the first Python event succeeded. `jobico run` is
    stopped then (with the optimized compile it started).
Prints a table, then one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
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


def _children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)   # the compile subprocesses, once reaped
    return r.ru_utime + r.ru_stime


def fresh() -> dict[str, float]:
    cache = Path(tempfile.mkdtemp(prefix="jobico-python-fresh-"))
    cpu0 = _children_cpu_s()
    try:
        rt = Runtime(python_cache_dir=cache)
        t0 = time.monotonic()
        interpreter.start_preparing(cache)
        first = switched = None
        first_cpu = 0.0
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
                first_cpu = _children_cpu_s() - cpu0
            if load_interpreter(rt, PYTHON_DEFAULT_LIMITS.stack_kb).tier == "optimized":
                switched = now
            else:
                time.sleep(0.5)
        quick_done = interpreter.module_path(cache, "quick").stat().st_mtime
        best_done = interpreter.module_path(cache, "optimized").stat().st_mtime
        started = interpreter.stdlib_dir(cache).stat().st_mtime
        return {"first_execution_s": round(first or -1, 1), "compile_cpu_until_first_s": round(first_cpu, 1),
                "quick_compile_s": round(quick_done - started, 1),
                "optimized_compile_s": round(best_done - quick_done, 1),
                "optimized_compile_cpu_s": round(_children_cpu_s() - cpu0 - first_cpu, 1),
                "switched_to_optimized_s": round(switched or -1, 1), "load_after": round(os.getloadavg()[0], 1)}
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def install_path() -> dict[str, float]:
    """Compile the optimized artifact into an empty cache (what installation would do), then run
    the first event."""
    cache = Path(tempfile.mkdtemp(prefix="jobico-python-install-"))
    cpu0 = _children_cpu_s()
    try:
        t0 = time.monotonic()
        interpreter.prepare(cache, "optimized", say=lambda m: print(f"  [install] {m}", flush=True))
        compiled = time.monotonic() - t0
        out = Runtime(python_cache_dir=cache).run(ECHO, PAYLOAD)
        assert out.status is Status.SUCCEEDED, out.to_dict()
        return {"compile_s": round(compiled, 1), "compile_cpu_s": round(_children_cpu_s() - cpu0, 1),
                "first_execution_s": round(time.monotonic() - t0, 1)}
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def make_run() -> dict[str, float]:
    """`jobico run` on nothing cached, then the tutorial's first Python event (see the module doc)."""
    from jobico_ops.embedded import free_port
    jobico = str(Path(sys.executable).parent / "jobico")
    tmp = Path(tempfile.mkdtemp(prefix="jobico-make-run-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBICO_")}
    env.update(JOBICO_HOME=str(tmp / "home"), JOBICO_DATA_DIR=str(tmp / "data"))
    log = tmp / "out.log"
    res: dict[str, float] = {}
    t0 = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen([jobico, "run", "--port", str(free_port()), "--flower-port", str(free_port()),
                                 "--concurrency", "1"], cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([jobico, *args], cwd=tmp, env=env, capture_output=True, text=True, timeout=300)

    def until(check, what: str, interval: float):   # a user's retries, with a deadline
        deadline = time.monotonic() + 1800
        while (got := check()) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"jobico run: {what} never came:\n{log.read_text()[-3000:]}")
            time.sleep(interval)
        return got

    try:
        until(lambda: True if b"Ctrl-C stops everything" in log.read_bytes() else None, "the banner", 0.5)
        res["banner_s"] = round(time.monotonic() - t0, 1)
        assert cli("new", "python", "greeter").returncode == 0
        until(lambda: True if cli("deploy", "greeter/package.yaml", "--python", "greeter/greeter.py",
                                  "--schema", "greeter/greeter.json").returncode == 0 else None, "a deploy", 1.0)
        res["deployed_s"] = round(time.monotonic() - t0, 1)
        sent = cli("send", "greeter", "--data", '{"name": "Ada"}')
        eid = re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", sent.stdout)
        assert eid, sent.stdout + sent.stderr

        def done():
            rec = json.loads(cli("executions", "show", eid.group(0), "--json").stdout)
            return rec if rec["status"] not in ("queued", "running") else None

        rec = until(done, "the event's end", 0.5)
        assert rec["status"] == "succeeded", rec
        res["first_python_event_s"] = round(time.monotonic() - t0, 1)
        res["load"] = round(os.getloadavg()[0], 1)
        return res
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=200)
    p.add_argument("--fresh", action="store_true", help="also time a fresh host's preparation (minutes)")
    p.add_argument("--make-run", action="store_true",
                   help="also time `jobico run` on nothing cached to the tutorial's first Python event")
    p.add_argument("--install", action="store_true",
                   help="also time the install-time path: the optimized artifact alone from nothing (minutes)")
    args = p.parse_args()
    res: dict[str, object] = {"cpus": os.cpu_count(), "load": os.getloadavg()[0]}
    if args.make_run:
        print("jobico run on a new data directory, then the first Python event ...", flush=True)
        res["make_run"] = make_run()
        print("jobico run:", res["make_run"], flush=True)
    if args.fresh:
        print("fresh host: preparing into an empty cache directory ...", flush=True)
        res["fresh"] = fresh()
    if args.install:
        print("install-time path: compiling the optimized artifact into an empty cache directory ...", flush=True)
        res["install"] = install_path()
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
    if args.install:
        print("install-time path:", res["install"])
    print(json.dumps(res))


if __name__ == "__main__":
    main()
