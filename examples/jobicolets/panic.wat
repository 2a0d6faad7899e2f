;; panic (TinyGo style): prints "panic: something bad happened" to stdout
;; with fd_write, then executes `unreachable`, like a TinyGo panic.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 0))
  (data (i32.const 64) "panic: something bad happened\n")   ;; 30 bytes
  (func (export "_start") (global.set $heap (i32.const 4096)))
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.and (i32.add (i32.add (local.get $p) (local.get $n)) (i32.const 7)) (i32.const -8)))
    (local.get $p))
  (func (export "free") (param i32))
  (func (export "event") (param $res i32) (param $in i32) (param $len i32)
    ;; iovec at 16: {buf=64, len=30}; nwritten at 32
    (i32.store (i32.const 16) (i32.const 64))
    (i32.store (i32.const 20) (i32.const 30))
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 32)))
    unreachable))
