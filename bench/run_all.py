#!/usr/bin/env python3
"""Run every benchmark in bench/ (``make bench``); not part of ``make test``.

Run: .venv/bin/python bench/run_all.py [--quick] [--only <names>]  (names: ingest, execute, latency,
scaling, runtime, python, publish, locks, cancel)

Each script starts the services it needs, prints a human table and a final JSON
line; this runner streams their output and ends with one JSON line gathering
every script's JSON line (``{"<name>": {...}, ...}``). ``--quick`` shortens every
run (for a smoke test, not for figures).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

FULL = {
    "runtime": ["bench_runtime.py"],
    "python": ["bench_python.py"],
    "publish": ["bench_publish.py"],
    "ingest": ["bench_ingest.py", "--seconds", "8", "--repeats", "3"],
    "execute": ["bench_execute.py", "--events", "2000", "--repeats", "3"],
    "latency": ["bench_latency.py", "--rates", "50,200,500", "--seconds", "30"],
    "scaling": ["bench_scaling.py", "--seconds", "5", "--repeats", "1", "--events", "300"],
    "locks": ["bench_locks.py", "--events", "300", "--repeats", "2"],
    "cancel": ["bench_cancel.py", "--cancels", "30"],
    "flow": ["bench_flow.py", "--events", "200", "--repeats", "2"],
}
QUICK = {
    "runtime": ["bench_runtime.py", "--events", "500"],
    "python": ["bench_python.py", "--events", "100"],
    "publish": ["bench_publish.py", "--repeats", "50"],
    "ingest": ["bench_ingest.py", "--seconds", "3", "--repeats", "1"],
    "execute": ["bench_execute.py", "--events", "300", "--repeats", "1"],
    "latency": ["bench_latency.py", "--rates", "20,200", "--seconds", "5"],
    "scaling": ["bench_scaling.py", "--seconds", "2", "--repeats", "1", "--events", "100",
                "--only", "payload,tenants"],
    "locks": ["bench_locks.py", "--events", "50", "--repeats", "1"],
    "cancel": ["bench_cancel.py", "--cancels", "5"],
    "flow": ["bench_flow.py", "--events", "50", "--repeats", "1"],
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    plan = QUICK if args.quick else FULL
    names = [n for n in plan if not args.only or n in args.only.split(",")]
    if not shutil.which("wrk"):
        print("NOTE: wrk is not installed (Debian: apt-get install -y wrk); the ingest and scaling "
              "benchmarks fall back to a Python load generator (http.client keep-alive, 2 processes x threads), "
              "which is slower: its figures are not comparable with wrk's.", flush=True)
    results: dict = {}
    failed = []
    for name in names:
        argv = [sys.executable, str(HERE / plan[name][0]), *plan[name][1:]]
        print(f"\n=== {name}: {' '.join(argv[1:])}", flush=True)
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        last = ""
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            if line.startswith("{"):
                last = line
        rc = proc.wait()
        if rc != 0 or not last:
            failed.append(name)
            results[name] = {"error": f"exit code {rc}"}
        else:
            results[name] = json.loads(last)
        print(f"=== {name}: {time.monotonic() - t0:.0f}s, exit code {rc}", flush=True)
    print(json.dumps(results))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
