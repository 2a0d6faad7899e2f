"""The guest side of a Python jobicolet. It runs INSIDE the sealed CPython (3.15, wasm32-wasip1).

Never imported on the host: ``jobico_worker.runtime.python`` reads this file's text; the
guest compiles it once per worker process (requests ``P``/``K``) and every event runs the
marshalled code (``python -c "...exec(marshal.loads(_host.call(b'C')))"``), or this text as
``python -c <text>`` if that failed. Everything it needs from the host comes
through the interpreter's one host import, ``host.call`` (``_host.call(bytes) -> bytes`` in
the guest), which our host implements; the first byte of a request names the operation:

=====================  ==========================================================
request                answer / meaning
=====================  ==========================================================
``S``                  ``<mode>\\0<file name>\\0<function name>\\0<source>``
``D``                  the event payload (canonical JSON, UTF-8)
``L<level><message>``  one log record; ``<level>`` is one digit, 0..6
``R<code>\\0<result>``  the result: ``<code>`` in decimal, then the UTF-8 string
``E<json>``            an exception: ``{"type", "message", "line"}``
``C`` / ``P`` / ``K``  the runner's code / its source / its marshalled code (build)
=====================  ==========================================================

After ``R`` or ``E`` the runner flushes its streams and leaves with ``os._exit(0)``: the
interpreter's own end-of-run clean-up costs ~30 ms and nothing of the instance is kept.
``mode`` is ``event`` (run the function on the payload), ``syntax`` (compile only: the
upload check) or ``load`` (compile, run the module's top level and check that the
function exists: the deploy check).
"""
import sys


def _jobico_run():
    import _host
    import json
    import os
    import types

    call = _host.call
    mode, filename, main, source = call(b"S").decode("utf-8").split("\0", 3)
    # one captured stream: stdout by lines, so print() and a traceback on stderr keep their order
    sys.stdout.reconfigure(line_buffering=True)

    def finish(frame):
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            if frame:
                call(frame)
            os._exit(0)

    def fail(exc, where=None):
        line = getattr(exc, "lineno", None) if isinstance(exc, SyntaxError) else None
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != filename:
            tb = tb.tb_next  # the runner's own frames are not the tenant's business
        last = tb
        while last is not None and last.tb_next is not None:
            last = last.tb_next
        if last is not None:
            line = last.tb_lineno
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
        call(b"E" + json.dumps({"type": type(exc).__name__, "message": message[:2000], "line": line,
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
    except (SyntaxError, ValueError) as exc:  # ValueError: NUL bytes
        fail(exc, "compile")
    if mode == "syntax":
        finish(b"R0\0")

    sys.modules["jobico"] = _jobico_module(call)
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
