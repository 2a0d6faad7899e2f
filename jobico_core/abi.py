"""Static checks of the jobicolet ABI (the ABI itself: docs/jobicolets.md).

Used by uploads (API) and by the worker's runtime before a module is compiled.
The check is cheap: a small pure-Python reader of the module's type, import,
function, memory and export sections (no compilation), plus wasmtime's
validator (``Module.validate``, no code generation) so that a module that
passes here is also valid WebAssembly.

``inspect_module(data, main=None)`` returns a :class:`ModuleInfo` or raises
:class:`InvalidModule` whose message names exactly what is wrong, e.g.::

    not a WebAssembly module (bad magic bytes)
    missing export `malloc`: must be a function (i32) -> i32
    unsupported import `env.socket`: only `env.log` and `wasi_snapshot_preview1.*` are provided
    export `event` has the wrong signature (i32) -> (); expected (i32, i32, i32) -> ()
"""
from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["InvalidModule", "ModuleInfo", "FuncSig", "Import", "inspect_module",
           "WASI_MODULE", "LOG_SIG", "LEGACY_LOG_SIG", "MAIN_SIG", "LEGACY_MAIN_SIG"]

WASI_MODULE = "wasi_snapshot_preview1"

I32, I64, F32, F64, V128 = "i32", "i64", "f32", "f64", "v128"
_VALTYPES = {0x7F: I32, 0x7E: I64, 0x7D: F32, 0x7C: F64, 0x7B: V128,
             0x70: "funcref", 0x6F: "externref", 0x6E: "anyref", 0x69: "exnref"}


@dataclass(frozen=True)
class FuncSig:
    params: tuple[str, ...]
    results: tuple[str, ...]

    def __str__(self) -> str:
        p = ", ".join(self.params)
        r = ", ".join(self.results)
        return f"({p}) -> ({r})" if len(self.results) != 1 else f"({p}) -> {r}"


LOG_SIG = FuncSig((I32, I32, I32), ())
LEGACY_LOG_SIG = FuncSig((I32, I32, I32, I32), ())
MAIN_SIG = FuncSig((I32, I32, I32), ())
LEGACY_MAIN_SIG = FuncSig((I32, I32, I32, I32), ())
MALLOC_SIG = FuncSig((I32,), (I32,))
FREE1_SIG = FuncSig((I32,), ())
FREE2_SIG = FuncSig((I32, I32), ())
VOID_SIG = FuncSig((), ())
VER_SIG = FuncSig((), (I32,))


class InvalidModule(Exception):
    """The module cannot be run as a jobicolet; ``str(exc)`` says why.

    ``problems`` lists every problem found (the message joins them).
    """

    def __init__(self, message: str, problems: Iterable[str] | None = None):
        super().__init__(message)
        self.problems = list(problems) if problems is not None else [message]


@dataclass(frozen=True)
class Import:
    module: str
    name: str
    kind: str                    # func | table | memory | global | tag
    sig: FuncSig | None = None   # for functions

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass
class ModuleInfo:
    imports: list[Import] = field(default_factory=list)
    #: export name -> kind ("func", "memory", "table", "global", "tag")
    exports: dict[str, str] = field(default_factory=dict)
    #: signatures of exported functions
    export_sigs: dict[str, FuncSig] = field(default_factory=dict)
    wasi: bool = False            # imports anything from wasi_snapshot_preview1
    ver: bool = False             # exports `ver`
    legacy_log: bool = False      # imports the 4-argument env.log
    main: str | None = None
    legacy_main: bool = False     # the main function takes the leading id
    free_takes_size: bool | None = None   # signature of `free` (2 params)
    problems: list[str] = field(default_factory=list)

    @property
    def start(self) -> str | None:
        """The export to call first: `_initialize` wins over `_start`."""
        if self.exports.get("_initialize") == "func":
            return "_initialize"
        if self.exports.get("_start") == "func":
            return "_start"
        return None

    @property
    def has_init(self) -> bool:
        return self.exports.get("init") == "func"

    def check_main(self, main: str) -> bool:
        """Return True when ``main`` is the legacy 4-argument form; raise InvalidModule otherwise when unusable."""
        kind = self.exports.get(main)
        if kind is None:
            raise InvalidModule(f"missing export `{main}` (the main function): must be a function {MAIN_SIG}")
        if kind != "func":
            raise InvalidModule(f"export `{main}` (the main function) is a {kind}, not a function")
        sig = self.export_sigs.get(main)
        if sig == MAIN_SIG:
            return False
        if sig == LEGACY_MAIN_SIG:
            return True
        raise InvalidModule(f"export `{main}` has the wrong signature {sig}; expected {MAIN_SIG} "
                            f"(or the legacy {LEGACY_MAIN_SIG})")


# --------------------------------------------------------------------------
# binary reader

class _Malformed(Exception):
    pass


