"""jobico_runtime: the jobicolet ABI, outcomes and limits, on real WASM."""
import threading
import time
from pathlib import Path

import pytest
import wasmtime

from jobico_core.limits import Limits
from jobico_runtime import CancelToken, InvalidModule, LogRecord, Outcome, Runtime, Status
from tests.waiting import wait_until

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "jobicolets"
U64 = 2**64 - 1


def example(name: str) -> bytes:
    return (EXAMPLES / f"{name}.wasm").read_bytes()


@pytest.fixture(scope="module")
def rt():
    return Runtime()


# A bump allocator and helpers shared by the hand-written modules below.
BUMP = """
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (func $malloc (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.and (i32.add (i32.add (local.get $p) (local.get $n)) (i32.const 7)) (i32.const -8)))
    (local.get $p))
"""
FREE1 = '(func (export "free") (param i32))'


def module(body: str, *, alloc: str = BUMP + FREE1, imports: str = "") -> bytes:
    return wasmtime.wat2wasm(f"(module {imports} {alloc} {body})")


def result_at(res: str, code: str, ptr: str, ln: str) -> str:
    """WAT that writes the 16-byte result struct at `res`."""
    return (f"(i64.store {res} {code}) (i64.store offset=8 {res} "
            f"(i64.or (i64.shl (i64.extend_i32_u {ptr}) (i64.const 32)) (i64.extend_i32_u {ln})))")


# --------------------------------------------------------------------------- examples / ABI

def test_echo_rust_style(rt):
    out = rt.run(example("echo"), b'{"age":50,"firstName":"john"}')
    assert out.status is Status.SUCCEEDED and out.status == "succeeded"
    assert (out.code, out.result, out.logs, out.stdout, out.limit) == (0, '{"age":50,"firstName":"john"}', [], "", None)
    assert isinstance(out, Outcome) and out.duration_ms > 0


def test_echo_rust_style_large_and_empty_inputs(rt):
    big = b'{"x":"' + b"a" * (120 * 1024) + b'"}'
    out = rt.run(example("echo"), big, limits=Limits(result_kb=256))
    assert out.status is Status.SUCCEEDED and out.result == big.decode()
    out = rt.run(example("echo"), b"")
    assert out.status is Status.SUCCEEDED and out.result == ""


def test_echo_tinygo_style_start_proc_exit_zero_and_init_order(rt):
    # _start ends with proc_exit(0); init traps unless _start ran; event traps unless init ran
    out = rt.run(example("echo_tinygo"), '{"héllo":"wörld"}')
    assert out.status is Status.SUCCEEDED, out.message
    assert out.result == '{"héllo":"wörld"}'


def test_error_nonzero_code_is_failed_with_string(rt):
    out = rt.run(example("error"), b"{}")
    assert out.status is Status.FAILED
    assert out.code == 3 and out.result == "invalid order: total must be positive"


def test_log_seven_levels_in_order(rt):
    out = rt.run(example("log"), b"{}")
    assert out.status is Status.SUCCEEDED and out.result == "logged 7"
    assert out.logs == [LogRecord(0, "debug message"), LogRecord(1, "info message"), LogRecord(2, "warn message"),
                        LogRecord(3, "error message"), LogRecord(4, "fatal message"), LogRecord(5, "panic message"),
                        LogRecord(6, "no level message")]


def test_panic_is_trapped_with_stdout(rt):
    out = rt.run(example("panic"), b"{}")
    assert out.status is Status.TRAPPED
    assert out.stdout == "panic: something bad happened\n"
    assert "unreachable" in out.message
    assert out.code is None and out.result is None


