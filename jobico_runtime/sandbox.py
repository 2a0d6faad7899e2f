"""One execution in a fresh wasmtime store, whatever the guest (a WASM jobicolet, ``wasm.py``, or
the sealed CPython of a Python jobicolet, ``python.py``): the engines, the epoch ticker, the
store's limits (fuel, memory, epoch deadline), WASI output, the execution's state (logs, stdout,
the decision to stop it) and how a trap or a stop becomes an :class:`Outcome`.

Design notes (details in docs/limits.md): wall-clock deadline and cancellation come from one
ticker thread per process that increments every engine's epoch every ``TICK_S`` while something
runs; each store's deadline is one tick ahead and its epoch callback checks the execution's
deadline and :class:`CancelToken` and either re-arms or stops. The CPU bound is fuel, except on
code compiled by Winch (the Python interpreter's quick artifact), which cannot meter fuel: there
the same callback compares the guest thread's CPU time with the time the fuel budget stands
for (:data:`FUEL_PER_CPU_S`). Host callbacks find their
execution in a thread-local (``current``), WASI output callbacks by run id.
"""
from __future__ import annotations

import atexit
import ctypes
import hashlib
import platform
import resource
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from typing import Any

import wasmtime
from wasmtime import Trap, TrapCode

from jobico_core.limits import Limits

from . import capi
from .outcome import CancelToken, LogRecord, Outcome, Status

TICK_S = 0.005              # epoch tick: bounds wall-deadline overshoot and cancel latency
MAX_MESSAGE = 4000          # characters of a trap message kept
WASMTIME_VERSION = metadata.version("wasmtime")
#: The compilers we use: "speed" (Cranelift's optimiser, with fuel metering) for everything but
#: the Python interpreter's quick artifact (interpreter.py), "winch" (wasmtime's baseline
#: compiler: ten times faster to compile, slower code, no fuel metering, so its CPU bound is
#: CPU time). Code compiled by one loads only into an engine of the same.
COMPILERS = ("speed", "winch")
#: What a fuel budget is worth in CPU time where fuel cannot be metered (Winch): the fastest rate
#: at which the sealed CPython burned fuel on the optimized artifact in our measurements
#: (bench/bench_python_compile.py's loop, 2 shared cores), so the CPU time a budget allows is
#: at most what the fuel buys on optimized code. Winch's code is slower, so a guest gets less
#: work done in that time, never more (docs/limits.md).
FUEL_PER_CPU_S = 5_000_000_000
#: The pooling allocator of WASM jobicolets' engines (wasm.py): instance slots per engine (a run
#: that finds them all taken runs on the on-demand engine), and each slot's memory size: the whole
#: 32-bit address space, so the pool never refuses a growth the store's memory limit allows.
POOL_INSTANCES = 256
POOL_MAX_MEMORY_BYTES = 4 << 30
#: bytes of a freed slot's memory (and table) zeroed in place instead of decommitted: the pages
#: every jobicolet touches (input, result struct, a small heap) fault in once per slot, not per
#: event (bench/bench_runtime.py: ~5 us per echo event)
POOL_KEEP_RESIDENT_BYTES = 128 << 10
#: address space the pool reserves per instance slot, an upper bound (the memory slot, its guard
#: region, the table and instance state); all slots are reserved when the engine is created
POOL_SLOT_RESERVATION_BYTES = POOL_MAX_MEMORY_BYTES + (64 << 20)