class _Reader:
    __slots__ = ("b", "i", "end")

    def __init__(self, b: bytes, i: int = 0, end: int | None = None):
        self.b = b
        self.i = i
        self.end = len(b) if end is None else end

    def byte(self) -> int:
        if self.i >= self.end:
            raise _Malformed("unexpected end of section")
        v = self.b[self.i]
        self.i += 1
        return v

    def uleb(self, maxbits: int = 32) -> int:
        result = shift = 0
        while True:
            v = self.byte()
            result |= (v & 0x7F) << shift
            shift += 7
            if not v & 0x80:
                break
            if shift >= maxbits + 7:
                raise _Malformed("integer too long")
        return result

    def sleb(self) -> int:
        result = shift = 0
        while True:
            v = self.byte()
            result |= (v & 0x7F) << shift
            shift += 7
            if not v & 0x80:
                if v & 0x40:
                    result -= 1 << shift
                return result
            if shift > 70:
                raise _Malformed("integer too long")

    def bytes_(self, n: int) -> bytes:
        if self.i + n > self.end:
            raise _Malformed("unexpected end of section")
        v = self.b[self.i:self.i + n]
        self.i += n
        return v

    def name(self) -> str:
        n = self.uleb()
        try:
            return self.bytes_(n).decode("utf-8")
        except UnicodeDecodeError:
            raise _Malformed("name is not UTF-8") from None

    def valtype(self) -> str:
        t = self.byte()
        if t in (0x63, 0x64):          # (ref null? heaptype)
            self.sleb()
            return "ref"
        try:
            return _VALTYPES[t]
        except KeyError:
            raise _Malformed(f"unknown value type 0x{t:02x}") from None

    def limits(self) -> bool:
        """Read limits; return True when 64-bit."""
        flags = self.byte()
        if flags > 0x0F:
            raise _Malformed(f"bad limits flags 0x{flags:02x}")
        is64 = bool(flags & 0x04)
        self.uleb(64)
        if flags & 0x01:
            self.uleb(64)
        if flags & 0x08:
            self.uleb()
        return is64


_KINDS = {0: "func", 1: "table", 2: "memory", 3: "global", 4: "tag"}


def _parse(data: bytes) -> tuple[list, list[Import], list[int], list[tuple[str, str, int]], bool]:
    """Return (types, imports, defined func type idx, exports, memory64)."""
    if len(data) < 8 or data[:4] != b"\0asm":
        raise InvalidModule("not a WebAssembly module (bad magic bytes)")
    version = data[4:8]
    if version != b"\x01\0\0\0":
        if version[2:4] == b"\x01\0":
            raise InvalidModule("a WebAssembly component, not a core module: jobicolets are core modules")
        raise InvalidModule(f"unsupported WebAssembly version {int.from_bytes(version, 'little')}")
    types: list[FuncSig | None] = []
    imports: list[Import] = []
    funcs: list[int] = []
    exports: list[tuple[str, str, int]] = []
    memory64 = False
    r = _Reader(data, 8)
    while r.i < r.end:
        sid = r.byte()
        size = r.uleb()
        start = r.i
        end = start + size
        if end > len(data):
            raise _Malformed(f"section {sid} runs past the end of the file")
        s = _Reader(data, start, end)
        if sid == 1:
            for _ in range(s.uleb()):
                form = s.byte()
                if form == 0x60:
                    params = tuple(s.valtype() for _ in range(s.uleb()))
                    results = tuple(s.valtype() for _ in range(s.uleb()))
                    types.append(FuncSig(params, results))
                else:
                    # GC proposal type forms (rec/sub/struct/array): not for jobicolets
                    raise _Malformed(f"unsupported type form 0x{form:02x}")
        elif sid == 2:
            for _ in range(s.uleb()):
                mod = s.name()
                nm = s.name()
                kind = s.byte()
                if kind == 0:
                    idx = s.uleb()
                    sig = types[idx] if idx < len(types) else None
                    imports.append(Import(mod, nm, "func", sig))
                elif kind == 1:
                    s.valtype()
                    s.limits()
                    imports.append(Import(mod, nm, "table"))
                elif kind == 2:
                    memory64 |= s.limits()
                    imports.append(Import(mod, nm, "memory"))
                elif kind == 3:
                    s.valtype()
                    s.byte()
                    imports.append(Import(mod, nm, "global"))
                elif kind == 4:
                    s.byte()
                    s.uleb()
                    imports.append(Import(mod, nm, "tag"))
                else:
                    raise _Malformed(f"unknown import kind {kind}")
        elif sid == 3:
            funcs = [s.uleb() for _ in range(s.uleb())]
        elif sid == 5:
            for _ in range(s.uleb()):
                memory64 |= s.limits()
        elif sid == 7:
            for _ in range(s.uleb()):
                nm = s.name()
                kind = s.byte()
                idx = s.uleb()
                exports.append((nm, _KINDS.get(kind, f"kind{kind}"), idx))
        r.i = end
    return types, imports, funcs, exports, memory64


# wasmtime's validator, on a plain engine created lazily per process
_validator_lock = threading.Lock()
_validator: tuple[int, object] | None = None


