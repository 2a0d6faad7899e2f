"""WASI ``poll_oneoff`` and ``clock_time_get`` that honour an execution's deadline and cancellation.

wasmtime's own ``poll_oneoff`` blocks the calling thread for the whole sleep: a guest that
sleeps (``time.sleep(3600)`` in Python) would hold a worker slot past its wall-clock limit,
since the epoch deadline only interrupts wasm code. These replacements sleep in slices of
at most one ticker period and stop the guest as soon as the execution must end
(deadline, cancellation, output limit). ``clock_time_get`` is replaced too, so that a sleep
"until" an absolute monotonic time (CPython's ``time.sleep`` uses ``clock_nanosleep`` with
``TIMER_ABSTIME``) is measured on the same clock.

A subscription on a file descriptor is reported ready at once (the guest has no sockets,
and its stdin is empty). Defined on a linker with :func:`define` (shadowing the WASI ones).
"""
from __future__ import annotations

import ctypes
import struct
import time

import wasmtime

from . import capi
from .sandbox import TICK_S, current

__all__ = ["define"]

_I32 = capi.I32
_U32 = capi.U32
_ESUCCESS, _EFAULT, _EINVAL = 0, 21, 28
_SUB = struct.Struct("<QB7xIxxxxQQH6x")     # userdata, tag, clock id, timeout, precision, flags (48 bytes)
_FD_SUB = struct.Struct("<QB7xI")           # userdata, tag, fd
_EVENT = struct.Struct("<QHB5xQH6x")        # userdata, error, type, nbytes, flags (32 bytes)
_CLOCK, _FD_READ, _FD_WRITE = 0, 1, 2
_REALTIME, _MONOTONIC = 0, 1
_ABSTIME = 1
_t0 = time.monotonic_ns()


def _memory(caller):
    return capi.caller_memory(caller) or (None, None, 0)


def _now(clock: int) -> int:
    if clock == _REALTIME:
        return time.time_ns()
    if clock == _MONOTONIC:
        return time.monotonic_ns()
    return time.monotonic_ns() - _t0      # process/thread CPU time: the time since start is a bound


def _clock_time_get(caller, args, results) -> int:
    clock, ptr = args[0].of.i32 & _U32, args[2].of.i32 & _U32
    results[0].kind = _I32
    ctx, ref, size = _memory(caller)
    if ref is None or ptr + 8 > size:
        results[0].of.i32 = _EFAULT
        return 0
    if clock > 3:
        results[0].of.i32 = _EINVAL
        return 0
    ctypes.memmove(capi.mem_data(ctx, ref) + ptr, struct.pack("<Q", _now(clock)), 8)
    results[0].of.i32 = _ESUCCESS
    return 0


def _poll_oneoff(caller, args, results) -> int:
    in_ptr, out_ptr = args[0].of.i32 & _U32, args[1].of.i32 & _U32
    n, nevents_ptr = args[2].of.i32 & _U32, args[3].of.i32 & _U32
    results[0].kind = _I32
    results[0].of.i32 = _EINVAL
    if n == 0 or n > 4096:
        return 0
    ctx, ref, size = _memory(caller)
    if ref is None or in_ptr + 48 * n > size or out_ptr + 32 * n > size or nevents_ptr + 4 > size:
        results[0].of.i32 = _EFAULT
        return 0
    raw = ctypes.string_at(capi.mem_data(ctx, ref) + in_ptr, 48 * n)
    now = time.monotonic_ns()
    ready: list[bytes] = []
    clocks: list[tuple[int, int]] = []      # (userdata, monotonic deadline in ns)
    for i in range(n):
        userdata, tag, clock, timeout, _precision, flags = _SUB.unpack_from(raw, 48 * i)
        if tag == _CLOCK:
            if clock > 3:
                ready.append(_EVENT.pack(userdata, _EINVAL, tag, 0, 0))
            elif flags & _ABSTIME:
                clocks.append((userdata, now + (timeout - _now(clock)) if clock != _MONOTONIC else timeout))
            else:
                clocks.append((userdata, now + timeout))
        elif tag in (_FD_READ, _FD_WRITE):
            ready.append(_EVENT.pack(userdata, 0, tag, 0, 0))
        else:
            return 0
    if not ready and clocks:
        exe = current()
        wake = min(d for _, d in clocks)
        while True:
            if exe is not None:
                stop = exe.poll()
                if stop is not None:
                    exe.stop = stop
                    return capi.new_trap(stop.message)
            left = wake - time.monotonic_ns()
            if left <= 0:
                break
            time.sleep(min(left / 1e9, TICK_S))
        now = time.monotonic_ns()
        ready = [_EVENT.pack(u, 0, _CLOCK, 0, 0) for u, d in clocks if d <= now]
    base = capi.mem_data(ctx, ref)
    ctypes.memmove(base + out_ptr, b"".join(ready), 32 * len(ready))
    ctypes.memmove(base + nevents_ptr, struct.pack("<I", len(ready)), 4)
    results[0].of.i32 = _ESUCCESS
    return 0


_clock_callback = capi.host_function("clock_time_get")(_clock_time_get)
_poll_callback = capi.host_function("poll_oneoff")(_poll_oneoff)


def define(linker: wasmtime.Linker) -> list:
    """Shadow WASI's ``poll_oneoff`` and ``clock_time_get`` on ``linker`` (after ``define_wasi``).

    Returns the function types, which must live as long as the linker.
    """
    i32, i64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()
    linker.allow_shadowing = True
    kept = [capi.define_function(linker, b"wasi_snapshot_preview1", name, params, [i32], cb)
            for name, params, cb in ((b"clock_time_get", [i32, i64, i32], _clock_callback),
                                     (b"poll_oneoff", [i32, i32, i32, i32], _poll_callback))]
    linker.allow_shadowing = False
    return kept
