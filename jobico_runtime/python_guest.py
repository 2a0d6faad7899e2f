"""The guest side of a Python jobicolet. It runs INSIDE the sealed CPython (3.15, wasm32-wasip1).

Never imported on the host: ``jobico_runtime.python`` reads this file's text; the
guest compiles it once per worker process (requests ``P``/``K``) and every event runs the
marshalled code (``python -c "...exec(marshal.loads(_host.call(b'C')))"``), or this text as
``python -c <text>`` if that failed. Everything it needs from the host comes
through the interpreter's one host import, ``host.call`` (``_host.call(bytes) -> bytes`` in
the guest), which our host implements; the first byte of a request names the operation:

=====================  ==========================================================
request                answer / meaning
=====================  ==========================================================
``S``                  ``<mode>\\0<file name>\\0<function name>\\0<package>\\0<source>``
                       (``<package>``: a package zip's name, else empty)
``D``                  the event payload (canonical JSON, UTF-8)
``F``                  a package zip's other files, ``<path>\\0<source>\\0<path>\\0...``
                       (paths inside the zip, ``pkg/util.py``; only asked for a package)
``G``                  the package support (python_guest_package.py): ``M`` + its marshalled
                       code, or ``S`` + its source (only asked for a package)
``L<level><message>``  one log record; ``<level>`` is one digit, 0..6
``R<code>\\0<result>``  the result: ``<code>`` in decimal, then the UTF-8 string
``E<json>``            an exception: ``{"type", "message", "file", "line"}``
``C`` / ``P`` / ``K``  the runner's code / its source and the package support's, ``\\0``
                       between / the runner's marshalled code (build)
``J``                  the package support's marshalled code (build)
=====================  ==========================================================

After ``R`` or ``E`` the runner flushes its streams and leaves with ``os._exit(0)``: the
interpreter's own end-of-run clean-up costs ~30 ms and nothing of the instance is kept.
``mode`` is ``event`` (run the function on the payload), ``syntax`` (compile only: the
upload check) or ``load`` (compile, run the module's top level and check that the
function exists: the deploy check).

A package zip's ``main.py`` runs as the module ``main`` (file name ``<zip>/main.py``); its
other files are served to ``import`` from memory by python_guest_package.py, whose code is
loaded (op ``G``) only for a package: a single file's event does not pay for it.
"""
import sys


