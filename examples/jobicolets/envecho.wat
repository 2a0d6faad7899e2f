;; envecho: reads its whole WASI environment (environ_sizes_get + environ_get) and
;; returns it as "NAME=value;NAME=value;" -- also logging it (env.log, info) and
;; writing it to stdout (fd_write). Used by the environment/secret tests: a guest that
;; leaks every variable it is given, so redaction can be checked on all three channels.
(module
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "env" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 8)
  (global $heap (mut i32) (i32.const 458752))   ;; 0x70000: the environ buffer is 4096..0x70000
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.and (i32.add (i32.add (local.get $p) (local.get $n)) (i32.const 7)) (i32.const -8)))
    (local.get $p))
  (func (export "free") (param i32))
  (func (export "event") (param $res i32) (param $in i32) (param $len i32)
    (local $size i32) (local $i i32)
    (drop (call $sizes (i32.const 0) (i32.const 4)))          ;; count at 0, bytes at 4
    (local.set $size (i32.load (i32.const 4)))
    (drop (call $get (i32.const 1024) (i32.const 4096)))      ;; pointers at 1024, strings at 4096
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $size)))
        (if (i32.eqz (i32.load8_u (i32.add (i32.const 4096) (local.get $i))))
          (then (i32.store8 (i32.add (i32.const 4096) (local.get $i)) (i32.const 59))))  ;; NUL -> ';'
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (call $log (i32.const 1) (i32.const 4096) (local.get $size))
    (i32.store (i32.const 16) (i32.const 4096))
    (i32.store (i32.const 20) (local.get $size))
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 32)))
    (i64.store (local.get $res) (i64.const 0))
    (i64.store offset=8 (local.get $res)
      (i64.or (i64.shl (i64.const 4096) (i64.const 32)) (i64.extend_i32_u (local.get $size))))))
