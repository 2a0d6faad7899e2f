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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import wasmtime
from wasmtime import ExitTrap, Trap, WasmtimeError

from jobico_core.abi import InvalidModule
from jobico_core.archive import ArchiveLimits, ArchiveRefused, kind_of, read_archive
from jobico_core.limits import PYTHON_DEFAULT_LIMITS, Limits

from . import capi, interpreter, wasi_clock
from .outcome import CancelToken, Outcome, Status
from .sandbox import Execution, classify, current, finish, refused_at_start, run_in_store, short, stopped, wasi_config

if TYPE_CHECKING:
    from .wasm import Runtime

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
    __slots__ = ("module", "pre", "linker", "stdlib", "runner_code", "package_code", "tier", "engine", "checked")

    def __init__(self, module: wasmtime.Module, pre: wasmtime.InstancePre, linker: wasmtime.Linker,
                 stdlib: str, tier: str, engine: wasmtime.Engine):
        self.module, self.pre, self.linker, self.stdlib = module, pre, linker, stdlib
        self.tier, self.engine = tier, engine   # the compiled artifact (interpreter.TIERS) and its engine
        self.checked = time.monotonic()         # when we last looked for a better tier
        self.runner_code: bytes | None = None   # the runner, compiled by the guest (see _BUILD_RUNNER)
        self.package_code: bytes | None = None  # the package support, likewise


_load_lock = threading.Lock()
#: How often a process running on the quick artifact looks for the optimized one (a stat).
UPGRADE_CHECK_S = 2.0


def load_interpreter(rt: Runtime, stack_kb: int) -> _Interpreter:
    """The compiled interpreter in ``rt``'s engine for ``stack_kb`` (loaded once per process).

    The best tier in the cache (``rt.python_tier`` only, when set); a process that loaded the
    quick artifact switches to the optimized one once that is compiled (by whichever process
    compiled the quick one: ``interpreter.start_preparing``); events running on the quick one
    finish on it.
    """
    cache = rt.python_cache_dir
    if cache is None:
        raise interpreter.InterpreterNotReady(
            "the Python runtime has no cache directory on this host (JOBICO_PYTHON_CACHE_DIR)")
    got = rt.python_interpreters.get(stack_kb)
    if got is not None and (got.tier == "optimized" or rt.python_tier is not None
                            or time.monotonic() - got.checked < UPGRADE_CHECK_S):
        return got
    with _load_lock:
        got = rt.python_interpreters.get(stack_kb)
        if got is not None:
            if (got.tier == "optimized" or rt.python_tier is not None
                    or time.monotonic() - got.checked < UPGRADE_CHECK_S):
                return got
            got.checked = time.monotonic()
            if not interpreter.is_ready(cache, "optimized"):
                return got
        try:
            tier = interpreter.ready_tier(cache, rt.python_tier)
            if tier is not None:
                interpreter.check_private(cache)   # never load native code from a directory others can write
        except interpreter.InterpreterMissing as exc:  # an operator's problem, said on the record
            if got is not None:
                return got
            raise InvalidModule(f"Python jobicolets are unavailable on this host: {exc}") from None
        if tier is None:
            raise interpreter.not_ready(cache)   # starts preparing it in the background
        engine = rt.engine(stack_kb, interpreter.TIERS[tier])
        t0 = time.monotonic()
        path = interpreter.module_path(cache, tier)
        try:
            module = wasmtime.Module.deserialize_file(engine, str(path))
        except WasmtimeError as exc:  # unusable (another build of wasmtime, a damaged file): compile anew
            interpreter.log.warning("discarding the compiled Python interpreter %s: %s", path, exc)
            path.unlink(missing_ok=True)
            if got is not None:
                return got
            raise interpreter.not_ready(cache) from None
        interpreter.mark_used(path)            # kept by prune_stale while in use, whatever version prunes
        linker = _make_linker(engine)
        pre = linker.instantiate_pre(module)
        new = _Interpreter(module, pre, linker, str(interpreter.stdlib_dir(cache)), tier, engine)
        new.runner_code, new.package_code = _build_runner(rt, new, stack_kb)
        rt.python_interpreters[stack_kb] = new
        rt.stats["python_loaded"] = rt.stats.get("python_loaded", 0) + 1
        interpreter.log.info("Python interpreter (%s) loaded from the cache in %.0f ms (stack %d KiB)",
                             tier, (time.monotonic() - t0) * 1000, stack_kb)
        return new


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
    kept = wasi_clock.define(linker)   # sleeps that end at the deadline or a cancel
    i32 = wasmtime.ValType.i32()
    kept.append(capi.define_function(linker, b"host", b"call", [i32] * 4, [i32], _door_callback))
    linker._jobico_types = kept  # type: ignore[attr-defined]  # kept alive with the linker
    return linker


