;; sleeper: loops forever in `event`.  Only the host's CPU budget (fuel) or
;; wall-clock deadline (epoch interruption) stops it: timed_out.
(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (global $spins (mut i64) (i64.const 0))
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (local.get $p) (i32.add (local.get $n) (i32.const 8))))
    (local.get $p))
  (func (export "free") (param i32))
  (func (export "event") (param $res i32) (param $in i32) (param $len i32)
    (loop $forever
      (global.set $spins (i64.add (global.get $spins) (i64.const 1)))
      (br $forever))))
