"""Sandbox limits of one jobicolet execution.

Pure data (no wasmtime import): the package-YAML validator, the API and the
worker all import this module.

A :class:`Limits` holds the nine per-execution limits named in
``docs/job-definition.md`` (the ``limits:`` key of a runtime, overridable per
event).  ``DEFAULT_LIMITS`` are what an execution gets when nothing is
declared; ``MAX_LIMITS`` are the platform maxima a package may ask for.
Operators can change the maxima (settings build their own :class:`Limits`);
:func:`resolve` merges defaults, the runtime's ``limits:`` and the event's
override and refuses anything above the maxima.

How the defaults were chosen (see also docs/limits.md).  Strict multi-tenant
hosts give one invocation very little: Shopify Functions allow 11M wasm
instructions, 10 MB of linear memory, 128 kB of input and 20 kB of output;
Fastly Compute allows 50 ms of CPU and 128 MB of heap.  Those hosts run code
on a request's critical path.  Jobico runs *jobs* off a queue, so we keep
the same order of magnitude for everything a tenant can abuse to hurt
neighbours (memory, output sizes, log volume) but allow more compute:

=============  =========  =========  ==========================================
key            default    maximum    why
=============  =========  =========  ==========================================
timeout_ms     1000       30000      wall clock incl. host calls; a job, not
                                     a request, but a stuck guest must not
                                     hold a worker slot for long
fuel           200M       10000M     ~1 fuel per wasm instruction: 18x
                                     Shopify's budget, ~0.1-0.5 s of CPU
memory_mb      64         512        TinyGo/Rust guests need a few MB; Fastly
                                     gives 128 MB, Shopify 10 MB
stack_kb       512        1024       wasmtime's own default; the maximum stays
                                     well under the 8 MB native thread stack
input_kb       128        1024       Shopify's input size; the webhook's
                                     element limit never exceeds it
result_kb      64         1024       Shopify allows 20 kB; results are stored
                                     in the execution row and chained
log_records    1000       10000      env.log calls per execution
log_kb         64         1024       total bytes of log messages
stdout_kb      64         1024       WASI stdout + stderr, captured
=============  =========  =========  ==========================================

Python jobicolets (``type: 1``) run a whole CPython per event and get their own defaults,
``PYTHON_DEFAULT_LIMITS``, within the same maxima:

=============  =========  ==================================================
key            default    why
=============  =========  ==================================================
timeout_ms     5000       a fresh interpreter per event (~6 ms for nothing);
                          importing a big stdlib module (``decimal``,
                          ``statistics``) costs 40-60 ms, ``traceback`` on an
                          error ~45 ms
fuel           3000M      a no-op event spends 2.5M, ``import statistics``
                          115M, an exception's traceback 95M; leaves room
                          for real work (~1-3 s of CPU)
memory_mb      256        the interpreter's image is 40 MiB before any work
stack_kb       1024       the maximum: with 512 KiB plain Python recursion
                          overflows the wasm stack before CPython's
                          RecursionError can fire
=============  =========  ==================================================
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = ["Limits", "DEFAULT_LIMITS", "MAX_LIMITS", "PYTHON_DEFAULT_LIMITS", "LANGUAGES", "defaults_for",
           "resolve", "limits_from_mapping"]


@dataclass(frozen=True)
class Limits:
    """Per-execution sandbox limits; every field is a positive int.

    ``Limits()`` gives the platform defaults.
    """

    #: Wall-clock deadline of the whole execution (instantiation, ``_start``,
    #: ``init``, the main call), enforced by epoch interruption.  -> timed_out/wall
    timeout_ms: int = 1000
    #: CPU budget in wasmtime fuel units (roughly one per wasm instruction),
    #: shared by ``_start``, ``init`` and the main call.  -> timed_out/cpu
    fuel: int = 200_000_000
    #: Linear memory cap (MiB); ``memory.grow`` fails beyond it. -> limit_exceeded/memory
    memory_mb: int = 64
    #: Maximum wasm stack (KiB). -> limit_exceeded/stack
    stack_kb: int = 512
    #: Maximum event payload (KiB) handed to the guest. -> limit_exceeded/input
    input_kb: int = 128
    #: Maximum result string (KiB). -> limit_exceeded/result
    result_kb: int = 64
    #: Maximum number of ``env.log`` records. -> limit_exceeded/logs
    log_records: int = 1000
    #: Maximum total bytes of log messages (KiB). -> limit_exceeded/logs
    log_kb: int = 64
    #: Maximum captured stdout + stderr (KiB). -> limit_exceeded/stdout
    stdout_kb: int = 64

    KEYS: ClassVar[tuple[str, ...]] = (
        "timeout_ms", "fuel", "memory_mb", "stack_kb", "input_kb",
        "result_kb", "log_records", "log_kb", "stdout_kb",
    )

    def __post_init__(self) -> None:
        for key in self.KEYS:
            _check_value(key, getattr(self, key))

    # -- construction -------------------------------------------------
    @classmethod
    def from_mapping(cls, mapping: Limits | Mapping[str, Any] | None, base: Limits | None = None) -> Limits:
        """Build from a mapping such as a package's ``limits:``.

        Keys not given keep ``base`` (default: the platform defaults).
        Unknown keys, non-integers (booleans included) and values <= 0 raise
        ``ValueError`` naming the key.
        """
        base = base if base is not None else DEFAULT_LIMITS
        if mapping is None:
            return base
        if isinstance(mapping, Limits):
            return mapping
        if not isinstance(mapping, Mapping):
            raise ValueError(f"limits must be a mapping of {', '.join(cls.KEYS)}, "
                             f"got {type(mapping).__name__}")
        changes: dict[str, int] = {}
        for key, value in mapping.items():
            if key not in cls.KEYS:
                raise ValueError(f"unknown limit {key!r}; known limits: {', '.join(cls.KEYS)}")
            _check_value(key, value)
            changes[key] = value
        return dataclasses.replace(base, **changes) if changes else base

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.KEYS}

    # -- derived sizes in bytes ---------------------------------------
    @property
    def memory_bytes(self) -> int:
        return self.memory_mb * 1024 * 1024

    @property
    def stack_bytes(self) -> int:
        return self.stack_kb * 1024

    @property
    def input_bytes(self) -> int:
        return self.input_kb * 1024

    @property
    def result_bytes(self) -> int:
        return self.result_kb * 1024

    @property
    def log_bytes(self) -> int:
        return self.log_kb * 1024

    @property
    def stdout_bytes(self) -> int:
        return self.stdout_kb * 1024

    @classmethod
    def resolve(cls, defaults: Limits | Mapping[str, Any] | None, maxima: Limits | Mapping[str, Any] | None,
                *overrides: Limits | Mapping[str, Any] | None) -> Limits:
        return resolve(defaults, maxima, *overrides)


def _check_value(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"limit {key!r} must be a positive integer, got {value!r}")
    if value <= 0:
        raise ValueError(f"limit {key!r} must be a positive integer, got {value}")


def limits_from_mapping(mapping: Mapping[str, Any] | None, base: Limits | None = None) -> Limits:
    """Function form of :meth:`Limits.from_mapping`."""
    return Limits.from_mapping(mapping, base)


DEFAULT_LIMITS = Limits()

#: Defaults of a Python jobicolet (see the table above); the maxima are shared.
PYTHON_DEFAULT_LIMITS = Limits(timeout_ms=5000, fuel=3_000_000_000, memory_mb=256, stack_kb=1024)

#: The languages a runtime may be written in, and the platform defaults of each.
LANGUAGES: dict[str, Limits] = {"wasm": DEFAULT_LIMITS, "python": PYTHON_DEFAULT_LIMITS}


def defaults_for(language: str) -> Limits:
    """The platform defaults of a runtime's language (``wasm`` or ``python``)."""
    return LANGUAGES.get(language, DEFAULT_LIMITS)


