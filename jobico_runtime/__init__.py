"""The jobicolet runtime: a wasmtime host of the jobicolet ABI (no Celery, no DB).

    from jobico_runtime import Runtime, Outcome, Status, LogRecord, CancelToken
    rt = Runtime(cache_dir=None, memory_cache_entries=64)
    out = rt.run(module_bytes, b'{"name":"x"}', main="event", limits=Limits())

Python jobicolets: ``rt.load(source, language="python", name="x.py")`` gives a
:class:`PythonModule` that ``rt.run`` runs in the sealed CPython (python.py,
interpreter.py; docs/python.md).
"""
from jobico_core.abi import InvalidModule, ModuleInfo, inspect_module
from jobico_core.limits import DEFAULT_LIMITS, MAX_LIMITS, Limits

from .outcome import CancelToken, LogRecord, Outcome, Status
from .python import PythonModule
from .sandbox import ENGINE_CONFIG, TICK_S, WASMTIME_VERSION
from .wasm import CompiledModule, Runtime, get_runtime

__all__ = [
    "Runtime", "Outcome", "Status", "LogRecord", "CancelToken", "InvalidModule", "Limits",
    "CompiledModule", "ModuleInfo", "inspect_module", "get_runtime", "DEFAULT_LIMITS", "MAX_LIMITS",
    "ENGINE_CONFIG", "TICK_S", "WASMTIME_VERSION", "PythonModule",
]