def test_greet_c_module(rt):
    wasm = example("greet")
    out = rt.run(wasm, b'{"lang":"fr","name":"Ada"}')
    assert (out.status, out.code, out.result) == (Status.SUCCEEDED, 0, "Bonjour, Ada!")
    assert out.logs == [LogRecord(1, "lang=fr")]
    out = rt.run(wasm, b'{"name":"Bob"}')
    assert out.result == "Hello, Bob!"
    out = rt.run(wasm, b'{"age":3}')
    assert (out.status, out.code, out.result) == (Status.FAILED, 1, 'missing "name"')
    assert out.logs == [LogRecord(2, "event without a name")]
    out = rt.run(wasm, b'{"lang":"xx","name":"A"}')
    assert (out.status, out.code, out.result) == (Status.FAILED, 2, "unknown lang: xx")


def test_u64_code_and_invalid_utf8_result(rt):
    wasm = module(
        '(data (i32.const 100) "ok\\ff!")'
        '(func (export "event") (param $r i32) (param i32 i32)'
        + result_at("(local.get $r)", "(i64.const -1)", "(i32.const 100)", "(i32.const 4)") + ")")
    out = rt.run(wasm, b"{}")
    assert out.status is Status.FAILED and out.code == U64
    assert out.result == "ok\ufffd!"


# The tracer's free(ptr, size) logs the freed bytes: that shows the host's free sequence.
TRACER2 = """
  (import "env" "log" (func $log (param i32 i32 i32)))""" + BUMP + """
  (func (export "ver") (result i32) (i32.const 7))
  (func (export "free") (param $p i32) (param $n i32) (call $log (i32.const 6) (local.get $p) (local.get $n)))
"""
TRACER1 = """
  (import "env" "log" (func $log (param i32 i32 i32)))""" + BUMP + """
  (func (export "free") (param $p i32) (call $log (i32.const 6) (local.get $p) (i32.const 3)))
"""
RESULT_OUT = ('(data (i32.const 200) "OUT")'
              '(func (export "event") (param $r i32) (param i32 i32)'
              + result_at("(local.get $r)", "(i64.const 0)", "(i32.const 200)", "(i32.const 3)") + ")")


def test_free_with_size_when_ver_nonzero(rt):
    out = rt.run(module(RESULT_OUT, alloc=TRACER2), b"PAYLOAD")
    assert out.status is Status.SUCCEEDED and out.result == "OUT"
    msgs = [r.message for r in out.logs]
    # result string, then the 16-byte struct, then the input, each with its size
    assert len(msgs) == 3 and msgs[0] == "OUT" and msgs[2] == "PAYLOAD"
    assert len(msgs[1].encode("utf-8", "replace")) >= 8


def test_free_one_arg_when_no_ver(rt):
    out = rt.run(module(RESULT_OUT, alloc=TRACER1), b"PAYLOAD")
    assert out.status is Status.SUCCEEDED
    msgs = [r.message for r in out.logs]
    assert len(msgs) == 3 and msgs[0] == "OUT" and msgs[2] == "PAY"


def test_result_address_zero_is_not_freed(rt):
    body = ('(func (export "event") (param $r i32) (param i32 i32)'
            + result_at("(local.get $r)", "(i64.const 5)", "(i32.const 0)", "(i32.const 0)") + ")")
    out = rt.run(module(body, alloc=TRACER2), b"IN")
    assert (out.status, out.code, out.result) == (Status.FAILED, 5, "")
    assert len(out.logs) == 2 and out.logs[1].message == "IN"


def test_buffers_malloc_gave_one_address_are_not_freed(rt):
    """The Rust SDK's malloc returns one address (1) for every call, and its free traps on it:
    the input and the result struct are then not allocations, and only the result string is
    freed (the string first, as with any allocator)."""
    same = """
  (import "env" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (func (export "malloc") (param i32) (result i32) (i32.const 4096))
  (func (export "ver") (result i32) (i32.const 1))
  (func (export "free") (param $p i32) (param $n i32) (call $log (i32.const 6) (local.get $p) (local.get $n)))
"""
    body = ('(data (i32.const 200) "OUT")(func (export "event") (param $r i32) (param $in i32) (param i32)'
            '  (call $log (i32.const 1) (local.get $in) (i32.const 2))'   # the input, read before the result
            + result_at("(local.get $r)", "(i64.const 0)", "(i32.const 200)", "(i32.const 3)") + ")")
    out = rt.run(module(body, alloc=same), b"PAYLOAD")
    assert out.status is Status.SUCCEEDED and out.result == "OUT"
    assert [(r.level, r.message) for r in out.logs] == [(1, "PA"), (6, "OUT")]
    # the Rust-SDK-style echo: its free would trap on address 1; the run ends without a call into it
    out = rt.run(example("echo"), b"{}")
    assert (out.status, out.result) == (Status.SUCCEEDED, "{}")


