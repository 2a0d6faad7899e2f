"""The wasmtime host of the jobicolet ABI.

bytes + payload + limits -> :class:`Outcome`.  No Celery, no database.

Design notes (details in docs/limits.md):

* One :class:`wasmtime.Engine` per distinct ``stack_kb`` (``max_wasm_stack``
  is an engine setting).  Compiled code does not depend on it, so the disk
  artifact is shared and a module is deserialised (not recompiled) into a
  second engine.  Engines, linkers, caches and the epoch ticker belong to
  the process that created them: after ``fork`` they are rebuilt lazily
  (``os.getpid()`` check), otherwise deadlines would never fire in the child.
* Fresh :class:`wasmtime.Store` + instance per event, from a cached
  :class:`wasmtime.InstancePre` (imports resolved once per module).
* Guest calls go through ``wasmtime_func_call_unchecked`` with signatures
  checked statically by :mod:`jobico_core.abi`; host functions (``env.log``,
  WASI stdout/stderr, the epoch callback) are raw ctypes callbacks that never
  use wasmtime-py's process-global exception slot or slabs, so concurrent
  executions in threads cannot see each other's state.
* Wall-clock deadline and cancellation: one ticker thread per process
  increments every engine's epoch every ``TICK_S`` while something runs; each
  store's deadline is one tick ahead and its epoch callback checks the
  execution's deadline and :class:`CancelToken` and either re-arms or stops.
"""
from __future__ import annotations

import ctypes
import enum
import hashlib
import logging
import os
import platform
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import wasmtime
from wasmtime import _bindings as ffi
from wasmtime import ExitTrap, Trap, TrapCode, WasmtimeError

from jobico_core.abi import InvalidModule, ModuleInfo, inspect_module
from jobico_core.limits import DEFAULT_LIMITS, Limits

log = logging.getLogger("jobico.runtime")

TICK_S = 0.005              # epoch tick: bounds wall-deadline overshoot and cancel latency
MAX_MESSAGE = 4000          # characters of a trap message kept
WASMTIME_VERSION = metadata.version("wasmtime")


class Status(str, enum.Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TRAPPED = "trapped"
    TIMED_OUT = "timed_out"
    LIMIT_EXCEEDED = "limit_exceeded"
    INVALID_MODULE = "invalid_module"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class LogRecord:
    level: int
    message: str


@dataclass
class Outcome:
    status: Status
    code: int | None = None
    result: str | None = None
    logs: list[LogRecord] = field(default_factory=list)
    stdout: str = ""
    limit: str | None = None
    message: str | None = None
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status is Status.SUCCEEDED

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value, "code": self.code, "result": self.result,
            "logs": [{"level": r.level, "message": r.message} for r in self.logs],
            "stdout": self.stdout, "limit": self.limit, "message": self.message,
            "duration_ms": self.duration_ms,
        }


class CancelToken:
    """Cancel a running execution from another thread.

    ``cancel()`` makes the execution it was passed to stop at its next epoch
    check (within a tick, ~5 ms, while the guest runs wasm code) with status
    ``cancelled``.  A token cancelled before the run starts cancels it
    immediately.
    """

    __slots__ = ("_event", "reason")

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None

    def cancel(self, reason: str | None = None) -> None:
        self.reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


# --------------------------------------------------------------------------
# raw ctypes plumbing

_EPOCH_CB_T = ffi._wasmtime_store_epoch_deadline_callback.argtypes[1]
_OUT_CB_T = ffi._wasi_config_set_stdout_custom.argtypes[1]
_FINALIZER_T = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_NULL_FINALIZER = ctypes.cast(0, _FINALIZER_T)
_EXTERN_FUNC = ffi.WASMTIME_EXTERN_FUNC.value if hasattr(ffi, "WASMTIME_EXTERN_FUNC") else 0
_EXTERN_MEMORY = ffi.WASMTIME_EXTERN_MEMORY.value if hasattr(ffi, "WASMTIME_EXTERN_MEMORY") else 3
_VAL_RAW = ffi.wasmtime_val_raw_t
_TRAP_PTR = ctypes.POINTER(ffi.wasm_trap_t)
_MEM_NAME = b"memory"

_tls = threading.local()           # .exe: the _Execution running on this thread
_active_lock = threading.Lock()
_active: dict[int, "_Execution"] = {}   # run id -> execution (for WASI output callbacks)
_next_id = [1]


