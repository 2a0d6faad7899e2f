;; log: calls env.log once per level 0..6 (debug, info, warn, error, fatal,
;; panic, no level) and returns "logged 7".  fatal/panic do not abort.
(module
  (import "env" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 100) "debug message")      ;; 13
  (data (i32.const 120) "info message")       ;; 12
  (data (i32.const 140) "warn message")       ;; 12
  (data (i32.const 160) "error message")      ;; 13
  (data (i32.const 180) "fatal message")      ;; 13
  (data (i32.const 200) "panic message")      ;; 13
  (data (i32.const 220) "no level message")   ;; 16
  (data (i32.const 300) "logged 7")           ;; 8
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.and (i32.add (i32.add (local.get $p) (local.get $n)) (i32.const 7)) (i32.const -8)))
    (local.get $p))
  (func (export "free") (param i32))
  (func (export "event") (param $res i32) (param $in i32) (param $len i32)
    (call $log (i32.const 0) (i32.const 100) (i32.const 13))
    (call $log (i32.const 1) (i32.const 120) (i32.const 12))
    (call $log (i32.const 2) (i32.const 140) (i32.const 12))
    (call $log (i32.const 3) (i32.const 160) (i32.const 13))
    (call $log (i32.const 4) (i32.const 180) (i32.const 13))
    (call $log (i32.const 5) (i32.const 200) (i32.const 13))
    (call $log (i32.const 6) (i32.const 220) (i32.const 16))
    (i64.store (local.get $res) (i64.const 0))
    (i64.store offset=8 (local.get $res) (i64.const 0x12C00000008))))
