#!/usr/bin/env python3
"""Benchmark of the jobicolet runtime (issue 2).

Run: .venv/bin/python bench/bench_runtime.py [--events N]

Measures, in one process:
  * warm per-event cost of `Runtime.run` on the echo example (module cached in
    memory; fresh Store + instance, `ver`, `init`, malloc x2, main, result copy,
    3 frees): p50 / p99;
  * the bare floor: an engine with the same configuration (fuel, epochs, stack),
    then Store + set_fuel + epoch deadline + instantiate + one call of a trivial
    export through plain wasmtime-py, no WASI: p50 / p99, and the ratio;
  * for the explanation, the floor with a 4-page memory, and with one more call that traps;
  * cold compile vs disk-cache load of a generated module >= 100 KB (both
    through `Runtime.load`, plus raw `Module(...)` vs `Module.deserialize_file`);
  * cancellation latency (CancelToken.cancel() -> run returns).
Prints a table, then one JSON line.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import wasmtime  # noqa: E402

from jobico_core.limits import Limits  # noqa: E402
from jobico_runtime import CancelToken, Runtime, Status  # noqa: E402
from jobico_runtime.sandbox import make_engine  # noqa: E402

PAYLOAD = b'{"age":50,"firstName":"john"}'


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def timeit(fn, n: int, warm: int = 200) -> list[float]:
    for _ in range(warm):
        fn()
    out = []
    pc = time.perf_counter
    for _ in range(n):
        t = pc()
        fn()
        out.append((pc() - t) * 1000.0)
    return out


def big_module(target: int = 120_000) -> bytes:
    """A valid jobicolet with enough code to weigh >= target bytes."""
    funcs = []
    i = 0
    size = 0
    while size < target:
        body = " ".join(f"(local.set $x (i32.add (i32.mul (local.get $x) (i32.const {i * 7 + k + 3})) "
                        f"(i32.xor (local.get $x) (i32.const {k * 131 + i}))))" for k in range(40))
        funcs.append(f'(func $f{i} (export "f{i}") (param $x i32) (result i32) {body} (local.get $x))')
        i += 1
        if i % 20 == 0:
            size = len(wasmtime.wat2wasm("(module " + " ".join(funcs) + ")"))
    wat = f"""(module
      (memory (export "memory") 1)
      (func (export "malloc") (param i32) (result i32) (i32.const 1024))
      (func (export "free") (param i32))
      (func (export "event") (param $r i32) (param i32 i32)
        (i64.store (local.get $r) (i64.extend_i32_u (call $f0 (i32.const 1))))
        (i64.store offset=8 (local.get $r) (i64.const 0)))
      {' '.join(funcs)})"""
    return wasmtime.wat2wasm(wat)


def cancel_latencies(rt, module, n: int, limits) -> list[float]:
    """ms from ``CancelToken.cancel()`` to ``Runtime.run`` returning, for a guest that spins."""
    out = []
    for _ in range(n):
        tok = CancelToken()
        box: dict = {}
        th = threading.Thread(target=lambda box=box, tok=tok: box.setdefault("o", rt.run(module, b"{}", limits=limits,
                                                                                   cancel=tok)))
        th.start()
        time.sleep(0.05)
        t = time.perf_counter()
        tok.cancel()
        th.join()
        out.append((time.perf_counter() - t) * 1000)
        assert box["o"].status is Status.CANCELLED
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=5000)
    args = ap.parse_args()
    n = args.events
    limits = Limits()
    echo = (ROOT / "examples/jobicolets/echo.wasm").read_bytes()
    tinygo = (ROOT / "examples/jobicolets/echo_tinygo.wasm").read_bytes()

    rt = Runtime()
    cm = rt.load(echo)
    out = rt.run(cm, PAYLOAD)
    assert out.status is Status.SUCCEEDED and out.result == PAYLOAD.decode(), out
    warm = timeit(lambda: rt.run(cm, PAYLOAD, limits=limits), n)
    cm_t = rt.load(tinygo)
    warm_t = timeit(lambda: rt.run(cm_t, PAYLOAD, limits=limits), n)

    # bare floor: same engine configuration, plain wasmtime-py, trivial export, no WASI
    engine = make_engine(limits.stack_kb)
    trivial = wasmtime.Module(engine, wasmtime.wat2wasm('(module (func (export "f")))'))

    def instantiate(module: wasmtime.Module) -> tuple[wasmtime.Store, wasmtime.InstanceExports]:
        store = wasmtime.Store(engine)
        store.set_fuel(limits.fuel)
        store.set_epoch_deadline(1_000_000)
        return store, wasmtime.Instance(store, module, []).exports(store)

    def bare() -> None:
        store, ex = instantiate(trivial)
        ex["f"](store)

    floor = timeit(bare, n)

    # for the explanation: the same floor with a 4-page memory that the call touches
    with_mem = wasmtime.Module(engine, wasmtime.wat2wasm(
        '(module (memory (export "memory") 4) (func (export "f") (i32.store (i32.const 1) (i32.const 5))))'))

    def bare_mem() -> None:
        store, ex = instantiate(with_mem)
        ex["f"](store)

    floor_mem = timeit(bare_mem, n)

    # for the explanation: the floor plus one call that traps (the Rust-SDK echo's `free` traps on
    # every event, and the ABI makes the host call it: docs/jobicolets.md, step 6)
    trapping = wasmtime.Module(engine, wasmtime.wat2wasm(
        '(module (func (export "f")) (func (export "t") unreachable))'))

    def bare_trap() -> None:
        store, ex = instantiate(trapping)
        ex["f"](store)
        try:
            ex["t"](store)
        except wasmtime.Trap:
            pass

    floor_trap = timeit(bare_trap, n)

    # cold compile vs disk-cache load, >= 100 KB module
    big = big_module()
    with tempfile.TemporaryDirectory() as tmp:
        compile_ms, disk_ms = [], []
        for i in range(3):
            cache = Path(tmp) / f"c{i}"
            r1 = Runtime(cache_dir=cache)
            t = time.perf_counter()
            r1.load(big)
            compile_ms.append((time.perf_counter() - t) * 1000)
            assert r1.stats["compiled"] == 1
            for _ in range(5):
                r2 = Runtime(cache_dir=cache)
                t = time.perf_counter()
                cmb = r2.load(big)
                disk_ms.append((time.perf_counter() - t) * 1000)
                assert r2.stats["disk_loaded"] == 1 and r2.stats["compiled"] == 0
        big_out = rt.run(cmb, b"{}")
        assert big_out.status in (Status.SUCCEEDED, Status.FAILED), big_out
        # raw wasmtime figures for reference
        raw_c, raw_d = [], []
        art = Path(tmp) / "raw.cwasm"
        for _ in range(3):
            t = time.perf_counter()
            m = wasmtime.Module(engine, big)
            raw_c.append((time.perf_counter() - t) * 1000)
        art.write_bytes(m.serialize())
        for _ in range(10):
            t = time.perf_counter()
            wasmtime.Module.deserialize_file(engine, str(art))
            raw_d.append((time.perf_counter() - t) * 1000)

    # cancellation latency
    sleeper = rt.load((ROOT / "examples/jobicolets/sleeper.wasm").read_bytes())
    lat = cancel_latencies(rt, sleeper, 10, Limits(timeout_ms=30_000, fuel=10_000_000_000))

    res = {
        "events": n,
        "warm_echo_p50_ms": round(pct(warm, 50), 4),
        "warm_echo_p99_ms": round(pct(warm, 99), 4),
        "warm_echo_tinygo_p50_ms": round(pct(warm_t, 50), 4),
        "warm_echo_tinygo_p99_ms": round(pct(warm_t, 99), 4),
        "bare_floor_p50_ms": round(pct(floor, 50), 4),
        "bare_floor_p99_ms": round(pct(floor, 99), 4),
        "ratio_p50": round(pct(warm, 50) / pct(floor, 50), 2),
        "floor_with_memory_p50_ms": round(pct(floor_mem, 50), 4),
        "ratio_to_floor_with_memory_p50": round(pct(warm, 50) / pct(floor_mem, 50), 2),
        "floor_with_trap_p50_ms": round(pct(floor_trap, 50), 4),
        "big_module_bytes": len(big),
        "cold_compile_ms": round(statistics.median(compile_ms), 3),
        "disk_load_ms": round(statistics.median(disk_ms), 3),
        "disk_speedup": round(statistics.median(compile_ms) / statistics.median(disk_ms), 1),
        "raw_compile_ms": round(statistics.median(raw_c), 3),
        "raw_deserialize_file_ms": round(statistics.median(raw_d), 3),
        "cancel_latency_p50_ms": round(pct(lat, 50), 3),
        "cancel_latency_max_ms": round(max(lat), 3),
        "wasmtime": wasmtime.__name__ and __import__("importlib.metadata").metadata.version("wasmtime"),
    }
    rows = [
        ("warm echo (Rust-SDK style) per event", f"p50 {res['warm_echo_p50_ms']:.3f} ms",
         f"p99 {res['warm_echo_p99_ms']:.3f} ms"),
        ("warm echo (TinyGo style, WASI) per event", f"p50 {res['warm_echo_tinygo_p50_ms']:.3f} ms",
         f"p99 {res['warm_echo_tinygo_p99_ms']:.3f} ms"),
        ("bare floor (store+instantiate+call)", f"p50 {res['bare_floor_p50_ms']:.3f} ms",
         f"p99 {res['bare_floor_p99_ms']:.3f} ms"),
        ("ratio warm echo / bare floor (p50)", f"{res['ratio_p50']:.2f}x", "goal <= 2x"),
        ("floor + 4-page memory touched", f"p50 {res['floor_with_memory_p50_ms']:.3f} ms",
         f"ratio {res['ratio_to_floor_with_memory_p50']:.2f}x"),
        ("floor + one trapping call", f"p50 {res['floor_with_trap_p50_ms']:.3f} ms", ""),
        (f"cold compile, {len(big)} B module (Runtime.load)", f"{res['cold_compile_ms']:.2f} ms",
         f"raw {res['raw_compile_ms']:.2f} ms"),
        ("disk-cache load (Runtime.load)", f"{res['disk_load_ms']:.3f} ms",
         f"raw {res['raw_deserialize_file_ms']:.3f} ms"),
        ("disk-cache speedup", f"{res['disk_speedup']:.1f}x", "goal >= 50x"),
        ("cancel latency", f"p50 {res['cancel_latency_p50_ms']:.2f} ms", f"max {res['cancel_latency_max_ms']:.2f} ms"),
    ]
    w = max(len(r[0]) for r in rows)
    print(f"{'measure':<{w}}  {'value':>16}  {'':>16}")
    print("-" * (w + 36))
    for a, b, c in rows:
        print(f"{a:<{w}}  {b:>16}  {c:>16}")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