def _new_trap(message: str) -> int:
    b = message.encode()
    return ctypes.cast(ffi.wasmtime_trap_new(b, len(b)), ctypes.c_void_p).value or 0


def _new_error(message: str) -> int:
    return ctypes.cast(ffi.wasmtime_error_new(message.encode()), ctypes.c_void_p).value or 0


class _Stop(Exception):
    """Raised inside the host when a decision has been taken (status, limit, message)."""

    def __init__(self, status: Status, limit: str | None, message: str):
        super().__init__(message)
        self.status, self.limit, self.message = status, limit, message


@_EPOCH_CB_T
def _epoch_callback(ctx, data, delta, kind):  # noqa: ANN001 - ctypes callback
    try:
        exe = getattr(_tls, "exe", None)
        if exe is not None:
            stop = exe.poll()
            if stop is not None:
                exe.stop = stop
                return _new_error(stop.message)
        delta[0] = 1
        kind[0] = 0          # WASMTIME_UPDATE_DEADLINE_CONTINUE
        return 0
    except BaseException:  # never let an exception cross into wasmtime
        delta[0] = 1
        kind[0] = 0
        return 0


@_OUT_CB_T
def _output_callback(data, buf, size):  # noqa: ANN001 - ctypes callback
    try:
        exe = _active.get(data or 0)
        if exe is not None and size:
            exe.write_stdout(ctypes.string_at(buf, size))
        return size
    except BaseException:
        return size


def _log_impl(caller, args, legacy: bool) -> int:
    exe = getattr(_tls, "exe", None)
    if exe is None:
        return 0
    o = 1 if legacy else 0
    level = args[o].of.i32
    ptr = args[o + 1].of.i32 & 0xFFFFFFFF
    ln = args[o + 2].of.i32 & 0xFFFFFFFF
    message: str
    item = ffi.wasmtime_extern_t()
    if ffi.wasmtime_caller_export_get(caller, _MEM_NAME, 6, ctypes.byref(item)) and item.kind == _EXTERN_MEMORY:
        ctx = ffi.wasmtime_caller_context(caller)
        size = ffi.wasmtime_memory_data_size(ctx, ctypes.byref(item.of.memory))
        if ptr + ln <= size:
            if exe.log_bytes + ln > exe.limits.log_bytes:
                exe.stop = _Stop(Status.LIMIT_EXCEEDED, "logs",
                                 f"log messages exceed {exe.limits.log_kb} KiB")
                return _new_trap(exe.stop.message)
            base = ctypes.cast(ffi.wasmtime_memory_data(ctx, ctypes.byref(item.of.memory)), ctypes.c_void_p).value
            message = ctypes.string_at(base + ptr, ln).decode("utf-8", "replace") if ln else ""
        else:
            message = f"<log message out of bounds: ptr={ptr} len={ln} memory={size}>"
            ln = 0
    else:
        message = "<log message unreadable: no exported memory>"
        ln = 0
    if len(exe.logs) >= exe.limits.log_records:
        exe.stop = _Stop(Status.LIMIT_EXCEEDED, "logs", f"more than {exe.limits.log_records} log records")
        return _new_trap(exe.stop.message)
    exe.log_bytes += ln
    if not 0 <= level <= 6:
        level = 6
    exe.logs.append(LogRecord(level, message))
    return 0


@ffi.wasmtime_func_callback_t
def _log_callback(env, caller, args, nargs, results, nresults):  # noqa: ANN001
    try:
        return _log_impl(caller, args, False)
    except BaseException as exc:  # a host bug must not crash the process
        return _new_trap(f"host error in env.log: {exc!r}")


@ffi.wasmtime_func_callback_t
def _log_callback_legacy(env, caller, args, nargs, results, nresults):  # noqa: ANN001
    try:
        return _log_impl(caller, args, True)
    except BaseException as exc:
        return _new_trap(f"host error in env.log: {exc!r}")


# --------------------------------------------------------------------------
# engines, linkers, ticker


def _make_engine(stack_kb: int, *, parallel: bool = False) -> wasmtime.Engine:
    cfg = wasmtime.Config()
    cfg.consume_fuel = True
    cfg.epoch_interruption = True
    cfg.max_wasm_stack = stack_kb * 1024
    cfg.cranelift_opt_level = "speed"
    # wasmtime compiles in parallel on a process-global rayon pool whose threads do not survive
    # fork(): a child of a process that ever compiled would deadlock on its first compilation.
    # Workers are forked (Celery prefork), so compile on the calling thread (``parallel`` is for
    # a process that never forks: the Python interpreter's compile subprocess, interpreter.py).
    cfg.parallel_compilation = parallel
    return wasmtime.Engine(cfg)