def test_trap_in_free_after_main_is_ignored(rt):
    alloc = BUMP + '(func (export "free") (param i32) unreachable)'
    out = rt.run(module(RESULT_OUT, alloc=alloc), b"{}")
    assert out.status is Status.SUCCEEDED and out.result == "OUT"


def test_custom_main_name(rt):
    body = RESULT_OUT.replace('"event"', '"handle"')
    out = rt.run(module(body), b"{}", main="handle")
    assert out.status is Status.SUCCEEDED and out.result == "OUT"
    out = rt.run(module(body), b"{}")
    assert out.status is Status.INVALID_MODULE and "`event`" in out.message


def test_legacy_four_argument_main_and_log(rt):
    body = ('(import "env" "log" (func $log (param i32 i32 i32 i32)))' + BUMP + FREE1 +
            '(func (export "event") (param $r i32) (param $id i32) (param $in i32) (param $n i32)'
            '  (call $log (local.get $id) (i32.const 2) (local.get $in) (local.get $n))'
            + result_at("(local.get $r)", "(i64.const 0)", "(local.get $in)", "(local.get $n)") + ")")
    out = rt.run(wasmtime.wat2wasm(f"(module {body})"), b"legacy!")
    assert out.status is Status.SUCCEEDED and out.result == "legacy!"
    assert out.logs == [LogRecord(2, "legacy!")]


def test_initialize_called_instead_of_start(rt):
    body = ('(global $mode (mut i32) (i32.const 0))'
            '(func (export "_start") (global.set $mode (i32.const 1)))'
            '(func (export "_initialize") (global.set $mode (i32.const 2)))'
            '(func (export "event") (param $r i32) (param i32 i32)'
            + result_at("(local.get $r)", "(i64.extend_i32_u (global.get $mode))", "(i32.const 0)", "(i32.const 0)")
            + ")")
    out = rt.run(module(body), b"{}")
    assert out.code == 2   # only _initialize ran


def test_proc_exit_nonzero_in_start_is_trapped(rt):
    body = ('(func (export "_start") (call $exit (i32.const 3)))' + RESULT_OUT)
    out = rt.run(module(body, imports='(import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))'),
                 b"{}")
    assert out.status is Status.TRAPPED and "proc_exit(3)" in out.message


WASI_PROBE = """
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $envs (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
"""


def test_wasi_has_no_args_env_or_stdin_and_captures_stderr(rt):
    body = ('(data (i32.const 300) "to stderr")'
            '(func (export "event") (param $r i32) (param i32 i32)'
            '  (drop (call $args (i32.const 16) (i32.const 20)))'
            '  (drop (call $envs (i32.const 24) (i32.const 28)))'
            '  (i32.store (i32.const 32) (i32.const 1024)) (i32.store (i32.const 36) (i32.const 64))'
            '  (i32.store (i32.const 40) (i32.const 0))'
            '  (drop (call $read (i32.const 0) (i32.const 32) (i32.const 1) (i32.const 40)))'
            '  (i32.store (i32.const 48) (i32.const 300)) (i32.store (i32.const 52) (i32.const 9))'
            '  (drop (call $write (i32.const 2) (i32.const 48) (i32.const 1) (i32.const 56)))'
            + result_at("(local.get $r)",
                        "(i64.extend_i32_u (i32.add (i32.load (i32.const 16)) (i32.add "
                        "(i32.mul (i32.load (i32.const 24)) (i32.const 10)) "
                        "(i32.mul (i32.load (i32.const 40)) (i32.const 100)))))",
                        "(i32.const 0)", "(i32.const 0)") + ")")
    wasm = module(body, imports=WASI_PROBE)
    out = rt.run(wasm, b"{}")
    assert out.code == 0, "args, env and stdin must all be empty"
    assert out.stdout == "to stderr"
    out = rt.run(wasm, b"{}", env={"A": "1", "B": "2"})
    assert out.code == 20   # only the declared environment variables


