"""The Python runtime on the real interpreter: results, logs, errors, limits, the sandbox, isolation."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from jobico_core.abi import InvalidModule
from jobico_core.limits import PYTHON_DEFAULT_LIMITS, Limits
from jobico_runtime import CancelToken, Status
from jobico_runtime.python import PythonModule, check_python, load_python
from jobico_runtime.sandbox import FUEL_PER_CPU_S
from tests.waiting import wait_until

# the first test's setup may compile the interpreter (minutes, once per machine: conftest.py)
pytestmark = pytest.mark.timeout(1200)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "python"


def py(source: str, name: str = "t.py") -> PythonModule:
    return load_python(source.encode(), name)


def limits(**kw) -> Limits:
    return Limits.from_mapping(kw, base=PYTHON_DEFAULT_LIMITS)


def test_echo_example_returns_the_event_as_canonical_json(runtime):
    m = load_python((EXAMPLES / "echo.py").read_bytes(), "echo.py")
    out = runtime.run(m, b'{"b":[1,2],"a":"\xc3\xa9"}')
    assert out.status is Status.SUCCEEDED, out.to_dict()
    assert out.code == 0 and json.loads(out.result) == {"a": "é", "b": [1, 2]}
    assert out.result == '{"a":"é","b":[1,2]}'
    assert [(r.level, r.message) for r in out.logs] == [(1, "echo received dict")]


def test_json_transform_and_stdlib_examples(runtime):
    orders = load_python((EXAMPLES / "orders.py").read_bytes(), "orders.py")
    out = runtime.run(orders, json.dumps({"id": "A-1", "items": [{"sku": "pen", "qty": 3, "price": 1.5},
                                                                    {"sku": "ink", "qty": 1, "price": 0.1}]}))
    assert out.status is Status.SUCCEEDED, out.to_dict()
    assert json.loads(out.result) == {"id": "A-1", "currency": "EUR", "count": 4, "total": 4.6,
                                      "lines": [{"sku": "pen", "total": 4.5}, {"sku": "ink", "total": 0.1}]}
    empty = runtime.run(orders, json.dumps({"id": "B", "items": []}))
    assert (empty.status, empty.code) == (Status.FAILED, 1)
    assert json.loads(empty.result)["error"] == "the order has no items"
    assert [r.level for r in empty.logs] == [2]

    stats = load_python((EXAMPLES / "stats.py").read_bytes(), "stats.py")
    out = runtime.run(stats, json.dumps({"name": "latency", "values": [12.5, 9.1, 30.2, 11.0]}))
    assert out.status is Status.SUCCEEDED, out.to_dict()
    assert json.loads(out.result) == {"name": "latency", "n": 4, "mean": 15.7, "median": 11.75, "stdev": 9.77,
                                      "max": 30.2, "outliers": []}


def test_logs_at_the_seven_levels_and_print_in_stdout(runtime):
    out = runtime.run(py("""
import jobico
def event(data):
    jobico.debug("d", 1)
    jobico.info("i")
    jobico.warn("w")
    jobico.warning("w2")
    jobico.error("e")
    jobico.fatal("f")
    jobico.panic("p")
    jobico.log("plain")
    jobico.log("at", "three", level=jobico.ERROR)
    print("printed")
    import sys
    print("to stderr", file=sys.stderr)
    return 0, "done"
"""), b"{}")
    assert out.status is Status.SUCCEEDED, out.to_dict()
    assert [(r.level, r.message) for r in out.logs] == [
        (0, "d 1"), (1, "i"), (2, "w"), (2, "w2"), (3, "e"), (4, "f"), (5, "p"), (6, "plain"), (3, "at three")]
    assert out.stdout == "printed\nto stderr\n"
    assert out.result == "done"


@pytest.mark.parametrize("ret, result", [
    ("0, None", ""), ("0, b'bytes'", "bytes"), ("0, [1, {'b': 2, 'a': None}]", '[1,{"a":null,"b":2}]'),
    ("0, 1.5", "1.5"), ("0, True", "true"), ("(2**64 - 1), 'max'", "max"),
])
def test_results_of_every_type(runtime, ret, result):
    out = runtime.run(py(f"def event(data):\n    return {ret}\n"), b"null")
    assert out.result == result, out.to_dict()


def test_a_non_zero_code_is_a_failure_with_its_result(runtime):
    out = runtime.run(py("def event(data):\n    return 7, {'why': data['x']}\n"), b'{"x":"no"}')
    assert (out.status, out.code, out.result) == (Status.FAILED, 7, '{"why":"no"}')


@pytest.mark.parametrize("ret, words", [
    ("'just a string'", "must return a (code, result) tuple, not a str"),
    ("None", "not None"),
    ("(1, 2, 3)", "not a tuple"),
    ("(-1, '')", "code -1"),
    ("(True, '')", "code True"),
    ("(0, float('nan'))", "Out of range float"),
    ("(0, {1, 2})", "not JSON serializable"),
])
def test_a_malformed_return_value_is_trapped_with_a_clear_message(runtime, ret, words):
    out = runtime.run(py(f"def event(data):\n    return {ret}\n", "bad.py"), b"{}")
    assert out.status is Status.TRAPPED, out.to_dict()
    assert out.message.startswith("uncaught Python exception: bad.py") and words in out.message, out.message


def test_an_exception_is_trapped_with_the_traceback_in_stdout(runtime):
    out = runtime.run(py("""import jobico