#: What compiled artifacts depend on (stack size does not: see module doc).
ENGINE_CONFIG = f"wasmtime={WASMTIME_VERSION};fuel=1;epoch=1;opt=speed;arch={platform.machine()}"
ENGINE_CONFIG_HASH = hashlib.sha256(ENGINE_CONFIG.encode()).hexdigest()[:16]


def _make_linker(engine: wasmtime.Engine, legacy_log: bool) -> tuple[wasmtime.Linker, Any]:
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    from . import _wasi_clock  # late: it builds on this module
    linker._jobico_types = _wasi_clock.define(linker)  # type: ignore[attr-defined]  # sleeps end at the deadline
    i32 = wasmtime.ValType.i32()
    ty = wasmtime.FuncType([i32] * (4 if legacy_log else 3), [])
    err = ffi.wasmtime_linker_define_func(
        linker.ptr(), b"env", 3, b"log", 3, ty.ptr(),
        _log_callback_legacy if legacy_log else _log_callback, None, _NULL_FINALIZER)
    if err:
        raise WasmtimeError._from_ptr(err)
    return linker, ty


class _Ticker:
    """Increments the epoch of every engine every TICK_S while executions run."""

    def __init__(self) -> None:
        self.engines: list[wasmtime.Engine] = []
        self.active = 0
        self.cond = threading.Condition()
        self.thread: threading.Thread | None = None

    def add(self, engine: wasmtime.Engine) -> None:
        with self.cond:
            self.engines = self.engines + [engine]

    def enter(self) -> None:
        with self.cond:
            self.active += 1
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
                e.increment_epoch()


# --------------------------------------------------------------------------
# compiled modules


class CompiledModule:
    """A module compiled for one engine, with its pre-resolved imports."""

    __slots__ = ("sha256", "info", "size", "module", "pre", "stack_kb", "pid", "owner", "_wasm", "_mains")

    def __init__(self, sha256: str, info: ModuleInfo, wasm: bytes, module: wasmtime.Module,
                 pre: wasmtime.InstancePre, stack_kb: int, owner: object = None):
        self.sha256 = sha256
        self.info = info
        self.size = len(wasm)
        self.module = module
        self.pre = pre
        self.stack_kb = stack_kb
        self.pid = os.getpid()
        self.owner = owner          # the engine set (per Runtime and process) it belongs to
        self._wasm = wasm
        self._mains: dict[str, bool | InvalidModule] = {}

    @property
    def wasm(self) -> bytes:
        return self._wasm

    def main_is_legacy(self, main: str) -> bool:
        r = self._mains.get(main)
        if r is None:
            try:
                r = self.info.check_main(main)
            except InvalidModule as exc:
                r = exc
            self._mains[main] = r
        if isinstance(r, InvalidModule):
            raise r
        return r

    def __repr__(self) -> str:
        return f"<CompiledModule {self.sha256[:12]} {self.size} bytes stack={self.stack_kb}KiB>"


class _Engine:
    __slots__ = ("engine", "linkers")

    def __init__(self, engine: wasmtime.Engine):
        self.engine = engine
        self.linkers: dict[bool, tuple[wasmtime.Linker, Any]] = {}

    def linker(self, legacy_log: bool) -> wasmtime.Linker:
        pair = self.linkers.get(legacy_log)
        if pair is None:
            pair = self.linkers[legacy_log] = _make_linker(self.engine, legacy_log)
        return pair[0]


# --------------------------------------------------------------------------
# one execution