def _jobico_run():
    import json
    import os
    import types

    import _host

    call = _host.call
    mode, filename, main, package, source = call(b"S").decode("utf-8").split("\0", 4)
    # one captured stream: stdout by lines, so print() and a traceback on stderr keep their order
    sys.stdout.reconfigure(line_buffering=True)
    support = _package_support(call) if package else None
    files = support["files"](call, package) if package else {}
    mine = {filename, *files}  # the tenant's file names

    def finish(frame):
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            if frame:
                call(frame)
            os._exit(0)

    def fail(exc, where=None):
        file, line = filename, (getattr(exc, "lineno", None) if isinstance(exc, SyntaxError) else None)
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename not in mine:
            tb = tb.tb_next  # the runner's own frames are not the tenant's business
        if files and tb is not None:  # nor are the import machinery's between a tenant's import and the file
            support["prune"](tb, _jobico_run.__code__.co_filename)
        frame = tb
        while frame is not None:  # the deepest of the tenant's frames says where
            if frame.tb_frame.f_code.co_filename in mine:
                file, line = frame.tb_frame.f_code.co_filename, frame.tb_lineno
            frame = frame.tb_next
        if isinstance(exc, SyntaxError) and exc.filename in mine:  # a file that did not compile
            file, line = exc.filename, exc.lineno
        frame = tb
        while frame is not None:  # the tenant's finished frames: free their locals (a MemoryError's hoard)
            frame.tb_frame.clear()
            frame = frame.tb_next
        if isinstance(exc, SyntaxError):
            message = exc.msg
        elif isinstance(exc, SystemExit):
            message = f"{main}() called sys.exit({exc.code!r})"
        else:
            message = str(exc)
        # the summary first: printing the traceback may itself fail (out of memory, a closed stream)
        call(b"E" + json.dumps({"type": type(exc).__name__, "message": message[:2000], "file": file, "line": line,
                                "where": where}).encode("utf-8", "backslashreplace"))
        try:
            if not isinstance(exc, SyntaxError) or mode == "event":
                import traceback
                traceback.print_exception(type(exc), exc, tb, file=sys.stderr)
        finally:
            finish(b"")

    # tracebacks show the tenant's source lines (the file is not on any file system here)
    import linecache
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    try:
        code = compile(source, filename, "exec", dont_inherit=True)
        if mode == "syntax" and files:  # every file of a package zip, importable or not
            for name, text in files.items():
                compile(text, name, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:  # ValueError: NUL bytes
        fail(exc, "compile")
    if package:
        pkg = support["Package"](package, files)
        if pkg.shadowing:
            name, module_name = pkg.shadowing
            whose = "the platform's module" if module_name in ("jobico", "jobicolet", "_host") else \
                "a standard-library module"
            finish(b"E" + json.dumps({"type": "JobicoletError", "file": name, "line": None, "where": "compile",
                                      "message": f"the module {module_name} has the name of {whose}: "
                                                 "rename it"}).encode())
    if mode == "syntax":
        finish(b"R0\0")

    sys.modules["jobico"] = _jobico_module(call)
    if package:
        module = pkg.install(filename, source)
    else:
        module = types.ModuleType("jobicolet")
        module.__file__ = filename
        sys.modules["jobicolet"] = module
    try:
        exec(code, module.__dict__)
    except BaseException as exc:  # noqa: BLE001 - the tenant's error, reported
        fail(exc, "module")
    fn = module.__dict__.get(main)
    if not callable(fn):
        finish(b"E" + json.dumps({"type": "JobicoletError", "line": None, "where": "module",
                                  "message": f"{filename} defines no function {main}(data)"}).encode())
    if mode == "load":
        finish(b"R0\0")

    try:
        data = json.loads(call(b"D").decode("utf-8"))
        answer = fn(data)
        if not isinstance(answer, tuple) or len(answer) != 2:
            raise TypeError(f"{main}() must return a (code, result) tuple, not {_kind(answer)}")
        rc, result = answer
        if isinstance(rc, bool) or not isinstance(rc, int) or not 0 <= rc < 1 << 64:
            raise TypeError(f"{main}() returned code {rc!r}: the code must be an int in 0..2**64-1 "
                            "(0 = success)")
        if result is None:
            result = ""
        elif isinstance(result, (bytes, bytearray)):
            result = bytes(result).decode("utf-8", "replace")
        elif not isinstance(result, str):
            result = json.dumps(result, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                                allow_nan=False)
    except BaseException as exc:  # noqa: BLE001 - the tenant's error, reported
        fail(exc, "event")
    finish(b"R" + str(rc).encode() + b"\0" + result.encode("utf-8", "backslashreplace"))


def _package_support(call):
    """The namespace of python_guest_package.py: precompiled once per process, else compiled here."""
    import marshal
    blob = call(b"G")
    if blob[:1] == b"M":
        code = marshal.loads(blob[1:])
    else:
        code = compile(blob[1:].decode("utf-8"), "<jobico-runner-package>", "exec", dont_inherit=True)
    namespace = {"__name__": "_jobico_package"}
    exec(code, namespace)
    return namespace


def _kind(value):
    return "None" if value is None else f"a {type(value).__name__}"


def _jobico_module(call):
    """The ``jobico`` module a jobicolet imports: logging at the seven levels of the ABI."""
    import types

    m = types.ModuleType("jobico", "Helpers for Python jobicolets: logging at the seven levels "
                                   "(debug, info, warn, error, fatal, panic and no level).")
    names = ("DEBUG", "INFO", "WARN", "ERROR", "FATAL", "PANIC", "NOLEVEL")
    for i, name in enumerate(names):
        setattr(m, name, i)

    def log(*parts, level=6):
        """Record one log message (the parts joined by spaces, like print) at ``level`` 0..6."""
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 6:
            raise ValueError(f"log level must be an int 0..6 (jobico.DEBUG..jobico.NOLEVEL), not {level!r}")
        text = " ".join(str(p) for p in parts)
        call(b"L" + bytes((48 + level,)) + text.encode("utf-8", "backslashreplace"))

    def at(level, name):
        def f(*parts):
            log(*parts, level=level)
        f.__name__ = f.__qualname__ = name
        f.__doc__ = f"Record a {name} message (fatal and panic are labels: they never stop the run)."
        return f

    m.log = log
    for i, name in enumerate(("debug", "info", "warn", "error", "fatal", "panic")):
        setattr(m, name, at(i, name))
    m.warning = m.warn
    m.__all__ = ["log", "debug", "info", "warn", "warning", "error", "fatal", "panic", *names]
    return m


if __name__ == "__main__":
    _jobico_run()