def test_path_open_import_links_but_fails_without_preopens(rt):
    body = ('(data (i32.const 300) "etc/passwd")'
            '(func (export "event") (param $r i32) (param i32 i32)'
            + result_at("(local.get $r)",
                        "(i64.extend_i32_u (call $open (i32.const 3) (i32.const 0) (i32.const 300) (i32.const 10)"
                        " (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 64)))",
                        "(i32.const 0)", "(i32.const 0)") + ")")
    imports = ('(import "wasi_snapshot_preview1" "path_open" '
               '(func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))')
    out = rt.run(module(body, imports=imports), b"{}")
    assert out.status is Status.FAILED and out.code == 8   # errno EBADF: fd 3 is not a preopen


# --------------------------------------------------------------------------- invalid modules

@pytest.mark.parametrize("wasm, words", [
    (b"not wasm at all", "not a WebAssembly module"),
    (wasmtime.wat2wasm('(module (func (export "malloc") (param i32) (result i32) (i32.const 0))'
                       '(func (export "free") (param i32)) (func (export "event") (param i32 i32 i32)))'),
     "missing export `memory`"),
    (module('(func (export "event") (param i32 i32 i32))', imports='(import "env" "socket" (func (param i32)))'),
     "unsupported import `env.socket`"),
    (module('(func (export "event") (param i32 i32 i32))', imports='(import "foo" "bar" (func))'),
     "unsupported import `foo.bar`"),
    (module('(func (export "event") (param i32 i32))'), "export `event` has the wrong signature"),
    (module('(func (export "handler") (param i32 i32 i32))'), "missing export `event`"),
    (module('(func (export "event") (param i32 i32 i32))',
            imports='(import "wasi_snapshot_preview1" "no_such_call" (func))'),
     "no_such_call"),
])
def test_invalid_modules_are_named(rt, wasm, words):
    out = rt.run(wasm, b"{}")
    assert out.status is Status.INVALID_MODULE
    assert words in out.message
    if words != "missing export `event`" and "signature" not in words:
        with pytest.raises(InvalidModule, match=words.replace("`", ".")):
            rt.load(wasm)


# --------------------------------------------------------------------------- hostile modules

def test_log_pointer_out_of_bounds_is_flagged_not_fatal(rt):
    body = ('(import "env" "log" (func $log (param i32 i32 i32)))'
            '(func (export "event") (param $r i32) (param i32 i32)'
            '  (call $log (i32.const 1) (i32.const 0xFFFFFF00) (i32.const 0x1000))'
            + result_at("(local.get $r)", "(i64.const 0)", "(i32.const 0)", "(i32.const 0)") + ")")
    out = rt.run(wasmtime.wat2wasm(f"(module {body} {BUMP} {FREE1})"), b"{}")
    assert out.status is Status.SUCCEEDED
    assert len(out.logs) == 1 and out.logs[0].level == 1 and "out of bounds" in out.logs[0].message


def test_result_pointer_out_of_bounds_is_trapped(rt):
    body = ('(func (export "event") (param $r i32) (param i32 i32)'
            + result_at("(local.get $r)", "(i64.const 0)", "(i32.const 0xFFFF0000)", "(i32.const 64)") + ")")
    out = rt.run(module(body), b"{}")
    assert out.status is Status.TRAPPED and "result string out of bounds" in out.message