def helper(d):
    return d["missing"]

def event(data):
    jobico.info("before")
    print("some output")
    return 0, helper(data)
""", "boom.py"), b'{"a":1}')
    assert out.status is Status.TRAPPED
    assert out.message == "uncaught Python exception: boom.py, line 4: KeyError: 'missing'"
    assert [r.message for r in out.logs] == ["before"]  # what was logged before stays
    assert out.stdout.startswith("some output\nTraceback (most recent call last):\n")
    assert 'File "boom.py", line 9, in event' in out.stdout and 'File "boom.py", line 4, in helper' in out.stdout
    assert '    return d["missing"]' in out.stdout  # the tenant's source line
    assert "<string>" not in out.stdout  # none of the runner's frames
    assert out.stdout.rstrip().endswith("KeyError: 'missing'")
    # raised inside the standard library: the line is the tenant's call, not the library's
    out = runtime.run(py("import json\n\ndef event(data):\n    return 0, json.loads('{')\n", "j.py"), b"{}")
    assert out.message.startswith("uncaught Python exception: j.py, line 4: JSONDecodeError: "), out.message


def test_exit_and_failures_at_import_time(runtime):
    out = runtime.run(py("import sys\ndef event(data):\n    sys.exit(3)\n"), b"{}")
    assert out.status is Status.TRAPPED and "event() called sys.exit(3)" in out.message
    out = runtime.run(py("import os\ndef event(data):\n    os._exit(0)\n"), b"{}")
    assert out.status is Status.TRAPPED and "without a result" in out.message
    out = runtime.run(py("raise RuntimeError('at import')\ndef event(data):\n    return 0, ''\n"), b"{}")
    assert out.status is Status.TRAPPED and "t.py, line 1: RuntimeError: at import" in out.message
    out = runtime.run(py("import no_such_module\n"), b"{}")
    assert out.status is Status.TRAPPED and "ModuleNotFoundError" in out.message
    out = runtime.run(py("def handler(data):\n    return 0, ''\n"), b"{}")
    assert out.status is Status.TRAPPED and "defines no function event(data)" in out.message
    out = runtime.run(py("def handler(data):\n    return 0, 'h'\n"), b"{}", main="handler")
    assert out.status is Status.SUCCEEDED and out.result == "h"


def test_syntax_errors_are_judged_by_the_guests_python_with_their_line(runtime):
    with pytest.raises(InvalidModule, match=r"^syn.py, line 3: SyntaxError: '\(' was never closed$"):
        check_python(runtime, py("def event(data):\n    return 0, ''\nx = (\n", "syn.py"))
    # 3.15 syntax the host's 3.11 refuses: the guest's CPython is the judge
    check_python(runtime, py("type Point = tuple[int, int]\n"
                             "def event[T](data: T) -> tuple[int, T]:\n    return 0, data\n"))
    check_python(runtime, py("def event(data):\n    return 0, ''\n"), mode="load")
    with pytest.raises(InvalidModule, match="defines no function event"):
        check_python(runtime, py("x = 1\n"), mode="load")
    with pytest.raises(InvalidModule, match="line 1: ZeroDivisionError"):
        check_python(runtime, py("1/0\n"), mode="load")
    check_python(runtime, py("1/0\n"))  # syntax only: the top level does not run at upload


def test_host_side_checks_of_the_source():
    with pytest.raises(InvalidModule, match="not UTF-8 \\(line 2"):
        load_python(b"x = 1\ny = '\xff'\n")
    with pytest.raises(InvalidModule, match="NUL byte \\(line 1"):
        load_python(b"x = 1\0\n")
    with pytest.raises(InvalidModule, match="at most 1024 KiB"):
        load_python(b"#" * (2 << 20))
    assert load_python(b"\xef\xbb\xbfx = 1\n").source == "x = 1\n"  # a BOM is dropped


def test_no_state_is_carried_between_two_events(runtime):
    m = py("""
