"""Every example jobicolet (examples/jobicolets/) through the real runtime, against
docs/jobicolets.md: the greet example in each compiled language gives the documented
results, the Rust SDK's quirks are really in the Rust module, and every other example
gives the outcome examples/jobicolets/README.md states."""
from __future__ import annotations

import re

import pytest
import wasmtime

from jobico_core.abi import inspect_module
from jobico_core.limits import Limits
from jobico_runtime import Runtime, Status
from tests.guest_examples import DOC, GREET_MODULES, NOT_BUILT, WASM_EXAMPLES, documented_cases

CASES = documented_cases()


@pytest.fixture(scope="module")
def rt() -> Runtime:
    return Runtime()


def greet_module(name: str) -> bytes:
    path = WASM_EXAMPLES / name
    if not path.exists():
        src = path.with_suffix(".go").name
        assert src in NOT_BUILT, f"{name} is missing and not listed as unbuildable"
        pytest.skip(f"{name} not committed: {NOT_BUILT[src]}")
    return path.read_bytes()


@pytest.mark.parametrize("name", sorted(GREET_MODULES))
@pytest.mark.parametrize("case", CASES, ids=[c.event for c in CASES])
def test_greet_in_every_language_gives_the_documented_result(rt, name, case):
    out = rt.run(greet_module(name), case.event)
    assert (out.status.value, out.code, out.result) == (case.status, case.code, case.result), out.to_dict()
    assert tuple((r.level, r.message) for r in out.logs) == case.logs
    assert out.limit is None


def test_the_rust_wasi_module_prints_on_the_captured_stdout(rt):
    out = rt.run(greet_module("greet_rust_wasi.wasm"), '{"lang":"de","name":"Ada"}')
    assert out.status is Status.SUCCEEDED and out.result == "Hallo, Ada!"
    assert out.stdout == "greet: Hallo, Ada!\n"


def _instance(name: str):
    store = wasmtime.Store()
    linker = wasmtime.Linker(store.engine)
    linker.define_wasi()
    store.set_wasi(wasmtime.WasiConfig())
    i32 = wasmtime.ValType.i32()
    linker.define_func("env", "log", wasmtime.FuncType([i32, i32, i32], []), lambda *a: None)
    inst = linker.instantiate(store, wasmtime.Module(store.engine, greet_module(name)))
    return store, inst.exports(store)


def test_the_rust_sdk_module_really_has_the_quirks_the_host_tolerates():
    store, ex = _instance("greet_rust.wasm")
    info = inspect_module(greet_module("greet_rust.wasm"), "event")
    assert [i.qualname for i in info.imports] == ["env.log"] and not info.wasi
    assert ex["ver"](store) == 1 and info.free_takes_size
    # malloc hands out one dangling address for every size: input and result struct overlap
    assert {ex["malloc"](store, n) for n in (0, 16, 27, 4096)} == {1}
    ex["init"](store)
    # and freeing it traps (the host ignores this trap after a successful main call)
    with pytest.raises(wasmtime.Trap):
        ex["free"](store, 1, 16)


def test_the_rust_wasi_and_c_modules_use_libc_malloc_and_one_argument_free():
    for name in ("greet_rust_wasi.wasm", "greet.wasm"):
        info = inspect_module(greet_module(name), "event")
        assert info.wasi and not info.ver and info.free_takes_size is False, name
        store, ex = _instance(name)
        if "_initialize" in ex:
            ex["_initialize"](store)
        a, b = ex["malloc"](store, 16), ex["malloc"](store, 16)
        assert a and b and a != b, name        # real, distinct allocations
        ex["free"](store, a)
        ex["free"](store, b)


# Every other example, with the outcome its README row states (payload, limits, expected).
OTHERS = {
    "echo.wasm": ('{"age":50,"firstName":"john"}', None, ("succeeded", 0, '{"age":50,"firstName":"john"}', None)),
    "echo_tinygo.wasm": ('{"a":1}', None, ("succeeded", 0, '{"a":1}', None)),
    "error.wasm": ("{}", None, ("failed", 3, "invalid order: total must be positive", None)),
    "log.wasm": ("{}", None, ("succeeded", 0, "logged 7", None)),
    "panic.wasm": ("{}", None, ("trapped", None, None, None)),
    "sleeper.wasm": ("{}", Limits(fuel=5_000_000), ("timed_out", None, None, "cpu")),
    "nap.wasm": ('{"s":0}', None, ("succeeded", 0, "slept 0 s", None)),
    "memhog.wasm": ("{}", Limits(memory_mb=4), ("limit_exceeded", None, None, "memory")),
    "envecho.wasm": ("{}", None, ("succeeded", 0, "", None)),
}


@pytest.mark.parametrize("name", sorted(OTHERS))
def test_every_other_example_gives_its_documented_outcome(rt, name):
    payload, limits, (status, code, result, limit) = OTHERS[name]
    out = rt.run((WASM_EXAMPLES / name).read_bytes(), payload, limits=limits)
    assert (out.status.value, out.code, out.result, out.limit) == (status, code, result, limit), out.to_dict()
    if name == "log.wasm":
        assert [r.level for r in out.logs] == list(range(7))
    if name == "panic.wasm":
        assert out.stdout.startswith("panic: something bad happened")


def test_every_example_is_run_by_a_test_and_named_in_the_docs():
    wasm = {p.name for p in WASM_EXAMPLES.glob("*.wasm")}
    assert wasm <= set(OTHERS) | set(GREET_MODULES), "an example module has no test here"
    doc = DOC.read_text()
    sources = [p.name for p in WASM_EXAMPLES.iterdir() if p.suffix in (".wat", ".c", ".rs", ".go")]
    for src in sources:
        built = (WASM_EXAMPLES / src).with_suffix(".wasm").exists()
        assert built or src in NOT_BUILT, f"{src} has no committed module"
    for name in ("greet.c", "greet_rust.rs", "greet_rust_wasi.rs", "greet_tinygo.go", "echo.wat",
                 "echo_tinygo.wat", "examples/python/greet.py"):
        assert name in doc, f"docs/jobicolets.md does not show {name}"
    # the document's step list names every export the host calls
    for export in ("memory", "_start", "_initialize", "ver", "init", "malloc", "free"):
        assert re.search(rf"`{export}`", doc), export
