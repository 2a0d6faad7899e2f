#!/usr/bin/env python3
"""CPU time per webhook request under load: the API's gunicorn processes, PostgreSQL, Redis.

Run: .venv/bin/python bench/cpu_ingest.py [--seconds 4] [--rounds 2] [--events 1 100]
gunicorn with the shipped configuration, wrk (or the Python load) on ``POST /events/t0/e0``
with 32 connections; for each round and event count, the user + system CPU seconds
(``/proc/<pid>/stat``) the API (master and workers), the PostgreSQL server (all its processes)
and redis-server spent during the run, divided by the requests answered. CPU time is what a
busy shared host disturbs least (requests/s move by 2x from one run to the next there), so this
is how two revisions are compared: run it in each, alternated. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Services, body, context, gunicorn, load, setup_tenant  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [pid] + [p for k in kids for p in tree(int(k))]


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--events", type=int, nargs="+", default=[1, 100])
    args = ap.parse_args()
    with Services() as svc:
        env = svc.env("cpu")
        key = setup_tenant(context(env), "t0")
        api, url = gunicorn("api", "jobico_api.wsgi:app", env, svc.tmp / "logs")
        try:
            workers = len(tree(api.proc.pid)) - 1
            api.wait_for(lambda: api.log_path.read_text(errors="replace").count("worker warmed up") >= workers,
                         120, "every worker warmed up")
            out: dict[str, list[dict[str, float]]] = {}
            for _ in range(args.rounds):
                for n in args.events:
                    target = [("/events/t0/e0", key, body([{"age": 50, "firstName": "john"}] * n))]
                    load(url, target, 1)  # every worker's connections and statements ready
                    parts = {"api": lambda: tree(api.proc.pid), "postgres": lambda: tree(svc.pg.proc.pid),
                             "redis": lambda: [svc.redis.proc.pid]}
                    before = {k: cpu_seconds(pids()) for k, pids in parts.items()}
                    r = load(url, target, args.seconds)
                    requests = r.requests_per_s * args.seconds
                    row = {"requests_s": round(r.requests_per_s, 1)}
                    row.update({f"{k}_ms": round((cpu_seconds(pids()) - before[k]) / requests * 1000, 3)
                                for k, pids in parts.items()})
                    out.setdefault(f"events_{n}", []).append(row)
        finally:
            api.stop()
    print(json.dumps({"bench": "cpu_ingest", "seconds": args.seconds, **out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
