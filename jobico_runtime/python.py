"""Python jobicolets: a tenant's ``.py`` file (or ``.zip`` package) run by the sealed CPython in our wasmtime host.

One event = one fresh instance of the pre-initialised interpreter (``interpreter.py``),
made from a cached ``InstancePre`` (the memory image is mapped copy-on-write, so
instantiation costs well under a millisecond), with the same store settings as a compiled
module: fuel, the epoch deadline and cancellation, the memory limiter, the wasm stack, the
stdout/stderr capture and the log limits. The guest gets:

* argv ``[python.wasm, -c, <python_guest.py>]``, empty stdin, and only the package's
  ``environment`` as WASI environ (the pre-initialised interpreter reads it at the instance's
  start: ``os.environ`` holds it from the module's top level on; tests/python/test_runtime.py);
* one read-only directory, the stdlib zip at ``/usr/local/lib``; nothing else of the host;
* the interpreter's one host import, ``host.call``, answered here (``_door``): it hands
  over the source (a package zip's other files too) and the payload and takes the log
  records, the result or the exception.

A package zip (``pricing.zip``: ``main.py`` at its root, with the modules and packages it
imports) is read here in memory by ``jobico_core.archive`` (only ``.py`` files and
directories, bounded, every refusal naming the member); the guest's runner serves its
modules from memory with an import finder, under file names such as ``pricing.zip/pkg/util.py``.

Outcomes map onto the same execution record as a compiled module's (docs/python.md):
``(0, result)`` -> succeeded, ``(n, result)`` -> failed with code n, an uncaught exception
-> trapped with the traceback in stdout and ``"<file>, line N: Type: message"`` as the
message, ``MemoryError`` -> limit_exceeded/memory, fuel/deadline -> timed_out, a wasm stack
overflow -> limit_exceeded/stack.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import threading
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import wasmtime
from wasmtime import _bindings as ffi
from wasmtime import _ffi
from wasmtime import ExitTrap, Trap, WasmtimeError

from jobico_core.abi import InvalidModule
from jobico_core.archive import ArchiveLimits, ArchiveRefused, kind_of, read_archive
from jobico_core.limits import PYTHON_DEFAULT_LIMITS, Limits

from . import _wasi_clock, interpreter
from ._runtime import (
    _EXTERN_FUNC, _EXTERN_MEMORY, _NULL_FINALIZER, _TRAP_PTR, _VAL_RAW, CancelToken, Outcome, Status, _active,
    _active_lock, _Caller, _epoch_cb, _epoch_callback, _Execution, _export_get, _func_call, _mem_data, _mem_size,
    _new_trap, _next_id, _output_callback, _pre_instantiate, _set_epoch_deadline, _set_fuel, _short, _Stop,
    _store_context, _store_delete, _store_limiter, _store_new, _tls, LogRecord,
)

if TYPE_CHECKING:
    from ._runtime import Runtime

__all__ = ["PythonModule", "load_python", "run_python", "check_python", "MAX_SOURCE_BYTES", "GUEST_RUNNER",
           "MAX_PACKAGE_MEMBERS", "MAX_PACKAGE_ZIP_BYTES", "PACKAGE_MAIN"]

#: Largest Python source accepted (the upload limit applies first); for a package zip, the
#: total of its files once decompressed.
MAX_SOURCE_BYTES = 1 << 20
#: A package zip: at most this many members (files and directories) ...
MAX_PACKAGE_MEMBERS = 200
#: ... and this many bytes as stored (compressed, with the zip's own headers).
MAX_PACKAGE_ZIP_BYTES = 2 * MAX_SOURCE_BYTES
#: The file at a package zip's root that defines the function (``mainfuncname``).
PACKAGE_MAIN = "main.py"
_PACKAGE_LIMITS = ArchiveLimits(total_bytes=MAX_SOURCE_BYTES, member_bytes=MAX_SOURCE_BYTES,
                                max_members=MAX_PACKAGE_MEMBERS)
#: The guest's runner, handed over as ``python -c``.
GUEST_RUNNER = (Path(__file__).with_name("python_guest.py")).read_text(encoding="utf-8")
#: The guest's package support (a zip's import finder), loaded by the runner for a package only.
GUEST_PACKAGE = (Path(__file__).with_name("python_guest_package.py")).read_text(encoding="utf-8")
_MAX_ERROR_BYTES = 64 * 1024   # the exception summary a guest may report
_MAX_RUNNER_CODE = 1 << 20
# Compiling the runner's source costs ~10 ms of interpreter time per event; unmarshalling its
# code object 0.2 ms. So once per process the guest compiles it (op P: the source, op K: the
# marshalled code, made by the guest's own CPython from our source alone, no tenant involved),
# and every event starts from that code (op C). The package support likewise (op J; op G hands
# it to an event of a package zip), kept out of the runner so that a single file's event does
# not unmarshal it.
_BUILD_RUNNER = ("import _host, marshal, os\n"
                 "runner, package = _host.call(b'P').decode().split('\\0')\n"
                 "_host.call(b'K' + marshal.dumps(compile(runner, '<jobico-runner>', 'exec')))\n"
                 "_host.call(b'J' + marshal.dumps(compile(package, '<jobico-runner-package>', 'exec')))\n"
                 "os._exit(0)\n")
_BOOT_RUNNER = "import _host, marshal\nexec(marshal.loads(_host.call(b'C')))\n"


@dataclass(frozen=True)
class PythonModule:
    """A tenant's Python source (or package zip), checked on the host for what can be checked there."""

    sha256: str        # of the file as stored: the .py, or the .zip's bytes
    name: str          # the repository's file name, e.g. "echo.py" or "pricing.zip"
    source: str        # the .py file's source; a zip's main.py
    files: tuple[tuple[str, str], ...] = ()   # a zip's other .py files: (path in the zip, source), sorted

    @property
    def is_package(self) -> bool:
        return self.name.lower().endswith(".zip")

    @property
    def filename(self) -> str:
        """The main file's name in tracebacks: ``echo.py``, or ``pricing.zip/main.py``."""
        return f"{self.name}/{PACKAGE_MAIN}" if self.is_package else self.name

    @property
    def size(self) -> int:
        return len(self.source.encode("utf-8")) + sum(len(src.encode("utf-8")) for _, src in self.files)

    @cached_property
    def files_frame(self) -> bytes:
        """Op ``F``'s answer: ``<path>\\0<source>\\0...`` (neither holds a NUL: refused on load)."""
        return "\0".join(f"{path}\0{src}" for path, src in self.files).encode("utf-8")

    def __repr__(self) -> str:
        extra = f" +{len(self.files)} files" if self.files else ""
        return f"<PythonModule {self.name} {self.sha256[:12]} {self.size} bytes{extra}>"