import sys
count = 0
def event(data):
    global count
    count += 1
    sys.modules.setdefault("kept", []).append(data)
    import builtins
    seen = getattr(builtins, "seen", None)
    builtins.seen = data
    return 0, {"count": count, "kept": len(sys.modules["kept"]), "seen": seen}
""")
    for payload in (b'"first"', b'"second"'):
        out = runtime.run(m, payload)
        assert json.loads(out.result) == {"count": 1, "kept": 1, "seen": None}, out.to_dict()


def test_the_sandbox_has_no_files_network_or_environment_of_the_host(runtime):
    out = runtime.run(py("""
import os, sys
def attempt(f):
    try:
        return repr(f())[:60]
    except BaseException as e:
        return type(e).__name__
def write_lib():
    with open("/usr/local/lib/x", "w") as f:
        f.write("x")
def connect():
    import socket
    return socket.create_connection(("127.0.0.1", 22), timeout=1)
def event(data):
    return 0, {
        "env": dict(os.environ),
        "argv": sys.argv,
        "lib": sorted(os.listdir("/usr/local/lib")),
        "etc": attempt(lambda: open("/etc/passwd").read()),
        "root": attempt(lambda: os.listdir("/")),
        "cwd": attempt(lambda: os.listdir(".")),
        "tmp": attempt(lambda: open("/tmp/x", "w")),
        "write_lib": attempt(write_lib),
        "net": attempt(connect),
        "stdin": attempt(lambda: sys.stdin.read()),
    }
