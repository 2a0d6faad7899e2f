;; nap: sleeps, then succeeds with "slept N s". N is the first digit in the event's
;; JSON ({"seconds": 3} sleeps 3 s; no digit: 2 s). The sleep is a WASI poll_oneoff on a
;; relative clock, which the host bounds by the execution's deadline and wakes on cancel:
;; a stand-in for a job that takes a while (a deployment, a backup) in the locks and
;; cancel examples.
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 256) "slept 2 s")
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.and (i32.add (i32.add (local.get $p) (local.get $n)) (i32.const 7)) (i32.const -8)))
    (local.get $p))
  (func (export "free") (param i32))
  (func (export "event") (param $res i32) (param $in i32) (param $len i32)
    (local $i i32) (local $c i32) (local $secs i64)
    (local.set $secs (i64.const 2))
    (block $found
      (loop $scan
        (br_if $found (i32.ge_u (local.get $i) (local.get $len)))
        (local.set $c (i32.load8_u (i32.add (local.get $in) (local.get $i))))
        (if (i32.and (i32.ge_u (local.get $c) (i32.const 48)) (i32.le_u (local.get $c) (i32.const 57)))
          (then
            (local.set $secs (i64.extend_i32_u (i32.sub (local.get $c) (i32.const 48))))
            (i32.store8 (i32.const 262) (local.get $c))
            (br $found)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $scan)))
    ;; one clock subscription at 512: userdata 0, tag 0 (clock), id 1 (monotonic),
    ;; timeout in ns, precision 0, flags 0 (relative); the event goes to 576, the count to 640
    (i64.store (i32.const 512) (i64.const 0))
    (i32.store8 (i32.const 520) (i32.const 0))
    (i32.store (i32.const 528) (i32.const 1))
    (i64.store (i32.const 536) (i64.mul (local.get $secs) (i64.const 1000000000)))
    (i64.store (i32.const 544) (i64.const 0))
    (i32.store16 (i32.const 552) (i32.const 0))
    (drop (call $poll (i32.const 512) (i32.const 576) (i32.const 1) (i32.const 640)))
    (i64.store (local.get $res) (i64.const 0))
    ;; address 256 << 32 | 9
    (i64.store offset=8 (local.get $res) (i64.const 0x10000000009))))
