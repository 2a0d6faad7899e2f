"""The CPU bound holds on both compilers: fuel on Cranelift's code, CPU time on Winch's (which
cannot meter fuel: the Python interpreter's quick artifact). A spinning WAT module on each."""
from __future__ import annotations

import time

import pytest
import wasmtime

from jobico_core.limits import Limits
from jobico_runtime import Status, capi
from jobico_runtime.sandbox import (
    FUEL_PER_CPU_S,
    Execution,
    Ticker,
    classify,
    engine_config,
    make_engine,
    run_in_store,
)

SPIN = '(module (func (export "spin") (loop $l (br $l))))'
#: counts to 1000 and returns it
COUNT = '(module (func (export "count") (result i32) (local i32) (loop $l (local.set 0 (i32.add (local.get 0) ' \
        '(i32.const 1))) (br_if $l (i32.lt_u (local.get 0) (i32.const 1000)))) (local.get 0)))'


def _run(compiler: str, wat: str, export: bytes, limits: Limits):
    engine = make_engine(512, compiler=compiler)
    ticker = Ticker()
    ticker.add(engine)
    pre = wasmtime.Linker(engine).instantiate_pre(wasmtime.Module(engine, wat))
    exe = Execution(limits, None, time.monotonic())
    results = {}

    def body(ctx):
        inst = capi.instantiate(ctx, pre)
        func = capi.instance_export(ctx, inst, export, capi.EXTERN_FUNC)
        try:
            results["value"] = capi.GuestCall(ctx)(func, 1 if export == b"count" else 0)
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            return classify(exc, exe, ctx, None, "main")
        return None

    c0 = time.thread_time()
    out = run_in_store(engine, ticker, exe, None, body)
    return out, time.thread_time() - c0, results


@pytest.mark.parametrize("compiler", ["speed", "winch"])
def test_a_spinning_guest_is_stopped_by_its_cpu_budget_on_either_compiler(compiler):
    fuel = FUEL_PER_CPU_S // 4          # a quarter of a second of CPU on Winch
    out, cpu_s, _ = _run(compiler, SPIN, b"spin", Limits(fuel=fuel, timeout_ms=30_000))
    assert out is not None and (out.status, out.limit) == (Status.TIMED_OUT, "cpu"), out
    assert f"CPU budget of {fuel} fuel" in out.message
    if compiler == "winch":   # the bound is CPU time: spent (one epoch tick of slack), not much more
        assert "s of CPU time" in out.message and 0.25 <= cpu_s < 5, cpu_s


@pytest.mark.parametrize("compiler", ["speed", "winch"])
def test_the_wall_deadline_still_wins_over_a_larger_cpu_budget(compiler):
    out, _, _ = _run(compiler, SPIN, b"spin", Limits(fuel=10_000_000_000, timeout_ms=200))
    assert out is not None and (out.status, out.limit) == (Status.TIMED_OUT, "wall"), out


def test_winch_code_runs_to_its_result_within_the_budget():
    out, _, results = _run("winch", COUNT, b"count", Limits())
    assert out is None and results["value"] == 1000


def test_the_two_compilers_never_share_compiled_code():
    assert engine_config("winch") != engine_config("speed") and "fuel=0" in engine_config("winch")
    with pytest.raises(ValueError, match="unknown compiler 'fast'"):
        make_engine(512, compiler="fast")