class _Execution:
    __slots__ = ("limits", "cancel", "deadline", "logs", "log_bytes", "stdout", "stdout_over",
                 "stop", "t0")

    def __init__(self, limits: Limits, cancel: CancelToken | None, t0: float):
        self.limits = limits
        self.cancel = cancel
        self.t0 = t0
        self.deadline = t0 + limits.timeout_ms / 1000.0
        self.logs: list[LogRecord] = []
        self.log_bytes = 0
        self.stdout = bytearray()
        self.stdout_over = False
        self.stop: _Stop | None = None

    def poll(self) -> _Stop | None:
        if self.stop is not None:
            return self.stop
        if self.cancel is not None and self.cancel.cancelled:
            reason = self.cancel.reason
            return _Stop(Status.CANCELLED, None, "cancelled" + (f": {reason}" if reason else ""))
        if self.stdout_over:
            return _Stop(Status.LIMIT_EXCEEDED, "stdout", f"stdout/stderr exceed {self.limits.stdout_kb} KiB")
        if time.monotonic() >= self.deadline:
            return _Stop(Status.TIMED_OUT, "wall", f"wall-clock deadline of {self.limits.timeout_ms} ms exceeded")
        return None

    def write_stdout(self, data: bytes) -> None:
        room = self.limits.stdout_bytes - len(self.stdout)
        if len(data) > room:
            self.stdout += data[:max(room, 0)]
            self.stdout_over = True
        else:
            self.stdout += data


class _GuestFault(Exception):
    """The guest broke the ABI (bad pointer, ...): reported as trapped."""


# raw C entry points (no Python wrapper frame); memory_data returns the address as an int
_func_call = ffi._wasmtime_func_call_unchecked
_pre_instantiate = ffi._wasmtime_instance_pre_instantiate
_export_get = ffi._wasmtime_instance_export_get
_store_new = ffi._wasmtime_store_new
_store_context = ffi._wasmtime_store_context
_store_delete = ffi._wasmtime_store_delete
_store_limiter = ffi._wasmtime_store_limiter
_set_fuel = ffi._wasmtime_context_set_fuel
_set_epoch_deadline = ffi._wasmtime_context_set_epoch_deadline
_epoch_cb = ffi._wasmtime_store_epoch_deadline_callback
_mem_size = ffi._wasmtime_memory_data_size
_mem_data = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.POINTER(ffi.wasmtime_context_t),
                             ctypes.POINTER(ffi.wasmtime_memory_t))(("wasmtime_memory_data", ffi.dll))


class _Caller:
    """Calls guest functions of one store with a reused argument buffer (all ABI values are i32)."""

    __slots__ = ("ctx", "buf", "trap")

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.buf = (_VAL_RAW * 4)()
        self.trap = _TRAP_PTR()

    def __call__(self, func, nres: int, *args: int) -> int | None:
        buf = self.buf
        for i, a in enumerate(args):
            buf[i].i32 = a
        n = len(args) if len(args) > nres else nres
        err = _func_call(self.ctx, ctypes.byref(func), buf, n, ctypes.byref(self.trap))
        if err:
            raise WasmtimeError._from_ptr(err)
        if self.trap:
            trap = self.trap
            self.trap = _TRAP_PTR()
            raise Trap._from_ptr(trap)
        return buf[0].i32 if nres else None


def _short(msg: str) -> str:
    """wasmtime's "error while executing at wasm backtrace: ... Caused by: X" -> "X" + backtrace."""
    msg = msg.strip()
    if "Caused by:" in msg:
        head, _, cause = msg.partition("Caused by:")
        cause = " ".join(cause.split())
        bt = head.replace("error while executing at wasm backtrace:", "").rstrip()
        msg = cause + ("\nwasm backtrace:" + bt if bt.strip() else "")
    return msg if len(msg) <= MAX_MESSAGE else msg[:MAX_MESSAGE] + "..."


# --------------------------------------------------------------------------