"""), b"{}")
    assert out.status is Status.SUCCEEDED, out.to_dict()
    r = json.loads(out.result)
    assert r["env"] == {}
    assert r["lib"] == ["python315.zip"]  # the one platform file, read-only
    for key in ("etc", "root", "cwd", "tmp", "write_lib"):
        assert r[key] in ("FileNotFoundError", "PermissionError", "OSError"), (key, r[key])
    assert r["net"] in ("OSError", "PermissionError", "ConnectionRefusedError", "AttributeError", "ImportError",
                        "ModuleNotFoundError", "TimeoutError"), r["net"]
    assert r["stdin"] == "''"


def test_timeouts_wall_and_cpu(runtime):
    spin = py("def event(data):\n    while True:\n        pass\n")
    t0 = time.monotonic()
    out = runtime.run(spin, b"{}", limits=limits(timeout_ms=300, fuel=10**10))
    assert (out.status, out.limit) == (Status.TIMED_OUT, "wall"), out.to_dict()
    assert time.monotonic() - t0 < 5
    out = runtime.run(spin, b"{}", limits=limits(fuel=50_000_000, timeout_ms=30_000))
    assert (out.status, out.limit) == (Status.TIMED_OUT, "cpu"), out.to_dict()
    nap = py("import time\ndef event(data):\n    t = time.monotonic()\n    time.sleep(0.05)\n"
             "    return 0, {'slept': time.monotonic() - t, 'now': time.time()}\n")
    out = runtime.run(nap, b"{}")
    assert out.status is Status.SUCCEEDED, out.to_dict()
    assert 0.05 <= json.loads(out.result)["slept"] < 2 and abs(json.loads(out.result)["now"] - time.time()) < 60
    sleeper = py("import time\ndef event(data):\n    time.sleep(30)\n    return 0, ''\n")
    t0 = time.monotonic()
    out = runtime.run(sleeper, b"{}", limits=limits(timeout_ms=300))
    assert (out.status, out.limit) == (Status.TIMED_OUT, "wall"), out.to_dict()
    assert time.monotonic() - t0 < 5


def test_a_spinning_interpreter_is_stopped_by_the_cpu_budget_alike_on_both_tiers(runtime):
    """The quick artifact (Winch) cannot meter fuel: its CPU bound is the fuel budget's worth of
    CPU time (sandbox.FUEL_PER_CPU_S), ending with the same outcome as fuel on the optimized one."""
    spin = py("def event(data):\n    n = 0\n    while True:\n        n += 1\n")
    fuel = FUEL_PER_CPU_S // 2
    c0 = time.thread_time()
    out = runtime.run(spin, b"{}", limits=limits(fuel=fuel, timeout_ms=30_000))
    cpu_s = time.thread_time() - c0
    assert (out.status, out.limit) == (Status.TIMED_OUT, "cpu"), out.to_dict()
    assert out.message.startswith(f"CPU budget of {fuel} fuel"), out.message
    if runtime.python_tier == "quick":
        assert "0.50 s of CPU time" in out.message and 0.5 <= cpu_s < 10, cpu_s


def test_memory_limit(runtime):
    hog = py("def event(data):\n    x = bytearray(400 * 1024 * 1024)\n    return 0, str(len(x))\n", "hog.py")
    out = runtime.run(hog, b"{}", limits=limits(memory_mb=128))
    assert (out.status, out.limit) == (Status.LIMIT_EXCEEDED, "memory"), out.to_dict()
    assert "128 MiB" in out.message and "hog.py, line 2: MemoryError" in out.message
    grow = py("def event(data):\n    chunks = []\n    while True:\n        chunks.append(bytearray(1 << 20))\n")
    out = runtime.run(grow, b"{}", limits=limits(memory_mb=96))
    assert (out.status, out.limit) == (Status.LIMIT_EXCEEDED, "memory"), out.to_dict()
    ok = runtime.run(hog, b"{}", limits=limits(memory_mb=512))
    assert ok.status is Status.SUCCEEDED and ok.result == str(400 * 1024 * 1024)


def test_recursion_and_the_wasm_stack(runtime):
    out = runtime.run(py("def f(n):\n    return f(n + 1)\ndef event(data):\n    return 0, f(0)\n"), b"{}")
    assert out.status is Status.TRAPPED and "RecursionError" in out.message, out.to_dict()
    deep = py("def event(data):\n    d = []\n    for i in range(100000):\n        d = [d]\n    return 0, 'built'\n")
    out = runtime.run(deep, b"{}")   # freeing 100000 nested lists recurses in C
    assert (out.status, out.limit) == (Status.LIMIT_EXCEEDED, "stack"), out.to_dict()


def test_output_result_and_log_limits(runtime):
    chatty = py("def event(data):\n    print('x' * 200_000)\n    return 0, ''\n")
    out = runtime.run(chatty, b"{}", limits=limits(stdout_kb=16))
    assert (out.status, out.limit) == (Status.LIMIT_EXCEEDED, "stdout"), out.to_dict()
    assert len(out.stdout) <= 16 * 1024
    big = py("def event(data):\n    return 0, 'r' * 100_000\n")
    out = runtime.run(big, b"{}", limits=limits(result_kb=8))
    assert (out.status, out.limit) == (Status.LIMIT_EXCEEDED, "result"), out.to_dict()
    logs = py("import jobico\ndef event(data):\n    for i in range(100):\n        jobico.info(i)\n    return 0, ''\n")
    out = runtime.run(logs, b"{}", limits=limits(log_records=10))
    assert (out.status, out.limit) == (Status.LIMIT_EXCEEDED, "logs"), out.to_dict()
    assert len(out.logs) == 10
    out = runtime.run(py("import jobico\ndef event(data):\n    jobico.info('y' * 10000)\n    return 0, ''\n"),
                      b"{}", limits=limits(log_kb=4))
    assert (out.status, out.limit) == (Status.LIMIT_EXCEEDED, "logs"), out.to_dict()
    out = runtime.run(py("def event(data):\n    return 0, ''\n"), b"x" * 2048, limits=limits(input_kb=1))
    assert (out.status, out.limit) == (Status.LIMIT_EXCEEDED, "input")


def test_cancellation_from_another_thread(runtime):
    token = CancelToken()
    threading.Timer(0.1, token.cancel, args=("operator",)).start()
    t0 = time.monotonic()
    # the most fuel allowed: a spinning interpreter burns the default budget in about 0.3 s here
    out = runtime.run(py("def event(data):\n    while True:\n        pass\n"), b"{}", cancel=token,
                      limits=limits(timeout_ms=20_000, fuel=10_000_000_000))
    assert out.status is Status.CANCELLED and "operator" in out.message, out.to_dict()
    assert time.monotonic() - t0 < 5


def test_concurrent_events_in_threads_keep_their_own_results_and_logs(runtime):
    m = py("import jobico\ndef event(data):\n    jobico.info('n', data)\n    print(data)\n    return 0, data * 2\n")
    results: dict[int, object] = {}

    def one(i: int) -> None:
        out = runtime.run(m, str(i).encode())
        results[i] = (out.status, out.result, [r.message for r in out.logs], out.stdout)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: (Status.SUCCEEDED, str(i * 2), [f"n {i}"], f"{i}\n") for i in range(8)}


def test_hostile_payloads_and_door_misuse_never_hurt_the_host(runtime):
    echo = load_python((EXAMPLES / "echo.py").read_bytes(), "echo.py")
    out = runtime.run(echo, ("[" * 5000 + "]" * 5000).encode())  # C recursion in json.loads
    assert (out.status, out.limit) == (Status.LIMIT_EXCEEDED, "stack"), out.to_dict()
    out = runtime.run(py("""
