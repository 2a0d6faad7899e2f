"""The one boundary to wasmtime's C API.

wasmtime-py's public classes cost more than the work on the hot path and keep process-global
state (an exception slot, slabs) that threads would share, so the runtime calls the C API
through wasmtime-py's private ctypes bindings (``wasmtime._bindings``, ``wasmtime._ffi``) and
its private constructors (``WasmtimeError._from_ptr``, ``Trap._from_ptr``,
``WasiConfig._consume``). This module is the only one that touches them: a wasmtime upgrade
that moves them breaks here and nowhere else (wasmtime is pinned, requirements.txt).

It also holds the two mechanisms every host function shares: :func:`host_function` (a Python
function as a raw wasmtime callback, with any host exception turned into a trap) and
:func:`caller_memory` (the calling instance's linear memory).
"""
from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

import wasmtime
from wasmtime import Trap, WasmtimeError, _ffi
from wasmtime import _bindings as ffi

EPOCH_CALLBACK_T = ffi._wasmtime_store_epoch_deadline_callback.argtypes[1]
OUTPUT_CALLBACK_T = ffi._wasi_config_set_stdout_custom.argtypes[1]
FINALIZER_T = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
NULL_FINALIZER = ctypes.cast(0, FINALIZER_T)
EXTERN_FUNC = ffi.WASMTIME_EXTERN_FUNC.value if hasattr(ffi, "WASMTIME_EXTERN_FUNC") else 0
EXTERN_MEMORY = ffi.WASMTIME_EXTERN_MEMORY.value if hasattr(ffi, "WASMTIME_EXTERN_MEMORY") else 3
VAL_RAW = ffi.wasmtime_val_raw_t
TRAP_PTR = ctypes.POINTER(ffi.wasm_trap_t)
I32 = _ffi.WASMTIME_I32.value
U32 = 0xFFFFFFFF
Extern = ffi.wasmtime_extern_t
Instance = ffi.wasmtime_instance_t

# raw C entry points (no Python wrapper frame); memory_data returns the address as an int
func_call = ffi._wasmtime_func_call_unchecked
pre_instantiate = ffi._wasmtime_instance_pre_instantiate
export_get = ffi._wasmtime_instance_export_get
store_new = ffi._wasmtime_store_new
store_context = ffi._wasmtime_store_context
store_delete = ffi._wasmtime_store_delete
store_limiter = ffi._wasmtime_store_limiter
set_fuel = ffi._wasmtime_context_set_fuel
set_epoch_deadline = ffi._wasmtime_context_set_epoch_deadline
set_epoch_callback = ffi._wasmtime_store_epoch_deadline_callback
mem_size = ffi._wasmtime_memory_data_size
mem_data = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.POINTER(ffi.wasmtime_context_t),
                            ctypes.POINTER(ffi.wasmtime_memory_t))(("wasmtime_memory_data", ffi.dll))

HostImpl = Callable[[Any, Any, Any], int]   # (caller, args, results) -> 0 or an owned trap pointer


def use_winch(cfg: wasmtime.Config) -> None:
    """Compile with wasmtime's baseline compiler, Winch (wasmtime-py's ``Config.strategy`` accepts
    only "auto" and "cranelift"; the C API's ``WASMTIME_STRATEGY_WINCH`` is 2)."""
    ffi.wasmtime_config_strategy_set(cfg.ptr(), 2)


def use_pooling(cfg: wasmtime.Config, instances: int, max_memory_bytes: int, keep_resident_bytes: int) -> None:
    """wasmtime's pooling instance allocator (wasmtime-py has no wrapper): ``instances`` slots,
    each with one linear memory of up to ``max_memory_bytes`` and one table. Modules that need
    more (two memories, a larger table, ...) are refused when compiled or loaded into this engine.
    The first ``keep_resident_bytes`` of a freed slot's memory and table are zeroed in place
    rather than returned to the kernel (no page faults for the next instance's first pages)."""
    pc = ffi.wasmtime_pooling_allocation_config_new()
    try:
        ffi.wasmtime_pooling_allocation_config_total_core_instances_set(pc, instances)
        ffi.wasmtime_pooling_allocation_config_total_memories_set(pc, instances)
        ffi.wasmtime_pooling_allocation_config_total_tables_set(pc, instances)
        ffi.wasmtime_pooling_allocation_config_max_memory_size_set(pc, max_memory_bytes)
        # the stack pool holds async fibers' stacks, which these engines never use (wasmtime-py
        # calls synchronously); its default thousand slots cost 2 ms per engine to set up
        ffi.wasmtime_pooling_allocation_config_total_stacks_set(pc, 1)
        ffi.wasmtime_pooling_allocation_config_linear_memory_keep_resident_set(pc, keep_resident_bytes)
        ffi.wasmtime_pooling_allocation_config_table_keep_resident_set(pc, keep_resident_bytes)
        ffi.wasmtime_pooling_allocation_strategy_set(cfg.ptr(), pc)   # copies the configuration
    finally:
        ffi.wasmtime_pooling_allocation_config_delete(pc)


def pool_exhausted(exc: WasmtimeError) -> bool:
    """The error of an instantiation that found every slot of the pooling allocator taken."""
    return "maximum concurrent limit of" in str(exc)


def new_trap(message: str) -> int:
    b = message.encode()
    return ctypes.cast(ffi.wasmtime_trap_new(b, len(b)), ctypes.c_void_p).value or 0