MAX_LIMITS = Limits(
    timeout_ms=30_000,
    fuel=10_000_000_000,
    memory_mb=512,
    stack_kb=1024,
    input_kb=1024,
    result_kb=1024,
    log_records=10_000,
    log_kb=1024,
    stdout_kb=1024,
)


def resolve(defaults: Limits | Mapping[str, Any] | None, maxima: Limits | Mapping[str, Any] | None,
            *overrides: Limits | Mapping[str, Any] | None) -> Limits:
    """Merge ``defaults`` with ``overrides`` in order (runtime, then event).

    ``defaults``/``maxima`` may be ``None`` (platform values), a ``Limits``
    or a mapping (a mapping for the maxima is applied over ``MAX_LIMITS``).
    Defaults above the maxima are clamped to them (an operator lowered a
    maximum); an *override* above its maximum is refused with a
    ``ValueError`` naming the key, the value and the maximum.  ``None``
    overrides are skipped.
    """
    maxima_l = Limits.from_mapping(maxima, MAX_LIMITS) if maxima is not None else MAX_LIMITS
    base = Limits.from_mapping(defaults, DEFAULT_LIMITS) if defaults is not None else DEFAULT_LIMITS
    clamp = {k: getattr(maxima_l, k) for k in Limits.KEYS if getattr(base, k) > getattr(maxima_l, k)}
    result = dataclasses.replace(base, **clamp) if clamp else base
    for override in overrides:
        if override is None:
            continue
        if isinstance(override, Limits):
            values = override.as_dict()
        else:
            # validates keys and values
            Limits.from_mapping(override, result)
            values = dict(override)
        for key, value in values.items():
            maximum = getattr(maxima_l, key)
            if value > maximum:
                raise ValueError(f"limit {key!r} = {value} is above the platform maximum {maximum}")
        result = dataclasses.replace(result, **values)
    return result
