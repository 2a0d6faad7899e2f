;; echo_tinygo (TinyGo style): returns the event unchanged, code 0.
;; Mimics a module built by TinyGo for WASI:
;;  * imports `wasi_snapshot_preview1.fd_write` and `proc_exit`;
;;  * `_start` sets up the heap and ends with `proc_exit(0)` (a normal end);
;;  * no `ver`: the host uses the one-argument `free(ptr)`;
;;  * `init` registers the handler; `event` traps if `_start`/`init` did not run.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 0))
  (global $ready (mut i32) (i32.const 0))
  (func (export "_start")
    (global.set $heap (i32.const 1024))
    (call $proc_exit (i32.const 0)))
  (func (export "init")
    (if (i32.eqz (global.get $heap)) (then unreachable))   ;; _start must run first
    (global.set $ready (i32.const 1)))
  (func $malloc (export "malloc") (param $n i32) (result i32)
    (local $p i32) (local $end i32)
    (if (i32.eqz (global.get $heap)) (then unreachable))
    (local.set $p (global.get $heap))
    (local.set $end (i32.and (i32.add (i32.add (local.get $p) (local.get $n)) (i32.const 7)) (i32.const -8)))
    (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
      (then (if (i32.eq (memory.grow (i32.sub (i32.shr_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 16)) (memory.size)))
                        (i32.const -1))
              (then unreachable))))
    (global.set $heap (local.get $end))
    (local.get $p))
  (func (export "free") (param i32))
  (func (export "event") (param $res i32) (param $in i32) (param $len i32)
    (local $out i32)
    (if (i32.eqz (global.get $ready)) (then unreachable))
    (local.set $out (call $malloc (local.get $len)))
    (memory.copy (local.get $out) (local.get $in) (local.get $len))
    (i64.store (local.get $res) (i64.const 0))
    (i64.store offset=8 (local.get $res)
      (i64.or (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32)) (i64.extend_i32_u (local.get $len))))))