# --------------------------------------------------------------------------
# one execution


class _PyExecution(Execution):
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


class _Fault(Exception):
    """A malformed request: ``host.call`` returns -2."""


def _answer_log(exe: _PyExecution, addr: int, n: int) -> bytes | int:
    raw = ctypes.string_at(addr, n)          # the level's digit, then the message
    nbytes = n - 1 if n >= 1 else 0
    refused = exe.log_refused(nbytes)
    if refused:
        return refused
    exe.add_log(raw[0] - 48 if raw else 6, raw[1:].decode("utf-8", "replace"), nbytes)
    return b""


def _answer_result(exe: _PyExecution, addr: int, n: int) -> bytes | int:
    digits, sep, _ = ctypes.string_at(addr, min(n, 24)).partition(b"\0")   # the code, NUL, the result
    if not sep or not digits.isdigit() or int(digits) >= 1 << 64:
        raise _Fault
    r_len = n - 1 - len(digits)
    limits = exe.limits
    if r_len > limits.result_bytes:
        return exe.halt(Status.LIMIT_EXCEEDED, "result",
                        f"result is {r_len} bytes; the limit is {limits.result_kb} KiB")
    exe.result = (int(digits), ctypes.string_at(addr + 1 + len(digits), r_len).decode("utf-8", "replace"))
    return b""


def _answer_built(exe: _PyExecution, addr: int, n: int, package: bool) -> bytes:
    if n > _MAX_RUNNER_CODE:
        raise _Fault
    if package:
        exe.built_package = ctypes.string_at(addr, n)
    else:
        exe.built = ctypes.string_at(addr, n)
    return b""


def _answer_error(exe: _PyExecution, addr: int, n: int) -> bytes:
    raw = ctypes.string_at(addr, min(n, _MAX_ERROR_BYTES))
    try:
        err = json.loads(raw.decode("utf-8", "replace"))
        exe.error = err if isinstance(err, dict) else {"message": str(err)}
    except ValueError:
        exe.error = {"type": "Error", "message": raw.decode("utf-8", "replace")}
    return b""


#: ``host.call``'s requests: op -> (execution, address of the request's body, its length) -> the
#: answer (bytes, maybe empty) or a trap that stops the guest. docs/python.md lists them.
_REQUESTS: dict[bytes, Callable[[_PyExecution, int, int], bytes | int]] = {
    b"S": lambda exe, addr, n: exe.request,
    b"D": lambda exe, addr, n: exe.payload,
    b"F": lambda exe, addr, n: exe.module.files_frame,
    b"L": _answer_log,
    b"R": _answer_result,
    b"C": lambda exe, addr, n: exe.runner_code,
    b"G": lambda exe, addr, n: exe.package_code or b"S" + GUEST_PACKAGE.encode("utf-8"),
    b"P": lambda exe, addr, n: f"{GUEST_RUNNER}\0{GUEST_PACKAGE}".encode(),
    b"K": lambda exe, addr, n: _answer_built(exe, addr, n, package=False),
    b"J": lambda exe, addr, n: _answer_built(exe, addr, n, package=True),
    b"E": _answer_error,
}


@capi.host_function("host.call")
def _door_callback(caller, args, results) -> int:
    """``host.call(ptr, len, out_ptr_ptr, out_len_ptr) -> 0 | -1 (unknown request) | -2 (fault)``."""
    results[0].kind = capi.I32
    results[0].of.i32 = -2
    exe = current()
    if not isinstance(exe, _PyExecution):
        return 0
    ptr, ln = args[0].of.i32 & capi.U32, args[1].of.i32 & capi.U32
    out_pp, out_lp = args[2].of.i32 & capi.U32, args[3].of.i32 & capi.U32
    memory = capi.caller_memory(caller)
    if memory is None:
        return 0
    ctx, memref, size = memory
    if ln == 0 or ptr + ln > size or out_pp + 4 > size or out_lp + 4 > size:
        return 0
    addr = capi.mem_data(ctx, memref) + ptr
    handler = _REQUESTS.get(ctypes.string_at(addr, 1))
    if handler is None:
        results[0].of.i32 = -1
        return 0
    try:
        answer = handler(exe, addr + 1, ln - 1)
    except _Fault:
        return 0
    if isinstance(answer, int):
        return answer
    return _hand_back(caller, ctx, memref, answer, out_pp, out_lp, results)