def test_result_length_of_4_gib_is_refused(rt):
    body = ('(func (export "event") (param $r i32) (param i32 i32)'
            + result_at("(local.get $r)", "(i64.const 0)", "(i32.const 16)", "(i32.const -1)") + ")")
    out = rt.run(module(body), b"{}")
    assert (out.status, out.limit) == (Status.LIMIT_EXCEEDED, "result")
    assert out.result is None


def test_malloc_returning_garbage_is_trapped(rt):
    alloc = ('(memory (export "memory") 1)'
             '(func (export "malloc") (param i32) (result i32) (i32.const 0xFFFFFFF0))' + FREE1)
    out = rt.run(module('(func (export "event") (param i32 i32 i32))', alloc=alloc), b"some input")
    assert out.status is Status.TRAPPED and "out of bounds" in out.message
    out = rt.run(module('(func (export "event") (param i32 i32 i32))', alloc=alloc), b"")
    assert out.status is Status.TRAPPED and "result struct" in out.message


DEEP = ('(func $down (param $n i32) (result i32)'
        '  (if (result i32) (i32.eqz (local.get $n)) (then (i32.const 0))'
        '    (else (i32.add (i32.const 1) (call $down (i32.sub (local.get $n) (i32.const 1)))))))'
        '(func (export "event") (param $r i32) (param $in i32) (param $n i32)'
        + result_at("(local.get $r)", "(i64.extend_i32_u (call $down (i32.load (local.get $in))))",
                    "(i32.const 0)", "(i32.const 0)") + ")")


def test_deep_recursion_hits_stack_limit(rt):
    wasm = module(DEEP)
    out = rt.run(wasm, (100).to_bytes(4, "little"))
    assert (out.status, out.code) == (Status.FAILED, 100)
    out = rt.run(wasm, (10_000_000).to_bytes(4, "little"))
    assert (out.status, out.limit) == (Status.LIMIT_EXCEEDED, "stack")


def test_stack_limit_per_execution(rt):
    wasm = module(DEEP)
    depth = (20_000).to_bytes(4, "little")
    small = rt.run(wasm, depth, limits=Limits(stack_kb=64))
    large = rt.run(wasm, depth, limits=Limits(stack_kb=1024))
    assert (small.status, small.limit) == (Status.LIMIT_EXCEEDED, "stack")
    assert (large.status, large.code) == (Status.FAILED, 20_000)


def test_trap_is_never_success(rt):
    out = rt.run(module('(func (export "event") (param i32 i32 i32) (drop (i32.div_u (i32.const 1) (i32.const 0))))'),
                 b"{}")
    assert out.status is Status.TRAPPED and "divide by zero" in out.message.lower()
    assert out.code is None


# --------------------------------------------------------------------------- limits

def test_fuel_budget_is_timed_out_cpu(rt):
    out = rt.run(example("sleeper"), b"{}", limits=Limits(fuel=5_000_000, timeout_ms=30_000))
    assert (out.status, out.limit) == (Status.TIMED_OUT, "cpu")


def test_wall_deadline_is_timed_out_wall(rt):
    out = rt.run(example("sleeper"), b"{}", limits=Limits(fuel=10_000_000_000, timeout_ms=200))
    assert (out.status, out.limit) == (Status.TIMED_OUT, "wall")
    assert 150 <= out.duration_ms < 10_000


def test_wall_deadline_covers_start_and_init(rt):
    body = '(func (export "init") (loop $l (br $l)))' + RESULT_OUT
    out = rt.run(module(body), b"{}", limits=Limits(fuel=10_000_000_000, timeout_ms=100))
    assert (out.status, out.limit) == (Status.TIMED_OUT, "wall")
    assert "init" in out.message


def test_memory_hog_is_limit_exceeded_memory(rt):
    out = rt.run(example("memhog"), b"{}", limits=Limits(memory_mb=8))
    assert (out.status, out.limit) == (Status.LIMIT_EXCEEDED, "memory")


