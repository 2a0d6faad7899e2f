"""jobico_runtime: threads, fork, compile caches (memory and disk)."""
import multiprocessing
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import wasmtime

from jobico_core.limits import Limits
from jobico_runtime import InvalidModule, Runtime, Status, get_runtime
from tests.guests import BUMP_ALLOCATOR

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "jobicolets"


def example(name: str) -> bytes:
    return (EXAMPLES / f"{name}.wasm").read_bytes()


# prints its input to stdout, logs it, and returns it: isolation of all three channels
PRINTER = wasmtime.wat2wasm(f"""
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "env" "log" (func $log (param i32 i32 i32)))
{BUMP_ALLOCATOR}  (func (export "event") (param $r i32) (param $in i32) (param $n i32)
    (local $i i32)
    (i32.store (i32.const 16) (local.get $in)) (i32.store (i32.const 20) (local.get $n))
    ;; many small writes and calls so executions interleave
    (loop $l
      (drop (call $write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 32)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 20))))
    (call $log (i32.const 1) (local.get $in) (local.get $n))
    (i64.store (local.get $r) (i64.const 0))
    (i64.store offset=8 (local.get $r)
      (i64.or (i64.shl (i64.extend_i32_u (local.get $in)) (i64.const 32)) (i64.extend_i32_u (local.get $n))))))
""")


def test_many_events_from_threads_share_one_runtime():
    rt = Runtime()
    mods = {"echo": example("echo"), "tinygo": example("echo_tinygo"), "printer": PRINTER,
            "greet": example("greet"), "error": example("error")}

    def one(i: int):
        kind = list(mods)[i % len(mods)]
        payload = f'{{"i":{i},"name":"n{i}"}}'.encode()
        return kind, i, payload, rt.run(mods[kind], payload)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(200)))
    for kind, i, payload, out in results:
        if kind == "greet":
            assert out.result == f"Hello, n{i}!" and out.status is Status.SUCCEEDED
        elif kind == "error":
            assert out.status is Status.FAILED and out.code == 3
        else:
            assert out.status is Status.SUCCEEDED and out.result == payload.decode(), (kind, out)
        if kind == "printer":
            assert out.stdout == payload.decode() * 20
            assert [r.message for r in out.logs] == [payload.decode()]
        elif kind != "greet":
            assert out.stdout == "" and out.logs == []


def test_timeouts_and_successes_mixed_in_threads():
    rt = Runtime()
    sleeper, echo = example("sleeper"), example("echo")

    def one(i: int):
        if i % 4 == 0:
            return "sleep", rt.run(sleeper, b"{}", limits=Limits(timeout_ms=100, fuel=10_000_000_000))
        return "echo", rt.run(echo, str(i).encode())

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(one, range(24)))
    for kind, out in results:
        if kind == "sleep":
            assert (out.status, out.limit) == (Status.TIMED_OUT, "wall")
        else:
            assert out.status is Status.SUCCEEDED


def test_concurrent_first_use_compiles_once():
    rt = Runtime()
    wasm = example("greet")
    barrier = threading.Barrier(8)

    def load(_):
        barrier.wait()
        return rt.load(wasm)

    with ThreadPoolExecutor(max_workers=8) as pool:
        compiled = list(pool.map(load, range(8)))
    assert rt.stats["compiled"] == 1
    assert all(c is compiled[0] for c in compiled)


def test_memory_cache_is_bounded_lru():
    rt = Runtime(memory_cache_entries=2)
    a, b, c = example("echo"), example("error"), example("log")
    ca = rt.load(a)
    rt.load(b)
    assert rt.load(a) is ca          # hit, and a becomes most recent
    rt.load(c)                       # evicts b
    assert len(rt._modules) == 2
    assert rt.load(a) is ca
    before = rt.stats["compiled"]
    rt.load(b)
    assert rt.stats["compiled"] == before + 1