def load_python(data: bytes, name: str = "jobicolet.py", sha256: str | None = None) -> PythonModule:
    """Host-side checks (size, UTF-8, no NUL; a ``.zip`` name: the package's members and its
    ``main.py``); the syntax is the guest's to judge (:func:`check_python`)."""
    name = name or "jobicolet.py"
    digest = (sha256 or hashlib.sha256(data).hexdigest()).lower()
    if name.lower().endswith(".zip"):
        main, files = _read_package(bytes(data), name)
        return PythonModule(digest, name, main, files)
    if len(data) > MAX_SOURCE_BYTES:
        raise InvalidModule(f"Python source is {len(data)} bytes; at most {MAX_SOURCE_BYTES // 1024} KiB")
    return PythonModule(digest, name, _source_text(data, "Python source"))


def _source_text(data: bytes, what: str) -> str:
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise InvalidModule(f"{what} is not UTF-8 (line {line}: {exc.reason})") from None
    if "\0" in text:
        line = text[:text.index("\0")].count("\n") + 1
        raise InvalidModule(f"{what} contains a NUL byte (line {line})")
    return text[1:] if text.startswith("\ufeff") else text


def _package_member_problem(path: str) -> str | None:
    if path.endswith(".py"):
        return None
    if "__pycache__" in path.split("/") or path.endswith(".pyc"):
        return "only .py files (and directories) may be in a Python package zip (leave out __pycache__ and .pyc)"
    return "only .py files (and directories) may be in a Python package zip"