import _host
def attempt(f):
    try:
        return repr(f())
    except BaseException as e:
        return type(e).__name__
def event(data):
    return 0, {"unknown": attempt(lambda: _host.call(b"Z")), "empty": attempt(lambda: _host.call(b"")),
               "bad_level": attempt(lambda: _host.call(b"L9x")), "bad_result": attempt(lambda: _host.call(b"Rx")),
               "str": attempt(lambda: _host.call("S"))}
"""), b"{}")
    assert out.status is Status.SUCCEEDED, out.to_dict()
    assert json.loads(out.result) == {"unknown": "ConnectionRefusedError", "empty": "OSError", "bad_level": "b''",
                                      "bad_result": "OSError", "str": "TypeError"}
    assert [(r.level, r.message) for r in out.logs] == [(6, "x")]  # an unknown level is "no level"
    spam = py("import _host\ndef event(data):\n    while True:\n        _host.call(b'S')\n")
    out = runtime.run(spam, b"{}", limits=limits(timeout_ms=500))
    assert (out.status, out.limit) == (Status.TIMED_OUT, "wall"), out.to_dict()


def test_the_environment_is_os_environ_and_only_for_that_event(runtime):
    """The package's environment reaches the guest's os.environ (the sealed interpreter's snapshot
    predates the event: the runner sets it); the next event without one sees none of it."""
    m = py("import os\nAT_LOAD = os.environ.get('LOG_LEVEL')\n\ndef event(data):\n"
           "    return 0, {'at_load': AT_LOAD, **{k: os.environ.get(k) for k in ('API_TOKEN', 'LOG_LEVEL')}}\n")
    out = runtime.run(m, b"{}", env={"API_TOKEN": "tok-123=x", "LOG_LEVEL": "debug"})
    assert out.status.value == "succeeded", out.to_dict()
    assert json.loads(out.result) == {"at_load": "debug", "API_TOKEN": "tok-123=x", "LOG_LEVEL": "debug"}
    out = runtime.run(m, b"{}")
    assert json.loads(out.result) == {"at_load": None, "API_TOKEN": None, "LOG_LEVEL": None}


# --------------------------------------------------------------------------- package zips


def pyzip(files: dict[str, str], name: str = "p.zip") -> PythonModule:
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return load_python(buf.getvalue(), name)


PACKAGE = {
    "main.py": """import jobico
import helpers
import main as me
from pkg import util
from pkg.sub import deep
import plain.leaf

calls = 0


def event(data):
    global calls
    calls += 1
    jobico.info("main is", __name__, "from", __file__)
    return 0, {"double": helpers.double(data["x"]), "triple": util.triple(data["x"]), "deep": deep.where(),
               "files": [helpers.__file__, util.__file__, deep.__file__], "pkg": util.__package__,
               "same": me is __import__("sys").modules["main"], "leaf": plain.leaf.VALUE,
               "calls": calls, "helper_calls": helpers.bump()}
""",
    "helpers.py": """import json  # the standard library, as usual

calls = 0


def double(x):
    if x < 0:
        raise ValueError(f"negative: {x}")
    return 2 * x


def bump():
    global calls
    calls += 1
    return calls
