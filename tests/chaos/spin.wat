;; spin: busy-loops (payload length x 100000) iterations, then succeeds with code 0
;; and no result. The chaos tests size the payload so one execution takes ~1-2 s.
(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.and (i32.add (i32.add (local.get $p) (local.get $n)) (i32.const 15)) (i32.const -16)))
    (local.get $p))
  (func (export "free") (param i32))
  (func (export "event") (param $res i32) (param $in i32) (param $len i32)
    (local $i i64)
    (local $n i64)
    (local.set $n (i64.mul (i64.extend_i32_u (local.get $len)) (i64.const 100000)))
    (block $done
      (loop $spin
        (br_if $done (i64.ge_u (local.get $i) (local.get $n)))
        (local.set $i (i64.add (local.get $i) (i64.const 1)))
        (br $spin)))
    (i64.store (local.get $res) (i64.const 0))
    (i64.store offset=8 (local.get $res) (i64.const 0))))