def test_load_with_given_sha_and_mismatch():
    import hashlib
    rt = Runtime()
    wasm = example("echo")
    sha = hashlib.sha256(wasm).hexdigest()
    cm = rt.load(wasm, sha256=sha)
    assert cm.sha256 == sha and cm.info.ver
    with pytest.raises(ValueError, match="sha256 mismatch"):
        rt.load(example("error"), sha256="0" * 64)


def test_run_accepts_compiled_module():
    rt = Runtime()
    cm = rt.load(example("echo"))
    assert rt.run(cm, b"abc").result == "abc"
    # a different stack size reuses the compiled code in another engine (no recompilation)
    assert rt.run(cm, b"abc", limits=Limits(stack_kb=256)).result == "abc"
    assert rt.stats["compiled"] == 1


def test_load_raises_invalid_module():
    with pytest.raises(InvalidModule, match="not a WebAssembly module"):
        Runtime().load(b"\x00\x01")


def test_disk_cache_roundtrip(tmp_path):
    cache = tmp_path / "wasm-cache"
    wasm = example("greet")
    rt1 = Runtime(cache_dir=cache)
    rt1.load(wasm)
    files = list(cache.glob("*.cwasm"))
    assert rt1.stats["compiled"] == 1 and len(files) == 1
    assert files[0].name.startswith(rt1.load(wasm).sha256)
    assert oct(cache.stat().st_mode & 0o777) == oct(0o700)
    rt2 = Runtime(cache_dir=cache)
    cm = rt2.load(wasm)
    assert rt2.stats == {**rt2.stats, "compiled": 0, "disk_loaded": 1}
    assert rt2.run(cm, b'{"name":"disk"}').result == "Hello, disk!"
    assert not list(cache.glob(".tmp-*"))


def test_corrupt_disk_artifact_is_replaced(tmp_path):
    cache = tmp_path / "c"
    wasm = example("echo")
    Runtime(cache_dir=cache).load(wasm)
    (artifact,) = cache.glob("*.cwasm")
    artifact.write_bytes(b"garbage that is not a wasmtime artifact")
    rt = Runtime(cache_dir=cache)
    assert rt.run(wasm, b"ok").result == "ok"
    assert rt.stats["compiled"] == 1
    assert artifact.read_bytes()[:4] != b"garb"


def test_shared_writable_cache_dir_is_not_used(tmp_path):
    cache = tmp_path / "shared"
    cache.mkdir()
    cache.chmod(0o777)
    rt = Runtime(cache_dir=cache)
    assert rt.run(example("echo"), b"x").result == "x"
    assert list(cache.iterdir()) == []


def _child(conn, rt):
    try:
        out = rt.run(example("sleeper"), b"{}", limits=Limits(timeout_ms=200, fuel=10_000_000_000))
        echo = rt.run(example("echo"), b"child")
        conn.send((out.status.value, out.limit, echo.result, get_runtime() is get_runtime(), os.getpid()))
    except BaseException as exc:  # pragma: no cover - reported to the parent
        conn.send(("error", repr(exc), None, None, None))
    finally:
        conn.close()


def test_runtime_used_before_fork_works_in_child():
    rt = get_runtime()
    # warm the parent: engines, ticker thread and caches exist before the fork
    assert rt.run(example("sleeper"), b"{}", limits=Limits(timeout_ms=50, fuel=10_000_000_000)).limit == "wall"
    assert rt.run(example("echo"), b"parent").result == "parent"
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child, args=(child, rt))
    p.start()
    child.close()
    try:
        assert parent.poll(30), "child did not report: deadlines do not fire after fork"
        status, limit, echo, singleton, pid = parent.recv()
    finally:
        p.join(10)
        if p.is_alive():  # pragma: no cover
            p.kill()
    assert (status, limit, echo) == ("timed_out", "wall", "child")
    assert singleton and pid != os.getpid()
    assert get_runtime() is rt   # the parent's singleton is untouched


def test_compiled_module_from_another_runtime_is_rebound():
    other = Runtime().load(example("echo"))
    rt = Runtime()
    out = rt.run(other, b"moved")
    assert out.status is Status.SUCCEEDED and out.result == "moved"
    assert rt.stats["compiled"] == 0
