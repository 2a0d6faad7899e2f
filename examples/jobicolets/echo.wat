;; echo (Rust-SDK style): returns the event unchanged, code 0.
;; Mimics the Jobico Rust SDK built for wasm32-unknown-unknown:
;;  * imports only `env.log` (no WASI), exports `ver` returning 1, so the host
;;    uses the size-taking `free(ptr, size)`;
;;  * `malloc` returns the same small address (1) for every call: the input
;;    and the result struct overlap;
;;  * `free` traps on those small addresses (a host must ignore a trap in free
;;    after a successful main call).
(module
  (import "env" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 4)
  (global $ready (mut i32) (i32.const 0))
  (func (export "ver") (result i32) (i32.const 1))
  (func (export "init") (global.set $ready (i32.const 1)))
  (func (export "malloc") (param i32) (result i32) (i32.const 1))
  (func (export "free") (param $p i32) (param $n i32)
    (if (i32.lt_u (local.get $p) (i32.const 65536)) (then unreachable)))
  ;; the result string lives at 64 KiB (grown on demand)
  (func (export "event") (param $res i32) (param $in i32) (param $len i32)
    (local $pages i32)
    (if (i32.eqz (global.get $ready)) (then unreachable))   ;; init was not called
    (local.set $pages (i32.shr_u (i32.add (i32.add (i32.const 65536) (local.get $len)) (i32.const 65535)) (i32.const 16)))
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then (if (i32.eq (memory.grow (i32.sub (local.get $pages) (memory.size))) (i32.const -1)) (then unreachable))))
    (memory.copy (i32.const 65536) (local.get $in) (local.get $len))
    (i64.store (local.get $res) (i64.const 0))
    (i64.store offset=8 (local.get $res)
      (i64.or (i64.const 0x1000000000000) (i64.extend_i32_u (local.get $len))))))