def test_initial_memory_above_limit(rt):
    wasm = module(RESULT_OUT, alloc=BUMP.replace('(memory (export "memory") 1)', '(memory (export "memory") 200)')
                  + FREE1)
    out = rt.run(wasm, b"{}", limits=Limits(memory_mb=4))
    assert (out.status, out.limit) == (Status.LIMIT_EXCEEDED, "memory")
    assert rt.run(wasm, b"{}", limits=Limits(memory_mb=16)).status is Status.SUCCEEDED


def test_input_limit(rt):
    out = rt.run(example("echo"), b"x" * 2049, limits=Limits(input_kb=2))
    assert (out.status, out.limit) == (Status.LIMIT_EXCEEDED, "input")
    assert rt.run(example("echo"), b"x" * 2048, limits=Limits(input_kb=2)).status is Status.SUCCEEDED


def test_result_limit(rt):
    out = rt.run(example("echo"), b"x" * 3000, limits=Limits(result_kb=2))
    assert (out.status, out.limit) == (Status.LIMIT_EXCEEDED, "result")
    assert out.code == 0 and out.result is None


LOG_FLOOD = ('(import "env" "log" (func $log (param i32 i32 i32)))' + BUMP + FREE1 +
             '(func (export "event") (param i32 i32 i32)'
             '  (loop $l (call $log (i32.const 1) (i32.const 0) (i32.const 100)) (br $l)))')


def test_log_record_limit(rt):
    out = rt.run(wasmtime.wat2wasm(f"(module {LOG_FLOOD})"), b"{}", limits=Limits(log_records=10))
    assert (out.status, out.limit) == (Status.LIMIT_EXCEEDED, "logs")
    assert len(out.logs) == 10


def test_log_bytes_limit(rt):
    out = rt.run(wasmtime.wat2wasm(f"(module {LOG_FLOOD})"), b"{}", limits=Limits(log_kb=1))
    assert (out.status, out.limit) == (Status.LIMIT_EXCEEDED, "logs")
    assert len(out.logs) == 10   # 10 x 100 bytes fit in 1 KiB, the 11th does not


def test_stdout_limit(rt):
    body = ('(func (export "event") (param i32 i32 i32)'
            '  (i32.store (i32.const 16) (i32.const 1024)) (i32.store (i32.const 20) (i32.const 1000))'
            '  (loop $l (drop (call $write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 32))) (br $l)))')
    out = rt.run(module(body, imports=WASI_PROBE), b"{}", limits=Limits(stdout_kb=4, timeout_ms=5000))
    assert (out.status, out.limit) == (Status.LIMIT_EXCEEDED, "stdout")
    assert len(out.stdout) == 4096


# --------------------------------------------------------------------------- cancellation

def test_cancel_from_another_thread(rt):
    token = CancelToken()
    box = {}
    t = threading.Thread(target=lambda: box.setdefault(
        "out", rt.run(example("sleeper"), b"{}", limits=Limits(fuel=10_000_000_000, timeout_ms=30_000),
                      cancel=token)))
    t.start()
    wait_until(lambda: rt.ticker.active > 0, 10, what="the guest running")  # in its store, not before it
    t0 = time.monotonic()
    token.cancel("operator request")
    t.join(10)
    assert not t.is_alive()
    latency = time.monotonic() - t0
    out = box["out"]
    assert out.status is Status.CANCELLED and "operator request" in out.message
    assert latency < 2.0   # measured in the bench; generous here


def test_cancelled_before_start(rt):
    token = CancelToken()
    token.cancel()
    out = rt.run(example("echo"), b"{}", cancel=token)
    assert out.status is Status.CANCELLED


def test_cancel_only_affects_its_own_execution(rt):
    token = CancelToken()
    box = {}

    def other():
        box["other"] = rt.run(example("sleeper"), b"{}", limits=Limits(fuel=10_000_000_000, timeout_ms=600))

    t = threading.Thread(target=other)
    t.start()
    token.cancel()
    mine = rt.run(example("sleeper"), b"{}", cancel=token)
    t.join(10)
    assert mine.status is Status.CANCELLED
    assert (box["other"].status, box["other"].limit) == (Status.TIMED_OUT, "wall")