def pool_fits(instances: int) -> bool:
    """Whether a pool of ``instances`` slots fits this process's address-space limit
    (``RLIMIT_AS``) with three quarters of it left for everything else; wasmtime aborts the
    process when it cannot reserve a pool, so a pool that would not fit is not asked for."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return soft == resource.RLIM_INFINITY or instances * POOL_SLOT_RESERVATION_BYTES <= soft // 4


def engine_config(compiler: str = "speed") -> str:
    """What compiled artifacts depend on (stack size does not: see wasm.py's module doc)."""
    if compiler == "winch":
        return f"wasmtime={WASMTIME_VERSION};fuel=0;epoch=1;strategy=winch;arch={platform.machine()}"
    return f"wasmtime={WASMTIME_VERSION};fuel=1;epoch=1;opt={compiler};arch={platform.machine()}"


def engine_config_hash(compiler: str = "speed") -> str:
    return hashlib.sha256(engine_config(compiler).encode()).hexdigest()[:16]


ENGINE_CONFIG = engine_config()
ENGINE_CONFIG_HASH = engine_config_hash()

_tls = threading.local()           # .exe: the Execution running on this thread
_active_lock = threading.Lock()
_active: dict[int, Execution] = {}   # run id -> execution (for WASI output callbacks)
_next_id = [1]


def current() -> Execution | None:
    """The execution running on this thread (host callbacks run on the guest's thread)."""
    return getattr(_tls, "exe", None)


class Stop(Exception):
    """Raised inside the host when a decision has been taken (status, limit, message)."""

    def __init__(self, status: Status, limit: str | None, message: str):
        super().__init__(message)
        self.status, self.limit, self.message = status, limit, message


class GuestFault(Exception):
    """The guest broke the ABI (bad pointer, ...): reported as trapped."""


class Execution:
    """What one run has produced so far, and whether it must stop."""

    __slots__ = ("limits", "cancel", "deadline", "logs", "log_bytes", "stdout", "stdout_over",
                 "stop", "t0", "cpu_deadline")

    def __init__(self, limits: Limits, cancel: CancelToken | None, t0: float):
        self.limits = limits
        self.cancel = cancel
        self.t0 = t0
        self.deadline = t0 + limits.timeout_ms / 1000.0
        self.logs: list[LogRecord] = []
        self.log_bytes = 0
        self.stdout = bytearray()
        self.stdout_over = False
        self.stop: Stop | None = None
        #: on an engine without fuel: the guest thread's CPU time (``time.thread_time``) at which
        #: the fuel budget is spent (set by run_in_store)
        self.cpu_deadline: float | None = None

    def poll(self) -> Stop | None:
        if self.stop is not None:
            return self.stop
        if self.cancel is not None and self.cancel.cancelled:
            reason = self.cancel.reason
            return Stop(Status.CANCELLED, None, "cancelled" + (f": {reason}" if reason else ""))
        if self.stdout_over:
            return Stop(Status.LIMIT_EXCEEDED, "stdout", f"stdout/stderr exceed {self.limits.stdout_kb} KiB")
        if self.cpu_deadline is not None and time.thread_time() >= self.cpu_deadline:
            return Stop(Status.TIMED_OUT, "cpu",
                        f"CPU budget of {self.limits.fuel} fuel ({self.limits.fuel / FUEL_PER_CPU_S:.2f} s of "
                        "CPU time on this interpreter, which cannot meter fuel) exhausted")
        if time.monotonic() >= self.deadline:
            return Stop(Status.TIMED_OUT, "wall", f"wall-clock deadline of {self.limits.timeout_ms} ms exceeded")
        return None

    def halt(self, status: Status, limit: str | None, message: str) -> int:
        """Decide to stop; returns the trap a host callback hands back to end the guest."""
        self.stop = Stop(status, limit, message)
        return capi.new_trap(message)

    def log_refused(self, nbytes: int) -> int:
        """The log limits (a security limit: the one place they are checked). 0 when a record of
        ``nbytes`` may be kept, else the trap that stops the guest."""
        limits = self.limits
        if self.log_bytes + nbytes > limits.log_bytes:
            return self.halt(Status.LIMIT_EXCEEDED, "logs", f"log messages exceed {limits.log_kb} KiB")
        if len(self.logs) >= limits.log_records:
            return self.halt(Status.LIMIT_EXCEEDED, "logs", f"more than {limits.log_records} log records")
        return 0

    def add_log(self, level: int, message: str, nbytes: int) -> None:
        self.log_bytes += nbytes
        self.logs.append(LogRecord(level if 0 <= level <= 6 else 6, message))

    def write_stdout(self, data: bytes) -> None:
        room = self.limits.stdout_bytes - len(self.stdout)
        if len(data) > room:
            self.stdout += data[:max(room, 0)]
            self.stdout_over = True
        else:
            self.stdout += data


@capi.EPOCH_CALLBACK_T
def _epoch_callback(ctx, data, delta, kind):  # noqa: ARG001 - ctypes callback
    try:
        exe = current()
        if exe is not None:
            stop = exe.poll()
            if stop is not None:
                exe.stop = stop
                return capi.new_error(stop.message)
        delta[0] = 1
        kind[0] = 0          # WASMTIME_UPDATE_DEADLINE_CONTINUE
        return 0
    except BaseException:  # never let an exception cross into wasmtime
        delta[0] = 1
        kind[0] = 0
        return 0


@capi.OUTPUT_CALLBACK_T
def _output_callback(data, buf, size):
    try:
        exe = _active.get(data or 0)
        if exe is not None and size:
            exe.write_stdout(ctypes.string_at(buf, size))
        return size
    except BaseException:
        return size


def make_engine(stack_kb: int, *, parallel: bool = False, compiler: str = "speed",
                pool_instances: int = 0) -> wasmtime.Engine:
    """``pool_instances`` > 0: instances from wasmtime's pooling allocator (that many slots,
    preallocated memories and tables, reused between stores) instead of mapping memory per
    instance; a module the pool's slots cannot hold is refused by such an engine (wasm.py then
    uses an on-demand one). Code compiled by either loads into the other."""
    if compiler not in COMPILERS:
        raise ValueError(f"unknown compiler {compiler!r} (one of {', '.join(COMPILERS)})")
    cfg = wasmtime.Config()
    cfg.consume_fuel = compiler != "winch"      # Winch cannot meter fuel
    cfg.epoch_interruption = True
    cfg.max_wasm_stack = stack_kb * 1024
    if compiler == "winch":
        capi.use_winch(cfg)
    else:
        cfg.cranelift_opt_level = compiler
    # wasmtime compiles in parallel on a process-global rayon pool whose threads do not survive
    # fork(): a child of a process that ever compiled would deadlock on its first compilation.
    # Workers are forked (Celery prefork), so compile on the calling thread (``parallel`` is for
    # a process that never forks: the Python interpreter's compile subprocess, interpreter.py).
    cfg.parallel_compilation = parallel
    if pool_instances > 0:
        capi.use_pooling(cfg, pool_instances, POOL_MAX_MEMORY_BYTES, POOL_KEEP_RESIDENT_BYTES)
    engine = wasmtime.Engine(cfg)
    engine.jobico_meters_fuel = compiler != "winch"   # type: ignore[attr-defined]  # read by run_in_store
    _ENGINES.add(engine)
    return engine


#: every engine this process made: closed at exit, while wasmtime's bindings still exist (an engine
#: a daemon thread still holds, the epoch ticker's, is otherwise freed during the interpreter's
#: teardown, after those bindings are gone: "Exception ignored in Managed.__del__")
_ENGINES: weakref.WeakSet[wasmtime.Engine] = weakref.WeakSet()


@atexit.register
def _close_engines() -> None:
    for engine in list(_ENGINES):
        engine.close()    # one reference of the engine's; modules and stores keep their own


class Ticker:
    """Increments the epoch of every engine every TICK_S while executions run."""

    def __init__(self) -> None:
        self.engines: list[wasmtime.Engine] = []
        self.active = 0
        self.cond = threading.Condition()
        self.thread: threading.Thread | None = None

    def add(self, engine: wasmtime.Engine) -> None:
        with self.cond:
            self.engines = [*self.engines, engine]

    def enter(self) -> None:
        with self.cond:
            self.active += 1
            if self.active == 1:       # the loop waits only while nothing runs
                if self.thread is None:
                    self.thread = threading.Thread(target=self._loop, name="jobico-epoch-ticker", daemon=True)
                    self.thread.start()
                self.cond.notify()

    def leave(self) -> None:
        with self.cond:
            self.active -= 1

    def _loop(self) -> None:
        sleep = time.sleep
        while True:
            with self.cond:
                while self.active <= 0:
                    self.cond.wait()
                engines = self.engines
            sleep(TICK_S)
            for e in engines:
                try:
                    e.increment_epoch()
                except ValueError:   # closed: the process is exiting (_close_engines)
                    return


def refused_at_start(limits: Limits, cancel: CancelToken | None, payload: bytes) -> Outcome | None:
    """What ends a run before any guest code: a cancel already requested, an input too large."""
    if cancel is not None and cancel.cancelled:
        return Outcome(Status.CANCELLED, message="cancelled before start")
    if len(payload) > limits.input_bytes:
        return Outcome(Status.LIMIT_EXCEEDED, limit="input",
                       message=f"input is {len(payload)} bytes; the limit is {limits.input_kb} KiB")
    return None


def finish(t0: float, out: Outcome, exe: Execution | None = None) -> Outcome:
    """The run's logs, output and duration on its outcome (output over its limit wins over a result)."""
    if exe is not None:
        out.logs = exe.logs
        out.stdout = exe.stdout.decode("utf-8", "replace")
        if exe.stdout_over and out.status in (Status.SUCCEEDED, Status.FAILED, Status.TRAPPED):
            out.status, out.limit = Status.LIMIT_EXCEEDED, "stdout"
            out.message = f"stdout/stderr exceed {exe.limits.stdout_kb} KiB"
    out.duration_ms = (time.monotonic() - t0) * 1000.0
    return out


@contextmanager
def _registered(exe: Execution) -> Iterator[int]:
    with _active_lock:
        run_id = _next_id[0]
        _next_id[0] += 1
        _active[run_id] = exe
    try:
        yield run_id
    finally:
        with _active_lock:
            _active.pop(run_id, None)


def run_in_store(engine: wasmtime.Engine, ticker: Ticker, exe: Execution, wasi: wasmtime.WasiConfig | None,
                 body: Callable[[Any], Outcome]) -> Outcome:
    """``body(ctx)`` in a fresh store with the execution's limits (fuel, or CPU time on an engine
    without fuel; memory, epoch deadline),
    ``wasi`` (if any) writing to the execution's output, and the execution current on this thread.
    The store is deleted after. Raw C API calls: wasmtime-py's wrappers cost more than the work."""
    limits = exe.limits
    store = capi.store_new(engine.ptr(), None, capi.NULL_FINALIZER)
    ctx = capi.store_context(store)
    try:
        meters_fuel = getattr(engine, "jobico_meters_fuel", True)
        if meters_fuel:
            capi.check(capi.set_fuel(ctx, limits.fuel))
        capi.store_limiter(store, limits.memory_bytes, -1, -1, -1, -1)
        capi.set_epoch_deadline(ctx, 1)
        capi.set_epoch_callback(store, _epoch_callback, None, capi.NULL_FINALIZER)
        if wasi is None:
            return _run_current(ctx, ticker, exe, meters_fuel, body)
        with _registered(exe) as run_id:
            capi.set_wasi(ctx, wasi, _output_callback, run_id)
            return _run_current(ctx, ticker, exe, meters_fuel, body)
    finally:
        capi.store_delete(store)


def _run_current(ctx: Any, ticker: Ticker, exe: Execution, meters_fuel: bool,
                 body: Callable[[Any], Outcome]) -> Outcome:
    """``body(ctx)`` with ``exe`` current on this thread and the ticker running."""
    prev = current()
    _tls.exe = exe
    if not meters_fuel:    # the epoch callback runs on this thread: its CPU time is the guest's
        exe.cpu_deadline = time.thread_time() + exe.limits.fuel / FUEL_PER_CPU_S
    ticker.enter()
    try:
        return body(ctx)
    finally:
        ticker.leave()
        _tls.exe = prev


def wasi_config(env: Mapping[str, str] | list[tuple[str, str]] | None) -> wasmtime.WasiConfig:
    wasi = wasmtime.WasiConfig()
    if env:
        items = env.items() if isinstance(env, Mapping) else env
        wasi.env = [(str(k), str(v)) for k, v in items]
    return wasi


def short(msg: str) -> str:
    """wasmtime's "error while executing at wasm backtrace: ... Caused by: X" -> "X" + backtrace."""
    msg = msg.strip()
    if "Caused by:" in msg:
        head, _, cause = msg.partition("Caused by:")
        cause = " ".join(cause.split())
        bt = head.replace("error while executing at wasm backtrace:", "").rstrip()
        msg = cause + ("\nwasm backtrace:" + bt if bt.strip() else "")
    return msg if len(msg) <= MAX_MESSAGE else msg[:MAX_MESSAGE] + "..."


def stopped(exe: Execution, phase: str | None = None) -> Outcome:
    s = exe.stop
    assert s is not None
    msg = s.message if phase is None else f"{s.message} in {phase}"
    return Outcome(s.status, limit=s.limit, message=msg)


def classify(exc: Exception, exe: Execution, ctx: Any, memref: Any, phase: str) -> Outcome:
    """What a trap or wasmtime error in ``phase`` means: a limit, a timeout, or a guest trap."""
    if exe.stop is not None:
        return stopped(exe, phase)
    msg = short(str(exc))
    code = exc.trap_code if isinstance(exc, Trap) else None
    limits = exe.limits
    if code is TrapCode.OUT_OF_FUEL:
        return Outcome(Status.TIMED_OUT, limit="cpu",
                       message=f"CPU budget of {limits.fuel} fuel exhausted in {phase}")
    if code is TrapCode.INTERRUPT:
        return Outcome(Status.TIMED_OUT, limit="wall",
                       message=f"wall-clock deadline of {limits.timeout_ms} ms exceeded in {phase}")
    if code is TrapCode.STACK_OVERFLOW:
        return Outcome(Status.LIMIT_EXCEEDED, limit="stack",
                       message=f"wasm stack of {limits.stack_kb} KiB exhausted in {phase}")
    if phase == "instantiation" and "memory" in msg and ("limit" in msg or "exceeds" in msg):
        return Outcome(Status.LIMIT_EXCEEDED, limit="memory",
                       message=f"linear memory above the {limits.memory_mb} MiB limit at instantiation: "
                               f"{msg.splitlines()[0]}")
    if memref is not None:
        # memory.grow returns -1 at the cap; guests then abort (unreachable).  A trap with the
        # memory at (or within a small margin of) the cap is reported as the memory limit.
        try:
            size = capi.mem_size(ctx, memref)
        except Exception:  # pragma: no cover
            size = 0
        margin = max(limits.memory_bytes // 8, 1 << 20)
        if size + margin > limits.memory_bytes:
            return Outcome(Status.LIMIT_EXCEEDED, limit="memory",
                           message=f"linear memory reached the {limits.memory_mb} MiB limit "
                                   f"({size} bytes), then {phase} trapped: {msg.splitlines()[0] if msg else ''}")
    return Outcome(Status.TRAPPED, message=f"{phase} trapped: {msg}")


__all__ = ["TICK_S", "WASMTIME_VERSION", "POOL_INSTANCES", "POOL_MAX_MEMORY_BYTES", "pool_fits",
           "ENGINE_CONFIG", "ENGINE_CONFIG_HASH", "COMPILERS", "FUEL_PER_CPU_S",
           "engine_config",
           "engine_config_hash", "Execution", "Stop", "GuestFault",
           "Ticker", "make_engine", "run_in_store", "refused_at_start", "finish", "classify", "stopped", "short",
           "current", "wasi_config"]
