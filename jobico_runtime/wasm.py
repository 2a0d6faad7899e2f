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
* Instances come from wasmtime's pooling allocator (memories and tables mapped once, reused
  between stores): per ``stack_kb`` a pooled engine and an on-demand one. A module the pool's
  slots refuse (two memories, a table above its slot, ...) is compiled for the on-demand engine
  instead, and a run that finds every slot taken runs on the on-demand engine: the pool changes
  cost, never which modules run or how (the store's own limits are the same on both).
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
import hashlib
import logging
import os
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import wasmtime
from wasmtime import ExitTrap, Trap, WasmtimeError

from jobico_core.abi import InvalidModule, ModuleInfo, inspect_module
from jobico_core.limits import DEFAULT_LIMITS, Limits

from . import capi, python, wasi_clock
from .outcome import CancelToken, Outcome, Status
from .sandbox import (
    ENGINE_CONFIG_HASH,
    POOL_INSTANCES,
    WASMTIME_VERSION,
    Execution,
    GuestFault,
    Ticker,
    classify,
    current,
    finish,
    make_engine,
    pool_fits,
    refused_at_start,
    run_in_store,
    short,
    stopped,
    wasi_config,
)

log = logging.getLogger("jobico.runtime")


def _log(caller, args, legacy: bool) -> int:
    """``env.log(level, ptr, len)`` (legacy: ``env.log(ctx, level, ptr, len)``)."""
    exe = current()
    if exe is None:
        return 0
    o = 1 if legacy else 0
    level = args[o].of.i32
    ptr = args[o + 1].of.i32 & capi.U32
    ln = args[o + 2].of.i32 & capi.U32
    memory = capi.caller_memory(caller)
    where: int | None = None
    if memory is None:
        message, ln = "<log message unreadable: no exported memory>", 0
    elif ptr + ln > memory[2]:
        message, ln = f"<log message out of bounds: ptr={ptr} len={ln} memory={memory[2]}>", 0
    else:
        message, where = "", capi.mem_data(memory[0], memory[1]) + ptr
    refused = exe.log_refused(ln)
    if refused:
        return refused
    if where is not None and ln:
        message = ctypes.string_at(where, ln).decode("utf-8", "replace")
    exe.add_log(level, message, ln)
    return 0


@capi.host_function("env.log")
def _log_callback(caller, args, results) -> int:  # noqa: ARG001
    return _log(caller, args, False)


@capi.host_function("env.log")
def _log_callback_legacy(caller, args, results) -> int:  # noqa: ARG001
    return _log(caller, args, True)


# --------------------------------------------------------------------------
# engines, linkers, ticker


def _make_linker(engine: wasmtime.Engine, legacy_log: bool) -> wasmtime.Linker:
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    i32 = wasmtime.ValType.i32()
    kept = wasi_clock.define(linker)   # sleeps that end at the deadline or a cancel
    kept.append(capi.define_function(linker, b"env", b"log", [i32] * (4 if legacy_log else 3), [],
                                     _log_callback_legacy if legacy_log else _log_callback))
    linker._jobico_types = kept  # type: ignore[attr-defined]  # kept alive with the linker
    return linker


# --------------------------------------------------------------------------
# compiled modules


class CompiledModule:
    """A module compiled for one engine, with its pre-resolved imports."""

    __slots__ = ("sha256", "info", "size", "module", "pre", "stack_kb", "pid", "owner", "engine", "pooled",
                 "spill", "_wasm", "_mains")

    def __init__(self, sha256: str, info: ModuleInfo, wasm: bytes, module: wasmtime.Module,
                 pre: wasmtime.InstancePre, stack_kb: int, owner: object = None, *,
                 engine: wasmtime.Engine | None = None, pooled: bool = False):
        self.sha256 = sha256
        self.info = info
        self.size = len(wasm)
        self.module = module
        self.pre = pre
        self.stack_kb = stack_kb
        self.pid = os.getpid()
        self.owner = owner          # the engine set (per Runtime and process) it belongs to
        self.engine = engine        # the engine it is compiled for
        self.pooled = pooled        # that engine allocates from the pool
        #: the same code on the on-demand engine, for runs that find the pool full (built lazily)
        self.spill: CompiledModule | None = None
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


class _PoolRefused(Exception):
    """The pooled engine cannot hold this module (its slots are smaller than it needs)."""


class _PoolFull(Exception):
    """Every instance slot of the pool is taken: the run goes to the on-demand engine."""


def _pool_refusal(exc: WasmtimeError) -> bool:
    return "pooling allocator" in str(exc)


class _Engine:
    __slots__ = ("engine", "linkers")

    def __init__(self, engine: wasmtime.Engine):
        self.engine = engine
        self.linkers: dict[bool, wasmtime.Linker] = {}

    def linker(self, legacy_log: bool) -> wasmtime.Linker:
        linker = self.linkers.get(legacy_log)
        if linker is None:
            linker = self.linkers[legacy_log] = _make_linker(self.engine, legacy_log)
        return linker


# --------------------------------------------------------------------------


class Runtime:
    """Runs jobicolets; one per process is enough (see :func:`get_runtime`).

    Thread-safe: ``run`` may be called from many threads at once; each call
    uses its own Store.
    """

    def __init__(self, cache_dir: Path | str | None = None, memory_cache_entries: int = 64,
                 default_limits: Limits | None = None, python_cache_dir: Path | str | None = None,
                 python_tier: str | None = None, pool_instances: int = POOL_INSTANCES):
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        #: where the compiled Python interpreter lives (interpreter.py); defaults to ``cache_dir``
        self.python_cache_dir = Path(python_cache_dir) if python_cache_dir is not None else self.cache_dir
        #: which compiled interpreter to run (interpreter.TIERS); ``None``: the best one there
        self.python_tier = python_tier
        self.memory_cache_entries = max(1, int(memory_cache_entries))
        self.default_limits = default_limits or DEFAULT_LIMITS
        #: instance slots of each WASM engine's pooling allocator (0: no pool, every instance
        #: mapped on demand); runs beyond it go to the on-demand engine
        self.pool_instances = max(0, int(pool_instances))
        if self.pool_instances and not pool_fits(self.pool_instances):
            log.warning("no pooling allocator: %d instance slots do not fit this process's address-space "
                        "limit (RLIMIT_AS); every instance is mapped on demand", self.pool_instances)
            self.pool_instances = 0
        self._disk_ok: bool | None = None
        self.stats = {"compiled": 0, "disk_loaded": 0, "reused": 0, "memory_hits": 0, "disk_written": 0,
                      "pool_refused": 0, "pool_full": 0}
        self._reset()

    # -- per-process state --------------------------------------------
    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._engines: dict[tuple[int, str, bool], _Engine] = {}
        self._modules: OrderedDict[tuple[int, str], CompiledModule] = OrderedDict()
        self._key_locks: dict[tuple[int, str], threading.Lock] = {}
        self.ticker = Ticker()
        self._owner = object()
        #: stack_kb -> the loaded Python interpreter (python.py owns what it holds)
        self.python_interpreters: dict[int, Any] = {}

    def check_pid(self) -> None:
        """After a fork nothing of the parent's wasmtime state or threads is ours: start afresh."""
        if self._pid != os.getpid():
            self._reset()

    def engine(self, stack_kb: int, compiler: str = "speed") -> wasmtime.Engine:
        """This process's engine for a wasm stack of ``stack_kb`` (WASM modules' engines differ
        only by it; ``compiler="winch"`` is the Python interpreter's quick artifact's, interpreter.py)."""
        return self._engine(stack_kb, compiler).engine

    def _engine(self, stack_kb: int, compiler: str = "speed", pooled: bool = False) -> _Engine:
        key = (stack_kb, compiler, pooled)
        e = self._engines.get(key)
        if e is None:
            with self._lock:
                e = self._engines.get(key)
                if e is None:
                    e = _Engine(make_engine(stack_kb, compiler=compiler,
                                            pool_instances=self.pool_instances if pooled else 0))
                    self._engines[key] = e
                    self.ticker.add(e.engine)
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
            return python.load_python(module_bytes, name or "jobicolet.py", sha256)
        if language != "wasm":
            raise InvalidModule(f"unknown jobicolet language {language!r}: 'wasm' or 'python'")
        self.check_pid()
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
        if self.pool_instances:
            try:
                return self._build_for(self._engine(stack_kb, pooled=True), True, wasm, sha, info, stack_kb, source)
            except _PoolRefused:
                self.stats["pool_refused"] += 1
        return self._build_for(self._engine(stack_kb), False, wasm, sha, info, stack_kb, source)

    def _build_for(self, eng: _Engine, pooled: bool, wasm: bytes, sha: str, info: ModuleInfo, stack_kb: int,
                   source: CompiledModule | None) -> CompiledModule:
        """The module compiled for ``eng`` (from ``source``'s code, the disk cache, or the bytes);
        :class:`_PoolRefused` when ``eng`` is pooled and its slots cannot hold the module."""
        module = None
        path = self.artifact_path(sha)
        if source is not None:
            # same code, another engine (stack size, pooled or not) or process: no recompilation
            try:
                module = wasmtime.Module.deserialize(eng.engine, source.module.serialize())
                self.stats["reused"] += 1
            except WasmtimeError as exc:
                if pooled and _pool_refusal(exc):
                    raise _PoolRefused from None
                module = None
        if module is None and path is not None and path.exists():
            try:
                module = wasmtime.Module.deserialize_file(eng.engine, str(path))
                self.stats["disk_loaded"] += 1
            except WasmtimeError as exc:
                if pooled and _pool_refusal(exc):
                    raise _PoolRefused from None
                log.warning("discarding unusable cached artifact %s: %s", path, exc)
                module = None
        if module is None:
            try:
                module = wasmtime.Module(eng.engine, wasm)
            except WasmtimeError as exc:
                if pooled and _pool_refusal(exc):
                    raise _PoolRefused from None
                raise InvalidModule(f"invalid WebAssembly module: {short(str(exc)).splitlines()[0]}") from None
            self.stats["compiled"] += 1
            if path is not None:
                self._store_artifact(path, module)
        try:
            pre = eng.linker(info.legacy_log).instantiate_pre(module)
        except WasmtimeError as exc:
            raise InvalidModule(f"cannot link module: {short(str(exc)).splitlines()[0]}") from None
        return CompiledModule(sha, info, wasm, module, pre, stack_kb, self._owner, engine=eng.engine, pooled=pooled)

    def _spill(self, cm: CompiledModule) -> CompiledModule:
        """``cm``'s code on the on-demand engine (for runs that find the pool full)."""
        spill = cm.spill
        if spill is None:
            with self._lock:
                klock = self._key_locks.setdefault((cm.stack_kb, cm.sha256 + "/spill"), threading.Lock())
            with klock:
                spill = cm.spill
                if spill is None:
                    spill = cm.spill = self._build_for(self._engine(cm.stack_kb), False, cm.wasm, cm.sha256,
                                                       cm.info, cm.stack_kb, cm)
            with self._lock:
                self._key_locks.pop((cm.stack_kb, cm.sha256 + "/spill"), None)
        return spill

    # -- running ------------------------------------------------------
    def run(self, module: bytes | CompiledModule | python.PythonModule, payload: bytes | str, main: str = "event",
            limits: Limits | None = None, cancel: CancelToken | None = None, *,
            env: Mapping[str, str] | None = None) -> Outcome:
        """Run one event.  Never raises for anything the guest does.

        ``env``: WASI environment variables, given only to a module that imports WASI (one
        without WASI imports cannot read any). A
        :class:`~jobico_runtime.python.PythonModule` runs in the sealed CPython
        (``python.run_python``), where ``env`` is ``os.environ``.
        """
        if isinstance(payload, str):
            payload = payload.encode()
        if isinstance(module, python.PythonModule):
            return python.run_python(self, module, bytes(payload), main, limits, cancel, env=env)
        t0 = time.monotonic()
        self.check_pid()
        limits = limits or self.default_limits
        refused = refused_at_start(limits, cancel, payload)
        if refused is not None:
            return finish(t0, refused)
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
            return finish(t0, Outcome(Status.INVALID_MODULE, message=str(exc)))
        exe = Execution(limits, cancel, t0)
        try:
            out = self._run_on(cm, exe, env, payload, main, legacy_main)
        except _PoolFull:
            with self._lock:
                self.stats["pool_full"] += 1
            # nothing of the guest ran (the slot is taken before any of its code): the same run,
            # same limits and deadline, on the on-demand engine
            out = self._run_on(self._spill(cm), exe, env, payload, main, legacy_main)
        return finish(t0, out, exe)

    def _run_on(self, cm: CompiledModule, exe: Execution, env: Mapping[str, str] | None, payload: bytes,
                main: str, legacy_main: bool) -> Outcome:
        wasi = wasi_config(env) if cm.info.wasi else None
        assert cm.engine is not None
        return run_in_store(cm.engine, self.ticker, exe, wasi,
                            lambda ctx: _Abi(ctx, cm, exe).run(payload, main, legacy_main))


class _Abi:
    """The jobicolet ABI on one fresh instance: start/ver/init, malloc the input and the result
    struct, call the event function, read the result, free (docs/limits.md, /work/shared/docs)."""

    def __init__(self, ctx, cm: CompiledModule, exe: Execution) -> None:
        self.ctx, self.cm, self.exe = ctx, cm, exe
        self.call = capi.GuestCall(ctx)
        self.phase = "instantiation"
        self.inst: Any = None
        self.memref: Any = None

    def export(self, name: str, kind: int = capi.EXTERN_FUNC) -> Any:
        item = capi.instance_export(self.ctx, self.inst, name.encode(), kind)
        if item is None:
            raise GuestFault(f"export `{name}` not found")
        return item

    def span(self, ptr: int, n: int, what: str) -> int:
        """The host address of guest bytes [ptr, ptr + n), or a GuestFault naming ``what``."""
        size = capi.mem_size(self.ctx, self.memref)
        if ptr + n > size:
            raise GuestFault(f"{what} out of bounds: address {ptr} + {n} bytes > memory size {size}")
        return capi.mem_data(self.ctx, self.memref) + ptr

    def run(self, payload: bytes, main: str, legacy_main: bool) -> Outcome:
        exe = self.exe
        try:
            try:
                self.inst = capi.instantiate(self.ctx, self.cm.pre)
            except WasmtimeError as exc:
                if self.cm.pooled and capi.pool_exhausted(exc):
                    raise _PoolFull from None
                raise
            self.memref = ctypes.byref(self.export("memory", capi.EXTERN_MEMORY))
            exited = self._prologue()
            if exited is not None:
                return exited
            buffers = self._call_main(payload, main, legacy_main)
            if isinstance(buffers, Outcome):
                return buffers
        except ExitTrap as exc:
            if exe.stop is not None:
                return stopped(exe, self.phase)
            if exc.code == 0:
                return Outcome(Status.TRAPPED, message=f"guest called proc_exit(0) in {self.phase} without a result")
            return Outcome(Status.TRAPPED, message=f"guest called proc_exit({exc.code}) in {self.phase}")
        except GuestFault as exc:
            if exe.stop is not None:
                return stopped(exe, self.phase)
            return Outcome(Status.TRAPPED, message=f"ABI violation: {exc}")
        except (Trap, WasmtimeError) as exc:
            return classify(exc, exe, self.ctx, self.memref, self.phase)
        code, result, frees = buffers
        self._free(frees)
        if exe.stop is not None and exe.stop.status is Status.LIMIT_EXCEEDED:
            return stopped(exe)
        return Outcome(Status.SUCCEEDED if code == 0 else Status.FAILED, code=code, result=result)

    def _prologue(self) -> Outcome | None:
        """The start function, ``ver`` and ``init``; an Outcome when the start function exits."""
        info, call = self.cm.info, self.call
        if info.start is not None:
            self.phase = f"`{info.start}`"
            try:
                call(self.export(info.start), 0)
            except ExitTrap as exc:
                if exc.code != 0:
                    return Outcome(Status.TRAPPED, message=f"{info.start} exited with proc_exit({exc.code})")
        self.free_size = False
        if info.ver:
            self.phase = "`ver`"
            self.free_size = (call(self.export("ver"), 1) or 0) != 0
        if info.free_takes_size is not None and info.free_takes_size != self.free_size:
            # `ver` and free's signature disagree: trust the signature (a mismatched call cannot work)
            self.free_size = info.free_takes_size
        if info.has_init:
            self.phase = "`init`"
            call(self.export("init"), 0)
        return None

    def _call_main(self, payload: bytes, main: str, legacy_main: bool):
        """Input in, the event function called, its result read: (code, result, buffers to free)."""
        call, limits = self.call, self.exe.limits
        malloc = self.export("malloc")
        self.phase = "`malloc`"
        n = len(payload)
        in_ptr = (call(malloc, 1, n) or 0) & capi.U32
        if n:
            ctypes.memmove(self.span(in_ptr, n, "input buffer from malloc"), payload, n)
        res_ptr = (call(malloc, 1, 16) or 0) & capi.U32
        self.span(res_ptr, 16, "result struct from malloc")
        self.phase = f"`{main}`"
        mfunc = self.export(main)
        if legacy_main:
            call(mfunc, 0, res_ptr, 0, in_ptr, n)
        else:
            call(mfunc, 0, res_ptr, in_ptr, n)
        self.phase = "result"
        raw = ctypes.string_at(self.span(res_ptr, 16, "result struct"), 16)
        code = int.from_bytes(raw[0:8], "little")
        packed = int.from_bytes(raw[8:16], "little")
        r_ptr, r_len = packed >> 32, packed & capi.U32
        if r_len > limits.result_bytes:
            return Outcome(Status.LIMIT_EXCEEDED, code=code, limit="result",
                           message=f"result is {r_len} bytes; the limit is {limits.result_kb} KiB")
        result = ctypes.string_at(self.span(r_ptr, r_len, "result string"), r_len).decode("utf-8", "replace") \
            if r_len else ""
        if res_ptr == in_ptr and in_ptr:
            # malloc handed out one address for two live buffers: they are not allocations
            # (the Rust SDK's dangling address 1, whose free traps): only the string is freed
            return code, result, ((r_ptr, r_len),)
        return code, result, ((r_ptr, r_len), (res_ptr, 16), (in_ptr, n))

    def _free(self, buffers) -> None:
        """Free the result, the result struct and the input; any trap/timeout here is ignored,
        the event's outcome is known."""
        try:
            free = self.export("free")
        except GuestFault:
            return
        returns = self.call.returns
        for i, (ptr, size) in enumerate(buffers):
            if i == 0 and not ptr:
                continue
            if not (returns(free, ptr, size) if self.free_size else returns(free, ptr)):
                return      # trapped: the guest's state is undefined, no more calls into it


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