def _hand_back(caller, ctx, memref, answer: bytes, out_pp: int, out_lp: int, results) -> int:
    """Copy ``answer`` into a buffer of the guest's ``host_alloc`` and write its address and length."""
    p = 0
    if answer:
        alloc = capi.caller_function(caller, b"host_alloc")
        if alloc is None:
            return 0
        buf = (capi.VAL_RAW * 1)()
        buf[0].i32 = len(answer)
        trap = capi.TRAP_PTR()
        err = capi.func_call(ctx, ctypes.byref(alloc), buf, 1, ctypes.byref(trap))
        if err:
            return capi.new_trap(short(capi.error_text(err)))
        if trap:
            return capi.trap_address(trap)   # ownership passes back to wasmtime
        p = buf[0].i32 & capi.U32
        if not p or p + len(answer) > capi.mem_size(ctx, memref):   # host_alloc may have grown the memory
            return 0
        ctypes.memmove(capi.mem_data(ctx, memref) + p, answer, len(answer))
    base = capi.mem_data(ctx, memref)
    ctypes.memmove(base + out_pp, p.to_bytes(4, "little"), 4)
    ctypes.memmove(base + out_lp, len(answer).to_bytes(4, "little"), 4)
    results[0].of.i32 = 0
    return 0


def run_python(rt: Runtime, module: PythonModule, payload: bytes, main: str = "event",
               limits: Limits | None = None, cancel: CancelToken | None = None, *, mode: str = "event",
               env: Mapping[str, str] | None = None) -> Outcome:
    """Run one event (``mode="event"``) or a deploy check (``"syntax"``, ``"load"``) in a fresh instance.

    Never raises for anything the guest does; raises :class:`interpreter.InterpreterNotReady`
    (an ``Unavailable``) while the interpreter is not compiled on this host yet.
    """
    t0 = time.monotonic()
    rt.check_pid()
    limits = limits or PYTHON_DEFAULT_LIMITS
    refused = refused_at_start(limits, cancel, payload)
    if refused is not None:
        return finish(t0, refused)
    try:
        interp = load_interpreter(rt, limits.stack_kb)
    except InvalidModule as exc:
        return finish(t0, Outcome(Status.INVALID_MODULE, message=str(exc)))
    exe = _PyExecution(limits, cancel, t0, module, mode, main, payload)
    if env:
        exe.env = [(str(k), str(v)) for k, v in env.items()]
    if interp.runner_code:
        exe.argv, exe.runner_code = _BOOT_RUNNER, interp.runner_code
    if module.is_package and interp.package_code:
        exe.package_code = b"M" + interp.package_code
    return finish(t0, _execute(rt, interp, exe), exe)


def _execute(rt: Runtime, interp: _Interpreter, exe: _PyExecution) -> Outcome:
    wasi = wasi_config(exe.env)
    wasi.argv = [interpreter.ARGV0, "-c", exe.argv]
    wasi.preopen_dir(interp.stdlib, interpreter.STDLIB_GUEST_DIR, False)
    return run_in_store(interp.engine, rt.ticker, exe, wasi, lambda ctx: _run(ctx, interp, exe))


def _run(ctx, interp: _Interpreter, exe: _PyExecution) -> Outcome:
    phase = "instantiation"
    memref = None
    exit_code: int | None = None
    try:
        inst = capi.instantiate(ctx, interp.pre)
        mem = capi.instance_export(ctx, inst, b"memory", capi.EXTERN_MEMORY)
        if mem is not None:
            memref = ctypes.byref(mem)
        run = capi.instance_export(ctx, inst, b"run", capi.EXTERN_FUNC)
        if run is None:
            return Outcome(Status.INVALID_MODULE, message="the Python interpreter exports no `run`")
        phase = "the Python interpreter"
        exit_code = capi.GuestCall(ctx)(run, 1)
    except ExitTrap as exc:
        exit_code = exc.code
    except (Trap, WasmtimeError) as exc:
        out = classify(exc, exe, ctx, memref, phase)
        if out.status is Status.TRAPPED and exe.error is not None:
            return _exception(exe)
        return out
    if exe.stop is not None:
        return stopped(exe)
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
