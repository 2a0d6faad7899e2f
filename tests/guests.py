"""Small hand-written guests (WAT) shared by tests of every kind: the bump allocator they export
and a guest whose every event returns the same bytes."""
from __future__ import annotations

import wasmtime

#: linear memory, ``malloc`` (a bump allocator from 4096, 8-byte aligned) and a ``free`` that keeps
#: everything: paste into a module after its imports
BUMP_ALLOCATOR = """
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.and (i32.add (i32.add (local.get $p) (local.get $n)) (i32.const 7)) (i32.const -8)))
    (local.get $p))
  (func (export "free") (param i32))
"""


def constant_guest(result: bytes) -> bytes:
    """A module whose every event succeeds with ``result`` (code 0; a data segment at 256, any
    bytes, escaped for the text format)."""
    data = "".join(f"\\{b:02x}" for b in result)
    return bytes(wasmtime.wat2wasm(f"""(module {BUMP_ALLOCATOR}
  (data (i32.const 256) "{data}")
  (func (export "event") (param $res i32) (param $in i32) (param $len i32)
    (i64.store (local.get $res) (i64.const 0))
    (i64.store offset=8 (local.get $res) (i64.const {(256 << 32) | len(result)}))))
"""))
