"""jobico_core.abi: static checks of the jobicolet ABI on real WASM."""
from pathlib import Path

import pytest
import wasmtime

from jobico_core.abi import InvalidModule, inspect_module

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "jobicolets"

ALLOC = """
  (memory (export "memory") 1)
  (func (export "malloc") (param i32) (result i32) (i32.const 64))
  (func (export "free") (param i32))
"""
MAIN = '(func (export "event") (param i32 i32 i32))'


def wat(body: str) -> bytes:
    return wasmtime.wat2wasm(f"(module {body})")


@pytest.mark.parametrize("name", ["echo", "echo_tinygo", "error", "log", "panic", "sleeper", "memhog", "greet"])
def test_examples_pass(name):
    info = inspect_module((EXAMPLES / f"{name}.wasm").read_bytes(), "event")
    assert info.problems == []
    assert info.exports["memory"] == "memory"


def test_rust_style_facts():
    info = inspect_module((EXAMPLES / "echo.wasm").read_bytes())
    assert not info.wasi and info.ver and info.free_takes_size is True
    assert [i.qualname for i in info.imports] == ["env.log"]
    assert info.start is None and info.has_init


def test_tinygo_style_facts():
    info = inspect_module((EXAMPLES / "echo_tinygo.wasm").read_bytes())
    assert info.wasi and not info.ver and info.free_takes_size is False
    assert info.start == "_start"
    assert {i.qualname for i in info.imports} == {"wasi_snapshot_preview1.fd_write",
                                                  "wasi_snapshot_preview1.proc_exit"}


def test_initialize_wins_over_start():
    info = inspect_module(wat(ALLOC + MAIN + '(func (export "_start")) (func (export "_initialize"))'))
    assert info.start == "_initialize"


@pytest.mark.parametrize("data, words", [
    (b"", "not a WebAssembly module"),
    (b"hello world, not wasm", "not a WebAssembly module"),
    (b"\0asm\x0d\0\x01\0", "component"),
    (b"\0asm\x02\0\0\0", "version"),
    (b"\0asm\x01\0\0\0\x01\x05\x01", "malformed"),
])
def test_not_wasm(data, words):
    with pytest.raises(InvalidModule, match=words):
        inspect_module(data)


def test_invalid_code_is_reported_by_the_validator():
    # a function whose body leaves the wrong type on the stack: well-formed sections, invalid code
    data = bytearray(wat(ALLOC + '(func (export "event") (param i32 i32 i32) nop)'))
    i = data.rfind(b"\x01")  # the `nop` opcode in the last body
    data[i] = 0x6A  # i32.add with an empty stack
    with pytest.raises(InvalidModule, match="invalid WebAssembly"):
        inspect_module(bytes(data))


@pytest.mark.parametrize("body, message", [
    ('(func (export "malloc") (param i32) (result i32) (i32.const 0)) (func (export "free") (param i32))' + MAIN,
     "missing export `memory`"),
    ('(memory (export "memory") 1) (func (export "free") (param i32))' + MAIN, "missing export `malloc`"),
    ('(memory (export "memory") 1) (func (export "malloc") (param i32) (result i32) (i32.const 0))' + MAIN,
     "missing export `free`"),
    ('(memory (export "memory") 1) (func (export "malloc") (param i64) (result i32) (i32.const 0))'
     '(func (export "free") (param i32))' + MAIN, "export `malloc` has the wrong signature (i64) -> i32"),
    ('(memory (export "memory") 1) (func (export "malloc") (param i32) (result i32) (i32.const 0))'
     '(func (export "free") (param i32 i32 i32))' + MAIN, "export `free` has the wrong signature"),
    ('(import "env" "socket" (func (param i32)))' + ALLOC + MAIN, "unsupported import `env.socket`"),
    ('(import "foo" "bar" (func))' + ALLOC + MAIN, "unsupported import `foo.bar`"),
    ('(import "env" "log" (func (param i32 i32)))' + ALLOC + MAIN, "import `env.log` has the wrong signature"),
    ('(import "env" "mem" (memory 1)) (func (export "malloc") (param i32) (result i32) (i32.const 0))'
     '(func (export "free") (param i32))' + MAIN, "unsupported import `env.mem`"),
    (ALLOC + '(func (export "ver") (result i64) (i64.const 1))' + MAIN, "export `ver` has the wrong signature"),
    ('(global (export "memory") i32 (i32.const 0)) (func (export "malloc") (param i32) (result i32) (i32.const 0))'
     '(func (export "free") (param i32))' + MAIN, "export `memory` is a global"),
])
def test_problems_named(body, message):
    with pytest.raises(InvalidModule) as exc:
        inspect_module(wat(body))
    assert message in str(exc.value)


def test_main_checked_when_given():
    data = wat(ALLOC + '(func (export "handle") (param i32 i32 i32))')
    assert inspect_module(data).problems == []
    with pytest.raises(InvalidModule, match="missing export `event`"):
        inspect_module(data, "event")
    assert inspect_module(data, "handle").legacy_main is False
    bad = wat(ALLOC + '(func (export "event") (param i32))')
    with pytest.raises(InvalidModule, match=r"export `event` has the wrong signature \(i32\) -> \(\)"):
        inspect_module(bad, "event")


def test_legacy_forms_detected():
    data = wat('(import "env" "log" (func (param i32 i32 i32 i32)))' + ALLOC +
               '(func (export "event") (param i32 i32 i32 i32))')
    info = inspect_module(data, "event")
    assert info.legacy_log and info.legacy_main


def test_wasi_imports_allowed_any_name_statically():
    data = wat('(import "wasi_snapshot_preview1" "path_open" '
               '(func (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))' + ALLOC + MAIN)
    assert inspect_module(data, "event").wasi


def test_non_strict_lists_every_problem():
    data = wat('(import "foo" "bar" (func)) (func (export "event") (param i32 i32 i32))')
    info = inspect_module(data, strict=False)
    joined = " | ".join(info.problems)
    for w in ("foo.bar", "`memory`", "`malloc`", "`free`"):
        assert w in joined
    with pytest.raises(InvalidModule) as exc:
        inspect_module(data)
    assert len(exc.value.problems) == len(info.problems)
