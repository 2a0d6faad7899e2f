"""jobico_runtime: the pooling allocator changes cost, never which modules run or how.

Modules the pool's slots refuse run on the on-demand engine; runs that find every slot taken
run there too; limits and outcomes are the same as without a pool (``pool_instances=0``).
"""
import resource
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import wasmtime

from jobico_core.limits import Limits
from jobico_runtime import CancelToken, Outcome, Runtime, Status
from tests.guests import BUMP_ALLOCATOR
from tests.waiting import wait_until

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "jobicolets"


def example(name: str) -> bytes:
    return (EXAMPLES / f"{name}.wasm").read_bytes()


def echo_with(extra: str) -> bytes:
    """An echo jobicolet with ``extra`` declarations (a second memory, a large table, ...)."""
    return bytes(wasmtime.wat2wasm(f"""
(module
  {BUMP_ALLOCATOR}
  {extra}
  (func (export "event") (param $r i32) (param $in i32) (param $n i32)
    (i64.store (local.get $r) (i64.const 0))
    (i64.store offset=8 (local.get $r)
      (i64.or (i64.shl (i64.extend_i32_u (local.get $in)) (i64.const 32)) (i64.extend_i32_u (local.get $n))))))
"""))


TWO_MEMORIES = echo_with('(memory $second 2) (data (memory $second) (i32.const 0) "x")')
BIG_TABLE = echo_with("(table 100000 funcref)")   # the pool's slots hold 20,000 elements


@pytest.mark.parametrize("wasm", [TWO_MEMORIES, BIG_TABLE], ids=["two-memories", "big-table"])
def test_a_module_the_pool_refuses_runs_on_demand_as_before(wasm):
    pooled, on_demand = Runtime(), Runtime(pool_instances=0)
    cm = pooled.load(wasm)
    assert not cm.pooled and pooled.stats["pool_refused"] == 1
    for rt, mod in ((pooled, cm), (on_demand, wasm)):
        out = rt.run(mod, b'{"x":1}')
        assert (out.status, out.code, out.result) == (Status.SUCCEEDED, 0, '{"x":1}'), out


def test_a_module_the_pool_holds_runs_pooled_with_the_same_outcomes():
    pooled, on_demand = Runtime(), Runtime(pool_instances=0)
    cm = pooled.load(example("echo"))
    assert cm.pooled and not on_demand.load(example("echo")).pooled
    for name, payload, limits in (("echo", b'{"a":1}', None), ("memhog", b"{}", Limits(memory_mb=8)),
                                  ("sleeper", b"{}", Limits(fuel=2_000_000)), ("panic", b"{}", None)):
        a, b = pooled.run(example(name), payload, limits=limits), on_demand.run(example(name), payload, limits=limits)
        assert (a.status, a.code, a.result, a.limit, a.message) == (b.status, b.code, b.result, b.limit, b.message)
    assert pooled.stats["pool_full"] == 0


def test_runs_beyond_the_pools_slots_run_on_demand():
    rt = Runtime(pool_instances=2)
    sleeper = rt.load(example("sleeper"))
    assert sleeper.pooled
    n = 6
    tokens = [CancelToken() for _ in range(n)]
    outcomes: dict[int, Outcome] = {}
    limits = Limits(timeout_ms=60_000, fuel=10_000_000_000_000)

    def run(i: int) -> None:
        outcomes[i] = rt.run(sleeper, b"{}", limits=limits, cancel=tokens[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    try:
        # every run in a store at once, the ones beyond the two slots on the on-demand engine
        wait_until(lambda: rt.stats["pool_full"] == n - 2 and rt.ticker.active == n, timeout=60,
                   what="six concurrent runs, four of them beyond the pool")
    finally:
        for tok in tokens:
            tok.cancel("test over")
        for t in threads:
            t.join(timeout=60)
    assert all(not t.is_alive() for t in threads)
    assert [outcomes[i].status for i in range(n)] == [Status.CANCELLED] * n
    # the slots are free again: pooled runs, none spilled
    for _ in range(5):
        out = rt.run(example("echo"), b'{"b":2}')
        assert out.status is Status.SUCCEEDED and out.result == '{"b":2}'
    assert rt.stats["pool_full"] == n - 2


# returns the 8 bytes at 70000 (in the slot's resident part) and at 100, then its `free` (called by
# the host after the result was read) writes a secret over both: the next event must see zeros
LEAKER = bytes(wasmtime.wat2wasm("""
(module
  (memory (export "memory") 2)
  (func (export "malloc") (param i32) (result i32) (i32.const 4096))
  (func (export "free") (param i32)
    (i64.store (i32.const 70000) (i64.const 0x2121544552434553))
    (i64.store (i32.const 100) (i64.const 0x2121544552434553)))
  (func (export "event") (param $r i32) (param i32 i32)
    (i64.store (i32.const 70008) (i64.load (i32.const 100)))
    (i64.store (local.get $r) (i64.const 0))
    (i64.store offset=8 (local.get $r) (i64.or (i64.shl (i64.const 70000) (i64.const 32)) (i64.const 16)))))
"""))


def test_a_pool_slot_reused_by_the_next_event_starts_zeroed():
    rt = Runtime(pool_instances=1)    # one slot: every event reuses it
    cm = rt.load(LEAKER)
    assert cm.pooled
    for _ in range(5):
        out = rt.run(cm, b"{}")
        assert out.status is Status.SUCCEEDED and out.result == "\x00" * 16, out
    assert rt.stats["pool_full"] == 0


def test_a_pool_that_does_not_fit_the_address_space_limit_is_not_asked_for():
    """wasmtime aborts the process when it cannot reserve a pool: under an RLIMIT_AS too small for
    the pool (but ample for on-demand instances) the runtime runs without it."""
    code = ("from jobico_runtime import Runtime\n"
            "rt = Runtime()\n"
            f"out = rt.run(open({str(EXAMPLES / 'echo.wasm')!r}, 'rb').read(), b'{{\"z\":3}}')\n"
            "print(rt.pool_instances, out.status.value, out.result)\n")
    limit = 64 << 30

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          preexec_fn=cap, cwd=str(EXAMPLES.parents[1]))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["0", "succeeded", '{"z":3}'], proc.stdout
