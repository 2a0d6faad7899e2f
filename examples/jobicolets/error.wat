;; error: always fails with code 3 and a message (no imports at all).
(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 256) "invalid order: total must be positive")
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.and (i32.add (i32.add (local.get $p) (local.get $n)) (i32.const 7)) (i32.const -8)))
    (local.get $p))
  (func (export "free") (param i32))
  (func (export "event") (param $res i32) (param $in i32) (param $len i32)
    (i64.store (local.get $res) (i64.const 3))
    ;; address 256 << 32 | 37 ; address 0 would mean "no string to free"
    (i64.store offset=8 (local.get $res) (i64.const 0x10000000025))))