""",
    "pkg/__init__.py": "",
    "pkg/util.py": "from .sub.deep import where  # a relative import\n\n\ndef triple(x):\n    return 3 * x\n",
    "pkg/sub/__init__.py": "",
    "pkg/sub/deep.py": "def where():\n    return __name__\n",
    "plain/leaf.py": "VALUE = 'a directory without __init__.py is a package too'\n",
    "tools/not-importable.py": "x = 1\n",
}


def test_a_package_zip_imports_its_modules_and_subpackages_from_memory(runtime):
    m = pyzip(PACKAGE)
    assert m.filename == "p.zip/main.py" and len(m.files) == 7
    check_python(runtime, m)
    check_python(runtime, m, mode="load")
    out = runtime.run(m, b'{"x": 5}')
    assert out.status is Status.SUCCEEDED, out.to_dict()
    assert json.loads(out.result) == {
        "double": 10, "triple": 15, "deep": "pkg.sub.deep", "pkg": "pkg", "same": True,
        "files": ["p.zip/helpers.py", "p.zip/pkg/util.py", "p.zip/pkg/sub/deep.py"],
        "leaf": "a directory without __init__.py is a package too", "calls": 1, "helper_calls": 1}
    assert [r.message for r in out.logs] == ["main is main from p.zip/main.py"]
    # a fresh interpreter per event: neither main.py's nor a helper's globals survive
    again = runtime.run(m, b'{"x": 1}')
    assert json.loads(again.result)["calls"] == 1 and json.loads(again.result)["helper_calls"] == 1


def test_an_exception_in_a_helper_names_that_file_and_line(runtime):
    m = pyzip(PACKAGE)
    out = runtime.run(m, b'{"x": -1}')
    assert out.status is Status.TRAPPED
    assert out.message == "uncaught Python exception: p.zip/helpers.py, line 8: ValueError: negative: -1"
    assert 'File "p.zip/main.py", line 15, in event' in out.stdout
    assert 'File "p.zip/helpers.py", line 8, in double\n    raise ValueError(f"negative: {x}")' in out.stdout
    # at import time (main.py imports a helper that fails): no import machinery in between
    bad = pyzip({**PACKAGE, "pkg/sub/deep.py": "def where():\n    return 1\n\n{}['boom']\n"})
    out = runtime.run(bad, b"{}")
    assert out.message == "uncaught Python exception: p.zip/pkg/sub/deep.py, line 4: KeyError: 'boom'"
    assert 'File "p.zip/main.py", line 4, in <module>\n    from pkg import util' in out.stdout
    assert 'File "p.zip/pkg/util.py", line 1, in <module>' in out.stdout
    assert "importlib" not in out.stdout and "<jobico-runner>" not in out.stdout, out.stdout
    with pytest.raises(InvalidModule, match=r"^p.zip/pkg/sub/deep.py, line 4: KeyError: 'boom'"):
        check_python(runtime, bad, mode="load")   # the deploy check says the same
    check_python(runtime, bad)                    # syntax only: the upload check


def test_package_checks_in_the_guest(runtime):
    bad = pyzip({**PACKAGE, "pkg/util.py": "def triple(x):\n    return (3 * x\n"})
    with pytest.raises(InvalidModule, match=r"^p.zip/pkg/util.py, line 2: SyntaxError: '\(' was never closed$"):
        check_python(runtime, bad)
    # every file compiles at upload, importable or not
    with pytest.raises(InvalidModule, match=r"^p.zip/tools/not-importable.py, line 1: SyntaxError"):
        check_python(runtime, pyzip({**PACKAGE, "tools/not-importable.py": "x = = 1\n"}))
    with pytest.raises(InvalidModule, match=r"^p.zip/json.py: JobicoletError: the module json has the name of a "
                                            r"standard-library module: rename it$"):
        check_python(runtime, pyzip({**PACKAGE, "json.py": "x = 1\n"}))
    with pytest.raises(InvalidModule, match=r"^p.zip/jobico/__init__.py: JobicoletError: the module jobico has the "
                                            r"name of the platform's module: rename it$"):
        check_python(runtime, pyzip({**PACKAGE, "jobico/__init__.py": ""}))
    with pytest.raises(InvalidModule, match=r"^p.zip/main.py: JobicoletError: p.zip/main.py defines no function "
                                            r"event\(data\)$"):
        check_python(runtime, pyzip({"main.py": "import helpers\n", "helpers.py": ""}), mode="load")
    out = runtime.run(pyzip({"main.py": "import missing\n"}), b"{}")
    assert out.status is Status.TRAPPED and "p.zip/main.py, line 1: ModuleNotFoundError" in out.message


def test_the_pricing_zip_example(runtime):
    m = load_python((EXAMPLES / "pricing.zip").read_bytes(), "pricing.zip")
    check_python(runtime, m)
    check_python(runtime, m, mode="load")
    out = runtime.run(m, json.dumps({"items": [{"sku": "pen", "qty": 12, "unit_cents": 150}], "coupon": "SPRING10"}))
    assert out.status is Status.SUCCEEDED, out.to_dict()
    assert json.loads(out.result) == {
        "lines": [{"sku": "pen", "qty": 12, "total": "18.00"}], "subtotal": "18.00",
        "discounts": [{"rule": "volume", "amount": "0.90"}, {"rule": "SPRING10", "amount": "1.71"}],
        "total": "15.39"}
    out = runtime.run(m, json.dumps({"items": [], "coupon": "NOPE"}))
    assert (out.status, out.code) == (Status.FAILED, 2) and json.loads(out.result) == {"error": "unknown coupon 'NOPE'"}
    out = runtime.run(m, json.dumps({"items": [{"sku": "pen", "qty": 1, "unit_cents": -5}]}))
    assert out.status is Status.TRAPPED and out.message.startswith(
        "uncaught Python exception: pricing.zip/money.py, line 7: ValueError: an amount must be"), out.message


def test_a_package_runs_when_the_runner_could_not_be_precompiled(python_cache):
    """The fallback path: the runner as ``python -c <source>``, the package support compiled per event."""
    from jobico_runtime import Runtime
    from jobico_runtime.python import load_interpreter
    rt = Runtime(python_cache_dir=python_cache)
    interp = load_interpreter(rt, PYTHON_DEFAULT_LIMITS.stack_kb)
    assert interp.runner_code and interp.package_code   # normally both are precompiled once per process
    interp.runner_code = interp.package_code = None
    out = rt.run(pyzip(PACKAGE), b'{"x": 2}')
    assert out.status is Status.SUCCEEDED and json.loads(out.result)["deep"] == "pkg.sub.deep", out.to_dict()
    out = rt.run(pyzip({**PACKAGE, "pkg/sub/deep.py": "{}['boom']\n"}), b"{}")
    assert out.message == "uncaught Python exception: p.zip/pkg/sub/deep.py, line 1: KeyError: 'boom'"
    assert "<string>" not in out.stdout and "<jobico-runner" not in out.stdout and "importlib" not in out.stdout


def test_a_process_on_the_quick_artifact_switches_to_the_optimized_one_once_it_is_compiled(python_cache):
    """A fresh host runs Python jobicolets on the quick artifact while the optimized one compiles."""
    import os
    import shutil
    import tempfile

    from jobico_runtime import Runtime, interpreter
    from jobico_runtime.python import load_interpreter
    interpreter.prepare(python_cache, "quick")
    cache = Path(tempfile.mkdtemp(dir=python_cache, prefix="switch-"))   # same filesystem: hard links
    try:
        os.link(interpreter.module_path(python_cache, "quick"), interpreter.module_path(cache, "quick"))
        interpreter.prepare(cache, "quick")   # installs the stdlib folder; the artifact is there
        rt = Runtime(python_cache_dir=cache)
        echo = load_python((EXAMPLES / "echo.py").read_bytes(), "echo.py")
        out = rt.run(echo, b'{"a": 1}')
        assert out.status is Status.SUCCEEDED, out.to_dict()
        assert load_interpreter(rt, PYTHON_DEFAULT_LIMITS.stack_kb).tier == "quick"
        os.link(interpreter.module_path(python_cache, "optimized"), interpreter.module_path(cache, "optimized"))
        def switched() -> bool:  # events keep running (on the quick tier) until it has
            if load_interpreter(rt, PYTHON_DEFAULT_LIMITS.stack_kb).tier == "optimized":
                return True
            out = rt.run(echo, b'{"a": 1}')
            assert out.status is Status.SUCCEEDED, out.to_dict()
            return False
        wait_until(switched, 120, what="the process switching to the optimized artifact", interval=0)
        out = rt.run(echo, b'{"a": 2}')
        assert out.status is Status.SUCCEEDED and out.result == '{"a":2}', out.to_dict()
        assert rt.stats["python_loaded"] == 2
    finally:
        shutil.rmtree(cache)
