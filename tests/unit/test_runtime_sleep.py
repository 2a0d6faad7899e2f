"""A guest asleep in WASI ``poll_oneoff`` is still bound by its wall-clock deadline and cancellation
(wasmtime's own poll_oneoff blocks the thread for the whole sleep: jobico_runtime/_wasi_clock.py)."""
from __future__ import annotations

import threading
import time

import wasmtime

from jobico_core.limits import Limits
from jobico_runtime import CancelToken, Runtime, Status

# event sleeps for the number of milliseconds in its first input byte x 100 (relative clock
# subscription), then returns the monotonic time elapsed (from clock_time_get) in ms as code
SLEEPER = r'''
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $now (param i32 i64 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "malloc") (param i32) (result i32) (local $p i32)
    global.get $heap local.set $p
    global.get $heap local.get 0 i32.add i32.const 8 i32.add global.set $heap
    local.get $p)
  (func (export "free") (param i32))
  (func (export "event") (param $res i32) (param $in i32) (param $len i32)
    (drop (call $now (i32.const 1) (i64.const 0) (i32.const 512)))
    (i32.store8 (i32.const 8) (i32.const 0))                     ;; tag: clock
    (i32.store (i32.const 16) (i32.const 1))                     ;; monotonic
    (i64.store (i32.const 24) (i64.mul (i64.extend_i32_u (i32.load8_u (local.get $in)))
                                       (i64.const 100000000)))   ;; byte x 100 ms, in ns
    (i32.store16 (i32.const 40) (i32.const 0))                   ;; relative
    (drop (call $poll (i32.const 0) (i32.const 128) (i32.const 1) (i32.const 256)))
    (drop (call $now (i32.const 1) (i64.const 0) (i32.const 520)))
    (i64.store (local.get $res) (i64.div_u (i64.sub (i64.load (i32.const 520)) (i64.load (i32.const 512)))
                                           (i64.const 1000000)))
    (i64.store offset=8 (local.get $res) (i64.const 0))))
'''


def test_a_short_sleep_completes_and_the_monotonic_clock_advances():
    rt = Runtime()
    m = rt.load(wasmtime.wat2wasm(SLEEPER))
    out = rt.run(m, b"\x01", limits=Limits(timeout_ms=5000))  # 100 ms
    assert out.status is Status.FAILED and 100 <= out.code < 2000, out.to_dict()  # code = ms slept


def test_a_long_sleep_ends_at_the_deadline():
    rt = Runtime()
    m = rt.load(wasmtime.wat2wasm(SLEEPER))
    t0 = time.monotonic()
    out = rt.run(m, b"\xff", limits=Limits(timeout_ms=300))  # asks for 25.5 s
    assert (out.status, out.limit) == (Status.TIMED_OUT, "wall"), out.to_dict()
    assert time.monotonic() - t0 < 5


def test_a_sleep_is_cancelled():
    rt = Runtime()
    m = rt.load(wasmtime.wat2wasm(SLEEPER))
    token = CancelToken()
    threading.Timer(0.2, token.cancel).start()
    t0 = time.monotonic()
    out = rt.run(m, b"\xff", limits=Limits(timeout_ms=30_000), cancel=token)
    assert out.status is Status.CANCELLED, out.to_dict()
    assert time.monotonic() - t0 < 5