def _validate(data: bytes) -> str | None:
    global _validator
    try:
        import wasmtime
    except ImportError:  # pragma: no cover - wasmtime is a dependency
        return None
    with _validator_lock:
        if _validator is None or _validator[0] != os.getpid():
            cfg = wasmtime.Config()
            # rayon's global pool does not survive fork(): validate on this thread
            cfg.parallel_compilation = False
            _validator = (os.getpid(), wasmtime.Engine(cfg))
        engine = _validator[1]
    try:
        wasmtime.Module.validate(engine, data)  # type: ignore[arg-type]
    except wasmtime.WasmtimeError as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid"
    return None


def _check_imports(info: ModuleInfo, imports: list[Import]) -> None:
    """Only ``env.log`` (either signature) and WASI functions may be imported."""
    problems = info.problems
    for imp in imports:
        if imp.module == WASI_MODULE:
            if imp.kind != "func":
                problems.append(f"unsupported import `{imp.qualname}`: WASI provides functions only")
            info.wasi = True
        elif imp.module == "env" and imp.name == "log":
            if imp.kind != "func":
                problems.append(f"import `env.log` must be a function {LOG_SIG}, not a {imp.kind}")
            elif imp.sig == LEGACY_LOG_SIG:
                info.legacy_log = True
            elif imp.sig != LOG_SIG:
                problems.append(f"import `env.log` has the wrong signature {imp.sig}; expected {LOG_SIG}")
        else:
            problems.append(f"unsupported import `{imp.qualname}`: only `env.log` and "
                            f"`{WASI_MODULE}.*` are provided")


def _check_exports(info: ModuleInfo, memory64: bool) -> None:
    """A 32-bit ``memory``, ``malloc`` and ``free``; ``ver``, ``init`` and the start functions
    when exported, each with its signature."""
    problems = info.problems
    memory_kind = info.exports.get("memory")
    if memory_kind is None:
        problems.append("missing export `memory` (linear memory)")
    elif memory_kind != "memory":
        problems.append(f"export `memory` is a {memory_kind}, not a linear memory")
    elif memory64:
        problems.append("64-bit linear memory (memory64) is not supported")

    def need(name: str, allowed: tuple[FuncSig, ...], what: str, required: bool = True) -> FuncSig | None:
        k = info.exports.get(name)
        if k is None:
            if required:
                problems.append(f"missing export `{name}`: must be a function {what}")
            return None
        if k != "func":
            problems.append(f"export `{name}` is a {k}, not a function")
            return None
        sig = info.export_sigs.get(name)
        if sig not in allowed:
            problems.append(f"export `{name}` has the wrong signature {sig}; expected {what}")
            return None
        return sig

    need("malloc", (MALLOC_SIG,), str(MALLOC_SIG))
    fsig = need("free", (FREE1_SIG, FREE2_SIG), f"{FREE1_SIG} or {FREE2_SIG}")
    if fsig is not None:
        info.free_takes_size = fsig == FREE2_SIG
    info.ver = need("ver", (VER_SIG,), str(VER_SIG), required=False) is not None
    need("init", (VOID_SIG,), str(VOID_SIG), required=False)
    need("_start", (VOID_SIG,), str(VOID_SIG), required=False)
    need("_initialize", (VOID_SIG,), str(VOID_SIG), required=False)


def inspect_module(data: bytes, main: str | None = None, *, strict: bool = True,
                   validate: bool = True) -> ModuleInfo:
    """Check ``data`` against the jobicolet ABI.

    ``main``: also check that this main function is exported with the right
    signature (the runtime passes the job's ``mainfuncname``).  With
    ``strict`` (default) any problem raises :class:`InvalidModule`; otherwise
    the problems are listed in ``ModuleInfo.problems``.  Bad magic bytes and
    a malformed binary always raise.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidModule("not a WebAssembly module (not bytes)")
    data = bytes(data)
    try:
        types, imports, funcs, exports, memory64 = _parse(data)
    except _Malformed as exc:
        raise InvalidModule(f"malformed WebAssembly module: {exc}") from None
    except IndexError:
        raise InvalidModule("malformed WebAssembly module: truncated") from None
    info = ModuleInfo(imports=imports)
    if validate:
        err = _validate(data)
        if err:
            raise InvalidModule(f"invalid WebAssembly module: {err}")

    func_sigs: list[FuncSig | None] = [imp.sig for imp in imports if imp.kind == "func"]
    func_sigs += [types[t] if t < len(types) else None for t in funcs]
    for name, kind, idx in exports:
        info.exports[name] = kind
        if kind == "func" and idx < len(func_sigs) and func_sigs[idx] is not None:
            info.export_sigs[name] = func_sigs[idx]  # type: ignore[assignment]
    _check_imports(info, imports)
    _check_exports(info, memory64)
    if main is not None:
        info.main = main
        try:
            info.legacy_main = info.check_main(main)
        except InvalidModule as exc:
            info.problems.append(str(exc))

    if info.problems and strict:
        raise InvalidModule("; ".join(info.problems), info.problems)
    return info
