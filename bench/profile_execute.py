#!/usr/bin/env python3
"""Where a 1-event execution's time goes in a real worker (issue 19): py-spy over a Celery worker.

Run: .venv/bin/python bench/profile_execute.py [--events 1000] [--concurrency 1] [--out /tmp/x.txt]

Real Redis, PostgreSQL and S3 (bench/common.py). ``--events`` 1-event requests of the echo
jobicolet are enqueued the way the webhook does (one ``jobico.execute`` task each), then a
worker with ``jobico run``'s flags starts under ``py-spy record --subprocesses --idle -f raw``
and drains them. Prints the pool process's busiest functions, inclusive (% of its samples whose
stack holds the function) and self; the raw stacks go to ``--out`` (speedscope / flamegraph).
``--batch N``: N events per request instead (one ``jobico.execute_batch`` task each).
"""
from __future__ import annotations

import argparse
import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_execute import unfinished  # noqa: E402
from common import PY, ROOT, Services, context, log, preload, setup_tenant  # noqa: E402


def summarise(raw: Path, top: int) -> None:
    """Inclusive and self shares of the pool process's main thread (the stacks under its
    ``workloop``), idle time (socket waits) included."""
    samples: list[tuple[list[str], int]] = []
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if count.isdigit() and any(f.startswith("Worker.workloop ") for f in frames):
            cut = next(i for i, f in enumerate(frames) if f.startswith("Worker.workloop "))
            samples.append(([_short(f) for f in frames[cut:]], int(count)))
    total = sum(n for _, n in samples) or 1
    incl: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    for names, n in samples:
        for name in set(names):
            incl[name] += n
        own[names[-1]] += n
    print(f"pool process, main thread: {total} samples (250/s, idle included)")
    print(f"{'inclusive %':>11}  function")
    for name, n in incl.most_common(top):
        print(f"{100 * n / total:10.1f}%  {name}")
    print(f"\n{'self %':>11}  function")
    for name, n in own.most_common(top):
        print(f"{100 * n / total:10.1f}%  {name}")


def _short(frame: str) -> str:
    """``fn (path/to/mod.py:12)`` -> ``fn (to/mod.py)``."""
    name, _, where = frame.partition(" (")
    path = where.split(":")[0]
    return f"{name} ({'/'.join(path.split('/')[-2:])})" if where else name


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--top", type=int, default=45)
    ap.add_argument("--out", default="/tmp/profile_execute.txt")
    args = ap.parse_args()
    spy = Path(PY).with_name("py-spy")
    out = Path(args.out)
    with Services() as svc:
        env = svc.env("profile", JOBICO_PYTHON_PREPARE="0")  # echo is WASM: no interpreter compile beside it
        ctx = context(env)
        setup_tenant(ctx, "t0")
        preload(ctx, "t0", args.events, batch=args.batch)
        n = unfinished(ctx)
        argv = [str(spy), "record", "--subprocesses", "--idle", "-r", "250", "-f", "raw", "-o", str(out), "--",
                PY, "-m", "celery", "-A", "jobico_worker.app", "worker", "-l", "INFO", "-P", "prefork", "-c",
                str(args.concurrency), "-n", "profile@%h", "--without-gossip", "--without-mingle"]
        logf = open(svc.tmp / "worker.log", "wb")
        p = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **env}, stdout=logf, stderr=subprocess.STDOUT,
                             start_new_session=True)
        t0 = time.monotonic()
        try:
            while unfinished(ctx) and time.monotonic() - t0 < 600:
                time.sleep(0.2)
            log(f"{n} executions done in {time.monotonic() - t0:.1f}s (incl. start-up, under py-spy)")
        finally:
            # the worker's main process (py-spy's child) gets SIGTERM; py-spy writes when it exits
            for child in subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split():
                os.kill(int(child), signal.SIGTERM)
            p.wait(60)
            logf.close()
        ctx.db.engine.dispose()
    summarise(out, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