def _read_package(data: bytes, name: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """A package zip's ``main.py`` and other files, or :class:`InvalidModule` naming the member."""
    if len(data) > MAX_PACKAGE_ZIP_BYTES:
        raise InvalidModule(f"{name} is {len(data)} bytes; a Python package zip is at most "
                            f"{MAX_PACKAGE_ZIP_BYTES // 1024} KiB")
    if kind_of(data) != "zip":
        raise InvalidModule(f"{name} is not a zip archive (a Python package is a .zip of .py files with "
                            f"{PACKAGE_MAIN} at its root)")
    try:
        raw = read_archive(data, _PACKAGE_LIMITS, keep_paths=True, member_problem=_package_member_problem)
    except ArchiveRefused as exc:
        where = f"{exc.member}: " if exc.member else ""
        raise InvalidModule(f"{name}: {where}{exc.reason}") from None
    sources = {path: _source_text(body, f"{name}/{path}") for path, body in raw.items()}
    if PACKAGE_MAIN not in sources:
        nested = sorted(p for p in sources if p.count("/") == 1 and p.endswith("/" + PACKAGE_MAIN))
        hint = (f" (it has {nested[0]}: zip the directory's contents, not the directory)" if nested else "")
        raise InvalidModule(f"{name}: no {PACKAGE_MAIN} at the zip's root{hint}; {PACKAGE_MAIN} defines the "
                            "function the runtime calls")
    for path in sorted(sources):
        if path.endswith("/__init__.py"):
            twin = path[:-len("/__init__.py")] + ".py"
            if twin in sources:
                module = twin[:-3].replace("/", ".")
                raise InvalidModule(f"{name}: {twin} and {path} both define the module {module}: keep one")
    main = sources.pop(PACKAGE_MAIN)
    return main, tuple(sorted(sources.items()))


# --------------------------------------------------------------------------
# the compiled interpreter, per process and engine (stack size)


class _Interpreter:
    __slots__ = ("module", "pre", "linker", "stdlib", "runner_code", "package_code")

    def __init__(self, module: wasmtime.Module, pre: wasmtime.InstancePre, linker: wasmtime.Linker,
                 stdlib: str):
        self.module, self.pre, self.linker, self.stdlib = module, pre, linker, stdlib
        self.runner_code: bytes | None = None   # the runner, compiled by the guest (see _BUILD_RUNNER)
        self.package_code: bytes | None = None  # the package support, likewise


_load_lock = threading.Lock()


def _interpreter(rt: Runtime, stack_kb: int) -> _Interpreter:
    cache = rt.python_cache_dir
    if cache is None:
        raise interpreter.InterpreterNotReady(
            "the Python runtime has no cache directory on this host (JOBICO_PYTHON_CACHE_DIR)")
    got = rt._python.get(stack_kb)
    if got is not None:
        return got
    with _load_lock:
        got = rt._python.get(stack_kb)
        if got is not None:
            return got
        try:
            ready = interpreter.is_ready(cache)
            if ready:
                interpreter.check_private(cache)   # never load native code from a directory others can write
        except interpreter.InterpreterMissing as exc:  # an operator's problem, said on the record
            raise InvalidModule(f"Python jobicolets are unavailable on this host: {exc}") from None
        if not ready:
            raise interpreter.not_ready(cache)   # starts preparing it in the background
        eng = rt._engine(stack_kb)
        t0 = time.monotonic()
        path = interpreter.module_path(cache)
        try:
            module = wasmtime.Module.deserialize_file(eng.engine, str(path))
        except WasmtimeError as exc:  # unusable (another build of wasmtime, a damaged file): compile anew
            interpreter.log.warning("discarding the compiled Python interpreter %s: %s", path, exc)
            path.unlink(missing_ok=True)
            raise interpreter.not_ready(cache) from None
        linker = _make_linker(eng.engine)
        pre = linker.instantiate_pre(module)
        got = _Interpreter(module, pre, linker, str(interpreter.stdlib_dir(cache)))
        got.runner_code, got.package_code = _build_runner(rt, got, stack_kb)
        rt._python[stack_kb] = got
        rt.stats["python_loaded"] = rt.stats.get("python_loaded", 0) + 1
        interpreter.log.info("Python interpreter loaded from the cache in %.0f ms (stack %d KiB)",
                             (time.monotonic() - t0) * 1000, stack_kb)
        return got


def _build_runner(rt: Runtime, interp: _Interpreter, stack_kb: int) -> tuple[bytes | None, bytes | None]:
    """The runner's and the package support's code objects, marshalled by the guest; ``None``
    (events then compile the source) if that fails."""
    lim = Limits.from_mapping({"stack_kb": stack_kb}, base=PYTHON_DEFAULT_LIMITS)
    exe = _PyExecution(lim, None, time.monotonic(), PythonModule("", "<jobico-runner>", ""), "build", "", b"")
    exe.argv = _BUILD_RUNNER
    out = _execute(rt, interp, exe)
    if exe.built is None or exe.built_package is None:
        interpreter.log.warning("could not precompile the Python runner (%s: %s); events compile it",
                                out.status.value, out.message)
    return exe.built, exe.built_package


def _make_linker(engine: wasmtime.Engine) -> wasmtime.Linker:
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    kept = _wasi_clock.define(linker)   # sleeps that end at the deadline or a cancel
    i32 = wasmtime.ValType.i32()
    ty = wasmtime.FuncType([i32] * 4, [i32])
    err = ffi.wasmtime_linker_define_func(linker.ptr(), b"host", 4, b"call", 4, ty.ptr(), _door_callback,
                                          None, _NULL_FINALIZER)
    if err:
        raise WasmtimeError._from_ptr(err)
    linker._jobico_types = [ty, *kept]  # type: ignore[attr-defined]  # kept alive with the linker
    return linker


# --------------------------------------------------------------------------
# one execution


class _PyExecution(_Execution):
    __slots__ = ("request", "payload", "result", "error", "module", "argv", "runner_code", "built", "env",
                 "package_code", "built_package")

    def __init__(self, limits: Limits, cancel: CancelToken | None, t0: float, module: PythonModule,
                 mode: str, main: str, payload: bytes):
        super().__init__(limits, cancel, t0)
        self.module = module
        self.request = "\0".join((mode, module.filename, main, module.name if module.is_package else "",
                                  module.source)).encode("utf-8")
        self.payload = payload
        self.result: tuple[int, str] | None = None
        self.error: dict | None = None
        self.argv = GUEST_RUNNER                 # the -c program
        self.runner_code: bytes = b""            # op C's answer
        self.built: bytes | None = None          # op K's request
        self.package_code: bytes = b""           # op G's answer: b"M" + code, else b"S" + source
        self.built_package: bytes | None = None  # op J's request
        self.env: list[tuple[str, str]] = []     # the package's environment (WASI environ)


_I32 = _ffi.WASMTIME_I32.value
_U32 = 0xFFFFFFFF


def _door_impl(caller, args, results) -> int:
    """``host.call(ptr, len, out_ptr_ptr, out_len_ptr) -> 0 | -1 (unknown request) | -2 (fault)``."""
    results[0].kind = _I32
    results[0].of.i32 = -2
    exe = getattr(_tls, "exe", None)
    if not isinstance(exe, _PyExecution):
        return 0
    ptr, ln = args[0].of.i32 & _U32, args[1].of.i32 & _U32
    out_pp, out_lp = args[2].of.i32 & _U32, args[3].of.i32 & _U32
    item = ffi.wasmtime_extern_t()
    if not ffi.wasmtime_caller_export_get(caller, b"memory", 6, ctypes.byref(item)) or item.kind != _EXTERN_MEMORY:
        return 0
    ctx = ffi.wasmtime_caller_context(caller)
    memref = ctypes.byref(item.of.memory)
    size = _mem_size(ctx, memref)
    if ln == 0 or ptr + ln > size or out_pp + 4 > size or out_lp + 4 > size:
        return 0
    base = _mem_data(ctx, memref)
    op = ctypes.string_at(base + ptr, 1)
    limits = exe.limits
    answer = b""
    if op == b"S":
        answer = exe.request
    elif op == b"D":
        answer = exe.payload
    elif op == b"F":
        answer = exe.module.files_frame
    elif op == b"L":
        n = ln - 2 if ln >= 2 else 0
        if exe.log_bytes + n > limits.log_bytes:
            exe.stop = _Stop(Status.LIMIT_EXCEEDED, "logs", f"log messages exceed {limits.log_kb} KiB")
            return _new_trap(exe.stop.message)
        if len(exe.logs) >= limits.log_records:
            exe.stop = _Stop(Status.LIMIT_EXCEEDED, "logs", f"more than {limits.log_records} log records")
            return _new_trap(exe.stop.message)
        raw = ctypes.string_at(base + ptr + 1, ln - 1)
        level = raw[0] - 48 if raw else 6
        exe.log_bytes += n
        exe.logs.append(LogRecord(level if 0 <= level <= 6 else 6, raw[1:].decode("utf-8", "replace")))
    elif op == b"R":
        head = ctypes.string_at(base + ptr + 1, min(ln - 1, 24))
        digits, sep, _ = head.partition(b"\0")
        if not sep or not digits.isdigit() or int(digits) >= 1 << 64:
            return 0
        r_len = ln - 2 - len(digits)
        if r_len > limits.result_bytes:
            exe.stop = _Stop(Status.LIMIT_EXCEEDED, "result",
                             f"result is {r_len} bytes; the limit is {limits.result_kb} KiB")
            return _new_trap(exe.stop.message)
        text = ctypes.string_at(base + ptr + 2 + len(digits), r_len).decode("utf-8", "replace")
        exe.result = (int(digits), text)
    elif op == b"C":
        answer = exe.runner_code
    elif op == b"G":
        answer = exe.package_code or b"S" + GUEST_PACKAGE.encode("utf-8")
    elif op == b"P":
        answer = f"{GUEST_RUNNER}\0{GUEST_PACKAGE}".encode("utf-8")
    elif op == b"K" or op == b"J":
        if ln - 1 > _MAX_RUNNER_CODE:
            return 0
        code = ctypes.string_at(base + ptr + 1, ln - 1)
        if op == b"K":
            exe.built = code
        else:
            exe.built_package = code
    elif op == b"E":
        raw = ctypes.string_at(base + ptr + 1, min(ln - 1, _MAX_ERROR_BYTES))
        try:
            err = json.loads(raw.decode("utf-8", "replace"))
            exe.error = err if isinstance(err, dict) else {"message": str(err)}
        except ValueError:
            exe.error = {"type": "Error", "message": raw.decode("utf-8", "replace")}
    else:
        results[0].of.i32 = -1
        return 0
    p = 0
    if answer:
        alloc = ffi.wasmtime_extern_t()
        if not ffi.wasmtime_caller_export_get(caller, b"host_alloc", 10, ctypes.byref(alloc)) \
                or alloc.kind != _EXTERN_FUNC:
            return 0
        buf = (_VAL_RAW * 1)()
        buf[0].i32 = len(answer)
        trap = _TRAP_PTR()
        err = _func_call(ctx, ctypes.byref(alloc.of.func), buf, 1, ctypes.byref(trap))
        if err:
            return _new_trap(_short(str(WasmtimeError._from_ptr(err))))
        if trap:
            return ctypes.cast(trap, ctypes.c_void_p).value or 0   # ownership passes back to wasmtime
        p = buf[0].i32 & _U32
        size = _mem_size(ctx, memref)          # host_alloc may have grown the memory
        if not p or p + len(answer) > size:
            return 0
        base = _mem_data(ctx, memref)
        ctypes.memmove(base + p, answer, len(answer))
    ctypes.memmove(base + out_pp, p.to_bytes(4, "little"), 4)
    ctypes.memmove(base + out_lp, len(answer).to_bytes(4, "little"), 4)
    results[0].of.i32 = 0
    return 0


@ffi.wasmtime_func_callback_t
def _door_callback(env, caller, args, nargs, results, nresults):  # noqa: ANN001 - ctypes callback
    try:
        return _door_impl(caller, args, results)
    except BaseException as exc:  # a host bug must not cross into wasmtime
        return _new_trap(f"host error in host.call: {exc!r}")


def run_python(rt: Runtime, module: PythonModule, payload: bytes, main: str = "event",
               limits: Limits | None = None, cancel: CancelToken | None = None, *, mode: str = "event",
               env: dict[str, str] | None = None) -> Outcome:
    """Run one event (``mode="event"``) or a deploy check (``"syntax"``, ``"load"``) in a fresh instance.

    Never raises for anything the guest does; raises :class:`interpreter.InterpreterNotReady`
    (an ``Unavailable``) while the interpreter is not compiled on this host yet.
    """
    t0 = time.monotonic()
    rt._check_pid()
    limits = limits or PYTHON_DEFAULT_LIMITS
    if cancel is not None and cancel.cancelled:
        return rt._done(t0, Outcome(Status.CANCELLED, message="cancelled before start"))
    if len(payload) > limits.input_bytes:
        return rt._done(t0, Outcome(Status.LIMIT_EXCEEDED, limit="input",
                                    message=f"input is {len(payload)} bytes; the limit is {limits.input_kb} KiB"))
    try:
        interp = _interpreter(rt, limits.stack_kb)
    except InvalidModule as exc:
        return rt._done(t0, Outcome(Status.INVALID_MODULE, message=str(exc)))
    exe = _PyExecution(limits, cancel, t0, module, mode, main, payload)
    if env:
        exe.env = [(str(k), str(v)) for k, v in env.items()]
    if interp.runner_code:
        exe.argv, exe.runner_code = _BOOT_RUNNER, interp.runner_code
    if module.is_package and interp.package_code:
        exe.package_code = b"M" + interp.package_code
    out = _execute(rt, interp, exe)
    out.logs = exe.logs
    out.stdout = exe.stdout.decode("utf-8", "replace")
    if exe.stdout_over and out.status in (Status.SUCCEEDED, Status.FAILED, Status.TRAPPED):
        out.status, out.limit = Status.LIMIT_EXCEEDED, "stdout"
        out.message = f"stdout/stderr exceed {limits.stdout_kb} KiB"
    return rt._done(t0, out)


def _execute(rt: Runtime, interp: _Interpreter, exe: _PyExecution) -> Outcome:
    limits = exe.limits
    eng = rt._engine(limits.stack_kb)
    store = _store_new(eng.engine.ptr(), None, _NULL_FINALIZER)
    ctx = _store_context(store)
    with _active_lock:
        run_id = _next_id[0]
        _next_id[0] += 1
        _active[run_id] = exe
    try:
        err = _set_fuel(ctx, limits.fuel)
        if err:
            raise WasmtimeError._from_ptr(err)
        _store_limiter(store, limits.memory_bytes, -1, -1, -1, -1)
        _set_epoch_deadline(ctx, 1)
        _epoch_cb(store, _epoch_callback, None, _NULL_FINALIZER)
        wasi = wasmtime.WasiConfig()
        wasi.argv = [interpreter.ARGV0, "-c", exe.argv]
        if exe.env:
            wasi.env = exe.env
        wasi.preopen_dir(interp.stdlib, interpreter.STDLIB_GUEST_DIR, False)
        ffi.wasi_config_set_stdout_custom(wasi.ptr(), _output_callback, run_id, _NULL_FINALIZER)
        ffi.wasi_config_set_stderr_custom(wasi.ptr(), _output_callback, run_id, _NULL_FINALIZER)
        err = ffi.wasmtime_context_set_wasi(ctx, wasi._consume())
        if err:
            raise WasmtimeError._from_ptr(err)
        prev = getattr(_tls, "exe", None)
        _tls.exe = exe
        rt._ticker.enter()
        try:
            return _run(rt, ctx, interp, exe)
        finally:
            rt._ticker.leave()
            _tls.exe = prev
    finally:
        with _active_lock:
            _active.pop(run_id, None)
        _store_delete(store)


def _run(rt: Runtime, ctx, interp: _Interpreter, exe: _PyExecution) -> Outcome:
    phase = "instantiation"
    memref = None
    exit_code: int | None = None
    try:
        inst = ffi.wasmtime_instance_t()
        trap = _TRAP_PTR()
        err = _pre_instantiate(interp.pre.ptr(), ctx, ctypes.byref(inst), ctypes.byref(trap))
        if err:
            raise WasmtimeError._from_ptr(err)
        if trap:
            raise Trap._from_ptr(trap)
        item = ffi.wasmtime_extern_t()
        if _export_get(ctx, ctypes.byref(inst), b"memory", 6, ctypes.byref(item)) and item.kind == _EXTERN_MEMORY:
            mem = item.of.memory
            memref = ctypes.byref(mem)
        run = ffi.wasmtime_extern_t()
        if not _export_get(ctx, ctypes.byref(inst), b"run", 3, ctypes.byref(run)) or run.kind != _EXTERN_FUNC:
            return Outcome(Status.INVALID_MODULE, message="the Python interpreter exports no `run`")
        phase = "the Python interpreter"
        exit_code = _Caller(ctx)(run.of.func, 1)
    except ExitTrap as exc:
        exit_code = exc.code
    except (Trap, WasmtimeError) as exc:
        out = rt._classify(exc, exe, ctx, memref, phase)
        if out.status is Status.TRAPPED and exe.error is not None:
            return _exception(exe)
        return out
    if exe.stop is not None:
        return rt._stopped(exe)
    if exe.error is not None:
        return _exception(exe)
    if exe.result is not None:
        code, result = exe.result
        return Outcome(Status.SUCCEEDED if code == 0 else Status.FAILED, code=code, result=result)
    return Outcome(Status.TRAPPED, message=f"the Python interpreter ended (exit code {exit_code}) without a "
                                           "result: did the jobicolet call os._exit()?")


def _exception(exe: _PyExecution) -> Outcome:
    err = exe.error or {}
    kind = str(err.get("type") or "Error")
    text = str(err.get("message") or "")
    line = err.get("line")
    name = exe.module.name
    file = err.get("file")   # the tenant's file the guest names: the module, or a file of its zip
    if not isinstance(file, str) or not (file == name or (exe.module.is_package and file.startswith(name + "/"))):
        file = exe.module.filename
    where = f"{file}, line {line}" if isinstance(line, int) else file
    message = f"{where}: {kind}: {text}" if text else f"{where}: {kind}"
    if kind == "MemoryError":
        return Outcome(Status.LIMIT_EXCEEDED, limit="memory",
                       message=f"Python ran out of memory (the limit is {exe.limits.memory_mb} MiB): {message}")
    if kind == "RecursionError":
        message += " (the interpreter's recursion limit)"
    return Outcome(Status.TRAPPED, message=f"uncaught Python exception: {message}")


def check_python(rt: Runtime, module: PythonModule, main: str = "event", *, mode: str = "syntax",
                 limits: Limits | None = None) -> None:
    """Raise :class:`InvalidModule` naming the line when the guest's CPython refuses the source.

    ``mode="syntax"`` compiles it (upload); ``"load"`` also runs its top level and checks that
    ``main`` is a function (deploy).
    """
    out = run_python(rt, module, b"null", main, limits or PYTHON_DEFAULT_LIMITS, mode=mode)
    if out.status is Status.SUCCEEDED:
        return
    if out.status is Status.TRAPPED and out.message and out.message.startswith("uncaught Python exception: "):
        msg = out.message[len("uncaught Python exception: "):]
        if mode == "load" and out.stdout.strip():
            msg += "\n" + out.stdout.strip()[-2000:]
        raise InvalidModule(msg)
    raise InvalidModule(f"{module.name}: checking it in the Python runtime ended {out.status.value}"
                        + (f": {out.message}" if out.message else ""))