def new_error(message: str) -> int:
    return ctypes.cast(ffi.wasmtime_error_new(message.encode()), ctypes.c_void_p).value or 0


def check(err: Any) -> None:
    """Raise the :class:`WasmtimeError` a C call returned, if any."""
    if err:
        raise WasmtimeError._from_ptr(err)


def error_text(err: Any) -> str:
    return str(WasmtimeError._from_ptr(err))


def raise_trap(trap: Any) -> None:
    if trap:
        raise Trap._from_ptr(trap)


def trap_address(trap: Any) -> int:
    """A trap the host hands back to wasmtime (its ownership passes with it)."""
    return ctypes.cast(trap, ctypes.c_void_p).value or 0


def host_function(name: str) -> Callable[[HostImpl], Any]:
    """``impl(caller, args, results)`` as a raw ``wasmtime_func_callback_t``: a host exception
    becomes a trap naming ``name`` (it must never cross into wasmtime)."""
    def wrap(impl: HostImpl) -> Any:
        @ffi.wasmtime_func_callback_t
        def callback(env, caller, args, nargs, results, nresults):  # noqa: ARG001 - the C signature
            try:
                return impl(caller, args, results)
            except BaseException as exc:  # a host bug must not crash the process
                return new_trap(f"host error in {name}: {exc!r}")
        return callback
    return wrap


def define_function(linker: wasmtime.Linker, module: bytes, name: bytes, params: list[wasmtime.ValType],
                    results: list[wasmtime.ValType], callback: Any) -> wasmtime.FuncType:
    """Define ``module.name`` on ``linker``; the returned type must live as long as the linker."""
    ty = wasmtime.FuncType(params, results)
    check(ffi.wasmtime_linker_define_func(linker.ptr(), module, len(module), name, len(name), ty.ptr(),
                                          callback, None, NULL_FINALIZER))
    return ty


def caller_memory(caller: Any) -> tuple[Any, Any, int] | None:
    """The calling instance's exported ``memory``: (store context, memory ref, size), or None."""
    item = Extern()
    if not ffi.wasmtime_caller_export_get(caller, b"memory", 6, ctypes.byref(item)) or item.kind != EXTERN_MEMORY:
        return None
    ctx = ffi.wasmtime_caller_context(caller)
    ref = ctypes.byref(item.of.memory)
    return ctx, ref, mem_size(ctx, ref)


def caller_function(caller: Any, name: bytes) -> Any | None:
    """The calling instance's exported function ``name``, or None."""
    item = Extern()
    if not ffi.wasmtime_caller_export_get(caller, name, len(name), ctypes.byref(item)) or item.kind != EXTERN_FUNC:
        return None
    return item.of.func


def instance_export(ctx: Any, inst: Any, name: bytes, kind: int) -> Any | None:
    """An instance's export ``name`` of ``kind`` (EXTERN_FUNC / EXTERN_MEMORY), or None."""
    item = Extern()
    if not export_get(ctx, ctypes.byref(inst), name, len(name), ctypes.byref(item)) or item.kind != kind:
        return None
    return item.of.memory if kind == EXTERN_MEMORY else item.of.func


def instantiate(ctx: Any, pre: wasmtime.InstancePre) -> Any:
    """A fresh instance of ``pre`` in the store of ``ctx``; raises WasmtimeError or Trap."""
    inst = Instance()
    trap = TRAP_PTR()
    check(pre_instantiate(pre.ptr(), ctx, ctypes.byref(inst), ctypes.byref(trap)))
    raise_trap(trap)
    return inst


def set_wasi(ctx: Any, wasi: wasmtime.WasiConfig, output: Any, run_id: int) -> None:
    """Give the store ``wasi``, its stdout and stderr going to ``output(run_id, ...)``."""
    ffi.wasi_config_set_stdout_custom(wasi.ptr(), output, run_id, NULL_FINALIZER)
    ffi.wasi_config_set_stderr_custom(wasi.ptr(), output, run_id, NULL_FINALIZER)
    check(ffi.wasmtime_context_set_wasi(ctx, wasi._consume()))


class GuestCall:
    """Calls guest functions of one store with a reused argument buffer (all ABI values are i32)."""

    __slots__ = ("ctx", "buf", "trap")

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.buf = (VAL_RAW * 4)()
        self.trap = TRAP_PTR()

    def __call__(self, func: Any, nres: int, *args: int) -> int | None:
        buf = self.buf
        n = 0
        for a in args:
            buf[n].i32 = a
            n += 1
        err = func_call(self.ctx, ctypes.byref(func), buf, n if n > nres else nres, ctypes.byref(self.trap))
        if err:
            raise WasmtimeError._from_ptr(err)
        if self.trap:
            trap = self.trap
            self.trap = TRAP_PTR()
            raise_trap(trap)
        return buf[0].i32 if nres else None

    def returns(self, func: Any, *args: int) -> bool:
        """Call ``func`` (no results) for its effect only: True when it returned, False when it
        trapped or failed, the trap or error discarded without building a Python exception."""
        buf = self.buf
        for i, a in enumerate(args):
            buf[i].i32 = a
        err = func_call(self.ctx, ctypes.byref(func), buf, len(args), ctypes.byref(self.trap))
        if err:
            ffi.wasmtime_error_delete(err)
            return False
        if self.trap:
            ffi.wasm_trap_delete(self.trap)
            self.trap = TRAP_PTR()
            return False
        return True