class Runtime:
    """Runs jobicolets; one per process is enough (see :func:`get_runtime`).

    Thread-safe: ``run`` may be called from many threads at once; each call
    uses its own Store.
    """

    def __init__(self, cache_dir: Path | str | None = None, memory_cache_entries: int = 64,
                 default_limits: Limits | None = None, python_cache_dir: Path | str | None = None):
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        #: where the compiled Python interpreter lives (interpreter.py); defaults to ``cache_dir``
        self.python_cache_dir = Path(python_cache_dir) if python_cache_dir is not None else self.cache_dir
        self.memory_cache_entries = max(1, int(memory_cache_entries))
        self.default_limits = default_limits or DEFAULT_LIMITS
        self._disk_ok: bool | None = None
        self.stats = {"compiled": 0, "disk_loaded": 0, "reused": 0, "memory_hits": 0, "disk_written": 0}
        self._reset()

    # -- per-process state --------------------------------------------
    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._engines: dict[int, _Engine] = {}
        self._modules: OrderedDict[tuple[int, str], CompiledModule] = OrderedDict()
        self._key_locks: dict[tuple[int, str], threading.Lock] = {}
        self._ticker = _Ticker()
        self._owner = object()
        self._python: dict[int, Any] = {}   # stack_kb -> the loaded Python interpreter (python.py)

    def _check_pid(self) -> None:
        if self._pid != os.getpid():
            # forked: nothing of the parent's wasmtime state or threads is ours
            self._reset()

    def _engine(self, stack_kb: int) -> _Engine:
        e = self._engines.get(stack_kb)
        if e is None:
            with self._lock:
                e = self._engines.get(stack_kb)
                if e is None:
                    e = _Engine(_make_engine(stack_kb))
                    self._engines[stack_kb] = e
                    self._ticker.add(e.engine)
        return e

    # -- disk cache ---------------------------------------------------
    def _disk_dir(self) -> Path | None:
        if self.cache_dir is None:
            return None
        if self._disk_ok is None:
            try:
                self.cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                st = self.cache_dir.stat()
                if st.st_uid != os.geteuid() or st.st_mode & 0o022:
                    log.warning("wasm disk cache %s is not private to this user (owner %s, mode %o): disabled",
                                self.cache_dir, st.st_uid, st.st_mode & 0o777)
                    self._disk_ok = False
                else:
                    self._disk_ok = True
            except OSError as exc:
                log.warning("wasm disk cache %s unusable: %s", self.cache_dir, exc)
                self._disk_ok = False
        return self.cache_dir if self._disk_ok else None

    def artifact_path(self, sha256: str) -> Path | None:
        d = self._disk_dir()
        return None if d is None else d / f"{sha256}-{WASMTIME_VERSION}-{ENGINE_CONFIG_HASH}.cwasm"

    def _store_artifact(self, path: Path, module: wasmtime.Module) -> None:
        try:
            data = module.serialize()
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".cwasm")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
                self.stats["disk_written"] += 1
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
        except OSError as exc:
            log.warning("could not write %s: %s", path, exc)

    # -- loading ------------------------------------------------------
    def load(self, module_bytes: bytes, sha256: str | None = None, *, stack_kb: int | None = None,
             language: str = "wasm", name: str | None = None):
        """Compile (or fetch from the memory/disk cache) and check the ABI.

        Raises :class:`InvalidModule`.  ``sha256`` (hex) saves hashing on a
        memory-cache hit; it is verified whenever the module is compiled.
        ``language="python"``: ``module_bytes`` is a Python source file (``name`` is its file
        name); returns a :class:`~jobico_runtime.python.PythonModule` that ``run`` runs
        in the sealed CPython.
        """
        if language == "python":
            from .python import load_python
            return load_python(module_bytes, name or "jobicolet.py", sha256)
        if language != "wasm":
            raise InvalidModule(f"unknown jobicolet language {language!r}: 'wasm' or 'python'")
        self._check_pid()
        stack_kb = stack_kb or self.default_limits.stack_kb
        if sha256 is None:
            sha256 = hashlib.sha256(module_bytes).hexdigest()
        return self._get(bytes(module_bytes), sha256.lower(), stack_kb)

    def _get(self, wasm: bytes | None, sha: str, stack_kb: int,
             source: CompiledModule | None = None) -> CompiledModule:
        key = (stack_kb, sha)
        cm = self._modules.get(key)
        if cm is not None:
            with self._lock:
                if key in self._modules:
                    self._modules.move_to_end(key)
            self.stats["memory_hits"] += 1
            return cm
        with self._lock:
            klock = self._key_locks.setdefault(key, threading.Lock())
        with klock:
            cm = self._modules.get(key)
            if cm is None:
                cm = self._build(wasm, sha, stack_kb, source)
                with self._lock:
                    self._modules[key] = cm
                    while len(self._modules) > self.memory_cache_entries:
                        self._modules.popitem(last=False)
            else:
                self.stats["memory_hits"] += 1
        with self._lock:
            self._key_locks.pop(key, None)
        return cm

    def _build(self, wasm: bytes | None, sha: str, stack_kb: int, source: CompiledModule | None) -> CompiledModule:
        if wasm is None:
            assert source is not None
            wasm = source.wasm
        if source is not None:
            info = source.info
        else:
            if hashlib.sha256(wasm).hexdigest() != sha:
                raise ValueError(f"sha256 mismatch: given {sha}, module bytes hash to "
                                 f"{hashlib.sha256(wasm).hexdigest()}")
            # wasmtime validates while compiling, and an artifact exists only for code it compiled:
            # the static check here only needs the section reader
            info = inspect_module(wasm, validate=False)
        eng = self._engine(stack_kb)
        module = None
        path = self.artifact_path(sha)
        if source is not None:
            # same code, another engine (stack size) or process: no recompilation
            try:
                module = wasmtime.Module.deserialize(eng.engine, source.module.serialize())
                self.stats["reused"] += 1
            except WasmtimeError:
                module = None
        if module is None and path is not None and path.exists():
            try:
                module = wasmtime.Module.deserialize_file(eng.engine, str(path))
                self.stats["disk_loaded"] += 1
            except WasmtimeError as exc:
                log.warning("discarding unusable cached artifact %s: %s", path, exc)
                module = None
        if module is None:
            try:
                module = wasmtime.Module(eng.engine, wasm)
            except WasmtimeError as exc:
                raise InvalidModule(f"invalid WebAssembly module: {_short(str(exc)).splitlines()[0]}") from None
            self.stats["compiled"] += 1
            if path is not None:
                self._store_artifact(path, module)
        try:
            pre = eng.linker(info.legacy_log).instantiate_pre(module)
        except WasmtimeError as exc:
            raise InvalidModule(f"cannot link module: {_short(str(exc)).splitlines()[0]}") from None
        return CompiledModule(sha, info, wasm, module, pre, stack_kb, self._owner)

    # -- running ------------------------------------------------------
    def run(self, module: bytes | CompiledModule, payload: bytes | str, main: str = "event",
            limits: Limits | None = None, cancel: CancelToken | None = None, *,
            env: Mapping[str, str] | None = None) -> Outcome:
        """Run one event.  Never raises for anything the guest does.

        ``env``: WASI environment variables, given only to a module that imports WASI (one
        without WASI imports cannot read any). A
        :class:`~jobico_runtime.python.PythonModule` runs in the sealed CPython
        (``python.run_python``), where ``env`` is ``os.environ``.
        """
        if not isinstance(module, (bytes, bytearray, memoryview, CompiledModule)):
            from .python import PythonModule, run_python
            if isinstance(module, PythonModule):
                return run_python(self, module, payload.encode() if isinstance(payload, str) else bytes(payload),
                                  main, limits, cancel, env=env)
        t0 = time.monotonic()
        self._check_pid()
        limits = limits or self.default_limits
        if isinstance(payload, str):
            payload = payload.encode()
        if cancel is not None and cancel.cancelled:
            return self._done(t0, Outcome(Status.CANCELLED, message="cancelled before start"))
        if len(payload) > limits.input_bytes:
            return self._done(t0, Outcome(Status.LIMIT_EXCEEDED, limit="input",
                                          message=f"input is {len(payload)} bytes; the limit is {limits.input_kb} KiB"))
        try:
            if isinstance(module, CompiledModule):
                cm = module
                if cm.stack_kb != limits.stack_kb or cm.owner is not self._owner:
                    # another stack size, another Runtime, or compiled before fork: same code, our engine
                    cm = self._get(None, cm.sha256, limits.stack_kb, source=cm)
            else:
                cm = self.load(module, stack_kb=limits.stack_kb)
            legacy_main = cm.main_is_legacy(main)
        except InvalidModule as exc:
            return self._done(t0, Outcome(Status.INVALID_MODULE, message=str(exc)))
        exe = _Execution(limits, cancel, t0)
        out = self._execute(cm, exe, payload, main, legacy_main, env)
        out.logs = exe.logs
        out.stdout = exe.stdout.decode("utf-8", "replace")
        if exe.stdout_over and out.status in (Status.SUCCEEDED, Status.FAILED, Status.TRAPPED):
            out.status, out.limit = Status.LIMIT_EXCEEDED, "stdout"
            out.message = f"stdout/stderr exceed {limits.stdout_kb} KiB"
        return self._done(t0, out)

    @staticmethod
    def _done(t0: float, out: Outcome) -> Outcome:
        out.duration_ms = (time.monotonic() - t0) * 1000.0
        return out

    def _execute(self, cm: CompiledModule, exe: _Execution, payload: bytes, main: str,
                 legacy_main: bool, env: Mapping[str, str] | None) -> Outcome:
        # Raw C API calls on the hot path: wasmtime-py's wrappers cost more than the work itself.
        info = cm.info
        limits = exe.limits
        eng = self._engines.get(cm.stack_kb) or self._engine(cm.stack_kb)
        store = _store_new(eng.engine.ptr(), None, _NULL_FINALIZER)
        ctx = _store_context(store)
        run_id = 0
        try:
            err = _set_fuel(ctx, limits.fuel)
            if err:
                raise WasmtimeError._from_ptr(err)
            _store_limiter(store, limits.memory_bytes, -1, -1, -1, -1)
            _set_epoch_deadline(ctx, 1)
            _epoch_cb(store, _epoch_callback, None, _NULL_FINALIZER)
            if info.wasi:
                with _active_lock:
                    run_id = _next_id[0]
                    _next_id[0] += 1
                    _active[run_id] = exe
                wasi = wasmtime.WasiConfig()
                if env:
                    wasi.env = [(str(k), str(v)) for k, v in env.items()]
                ffi.wasi_config_set_stdout_custom(wasi.ptr(), _output_callback, run_id, _NULL_FINALIZER)
                ffi.wasi_config_set_stderr_custom(wasi.ptr(), _output_callback, run_id, _NULL_FINALIZER)
                err = ffi.wasmtime_context_set_wasi(ctx, wasi._consume())
                if err:
                    raise WasmtimeError._from_ptr(err)
            prev = getattr(_tls, "exe", None)
            _tls.exe = exe
            self._ticker.enter()
            try:
                return self._abi(ctx, cm, exe, payload, main, legacy_main)
            finally:
                self._ticker.leave()
                _tls.exe = prev
        finally:
            if run_id:
                with _active_lock:
                    _active.pop(run_id, None)
            _store_delete(store)

    def _abi(self, ctx, cm: CompiledModule, exe: _Execution, payload: bytes,
             main: str, legacy_main: bool) -> Outcome:
        info = cm.info
        limits = exe.limits
        phase = "instantiation"
        memref = None
        call = _Caller(ctx)
        try:
            inst = ffi.wasmtime_instance_t()
            trap = _TRAP_PTR()
            err = _pre_instantiate(cm.pre.ptr(), ctx, ctypes.byref(inst), ctypes.byref(trap))
            if err:
                raise WasmtimeError._from_ptr(err)
            if trap:
                raise Trap._from_ptr(trap)
            iptr = ctypes.byref(inst)

            def export(name: str, kind: int = _EXTERN_FUNC):
                item = ffi.wasmtime_extern_t()
                b = name.encode()
                if not _export_get(ctx, iptr, b, len(b), ctypes.byref(item)) or item.kind != kind:
                    raise _GuestFault(f"export `{name}` not found")
                return item.of.memory if kind == _EXTERN_MEMORY else item.of.func

            mem = export("memory", _EXTERN_MEMORY)
            memref = ctypes.byref(mem)

            def mem_span(ptr: int, n: int, what: str) -> int:
                size = _mem_size(ctx, memref)
                if ptr + n > size:
                    raise _GuestFault(f"{what} out of bounds: address {ptr} + {n} bytes > memory size {size}")
                return _mem_data(ctx, memref) + ptr

            start = info.start
            if start is not None:
                phase = f"`{start}`"
                try:
                    call(export(start), 0)
                except ExitTrap as exc:
                    if exc.code != 0:
                        return Outcome(Status.TRAPPED, message=f"{start} exited with proc_exit({exc.code})")
            free_size = False
            if info.ver:
                phase = "`ver`"
                free_size = (call(export("ver"), 1) or 0) != 0
            if info.free_takes_size is not None and info.free_takes_size != free_size:
                # `ver` and free's signature disagree: trust the signature (a mismatched call cannot work)
                free_size = info.free_takes_size
            if info.has_init:
                phase = "`init`"
                call(export("init"), 0)
            malloc = export("malloc")
            phase = "`malloc`"
            n = len(payload)
            in_ptr = (call(malloc, 1, n) or 0) & 0xFFFFFFFF
            if n:
                ctypes.memmove(mem_span(in_ptr, n, "input buffer from malloc"), payload, n)
            res_ptr = (call(malloc, 1, 16) or 0) & 0xFFFFFFFF
            mem_span(res_ptr, 16, "result struct from malloc")
            phase = f"`{main}`"
            mfunc = export(main)
            if legacy_main:
                call(mfunc, 0, res_ptr, 0, in_ptr, n)
            else:
                call(mfunc, 0, res_ptr, in_ptr, n)
            phase = "result"
            raw = ctypes.string_at(mem_span(res_ptr, 16, "result struct"), 16)
            code = int.from_bytes(raw[0:8], "little")
            packed = int.from_bytes(raw[8:16], "little")
            r_ptr, r_len = packed >> 32, packed & 0xFFFFFFFF
            if r_len > limits.result_bytes:
                return Outcome(Status.LIMIT_EXCEEDED, code=code, limit="result",
                               message=f"result is {r_len} bytes; the limit is {limits.result_kb} KiB")
            result = ctypes.string_at(mem_span(r_ptr, r_len, "result string"), r_len).decode("utf-8", "replace") \
                if r_len else ""
        except ExitTrap as exc:
            if exe.stop is not None:
                return self._stopped(exe, phase)
            if exc.code == 0:
                return Outcome(Status.TRAPPED, message=f"guest called proc_exit(0) in {phase} without a result")
            return Outcome(Status.TRAPPED, message=f"guest called proc_exit({exc.code}) in {phase}")
        except _GuestFault as exc:
            if exe.stop is not None:
                return self._stopped(exe, phase)
            return Outcome(Status.TRAPPED, message=f"ABI violation: {exc}")
        except (Trap, WasmtimeError) as exc:
            return self._classify(exc, exe, ctx, memref, phase)

        # frees: any trap/timeout here is ignored, the event's outcome is known
        try:
            free = export("free")
            if r_ptr:
                if free_size:
                    call(free, 0, r_ptr, r_len)
                else:
                    call(free, 0, r_ptr)
            if free_size:
                call(free, 0, res_ptr, 16)
                call(free, 0, in_ptr, n)
            else:
                call(free, 0, res_ptr)
                call(free, 0, in_ptr)
        except (Trap, WasmtimeError, _GuestFault):
            pass
        if exe.stop is not None and exe.stop.status is Status.LIMIT_EXCEEDED:
            return self._stopped(exe)
        status = Status.SUCCEEDED if code == 0 else Status.FAILED
        return Outcome(status, code=code, result=result)

    @staticmethod
    def _stopped(exe: _Execution, phase: str | None = None) -> Outcome:
        s = exe.stop
        assert s is not None
        msg = s.message if phase is None else f"{s.message} in {phase}"
        return Outcome(s.status, limit=s.limit, message=msg)

    def _classify(self, exc: Exception, exe: _Execution, ctx, memref, phase: str) -> Outcome:
        if exe.stop is not None:
            return self._stopped(exe, phase)
        msg = _short(str(exc))
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
                size = _mem_size(ctx, memref)
            except Exception:  # pragma: no cover
                size = 0
            margin = max(limits.memory_bytes // 8, 1 << 20)
            if size + margin > limits.memory_bytes:
                return Outcome(Status.LIMIT_EXCEEDED, limit="memory",
                               message=f"linear memory reached the {limits.memory_mb} MiB limit "
                                       f"({size} bytes), then {phase} trapped: {msg.splitlines()[0] if msg else ''}")
        return Outcome(Status.TRAPPED, message=f"{phase} trapped: {msg}")


# --------------------------------------------------------------------------

_singleton: tuple[int, Runtime] | None = None
_singleton_lock = threading.Lock()


def get_runtime(cache_dir: Path | str | None = None, python_cache_dir: Path | str | None = None) -> Runtime:
    """The per-process Runtime (a new one after fork).

    ``cache_dir`` defaults to ``$JOBICO_WASM_CACHE_DIR`` (no disk cache when unset);
    ``python_cache_dir`` (the compiled Python interpreter) to ``$JOBICO_PYTHON_CACHE_DIR``,
    else ``cache_dir``.
    """
    global _singleton
    pid = os.getpid()
    s = _singleton
    if s is not None and s[0] == pid:
        return s[1]
    with _singleton_lock:
        if _singleton is None or _singleton[0] != pid:
            if cache_dir is None:
                cache_dir = os.environ.get("JOBICO_WASM_CACHE_DIR") or None
            if python_cache_dir is None:
                python_cache_dir = os.environ.get("JOBICO_PYTHON_CACHE_DIR") or None
            _singleton = (pid, Runtime(cache_dir=cache_dir, python_cache_dir=python_cache_dir))
        return _singleton[1]
