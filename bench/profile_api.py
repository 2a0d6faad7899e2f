#!/usr/bin/env python3
"""Profile the webhook under load: gunicorn (shipped config) + wrk, py-spy on one API worker.

Run: .venv/bin/python bench/profile_api.py [--events 1] [--seconds 10] [--out /tmp/api.txt] [--gil]
[--workers N]
Prints py-spy's top functions, inclusive then by own time (--format raw collapsed stacks go to
--out), then one JSON line. ``--gil``: only the thread holding the GIL is sampled, so the
shares are of the worker's Python CPU time (without it, waits for the database, Redis and the
GIL are counted too). The load starts once every worker has warmed up (``jobico_api.warm``;
sampled earlier, a worker showed only its warm-up); ``--workers 1`` puts the whole load on the
sampled worker.
"""
from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Services, body, context, gunicorn, load, setup_tenant  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--out", default="/tmp/jobico-api-pyspy.txt")
    ap.add_argument("--gil", action="store_true", help="sample only the thread holding the GIL (CPU time)")
    ap.add_argument("--workers", type=int, help="gunicorn workers (default: the shipped configuration's)")
    args = ap.parse_args()
    pyspy = Path(sys.executable).parent / "py-spy"
    with Services() as svc:
        env = svc.env("prof", **({"JOBICO_API_WORKERS": str(args.workers)} if args.workers else {}))
        ctx = context(env)
        key = setup_tenant(ctx, "t0")
        api, url = gunicorn("api", "jobico_api.wsgi:app", env, svc.tmp / "logs")
        try:
            kids = subprocess.run(["pgrep", "-P", str(api.proc.pid)], capture_output=True, text=True).stdout.split()
            api.wait_for(lambda: api.log_path.read_text(errors="replace").count("worker warmed up") >= len(kids),
                         120, "every worker warmed up")
            b = body([{"age": 50, "firstName": "john"}] * args.events)
            box = {}
            th = threading.Thread(target=lambda: box.setdefault("r", load(url, [("/events/t0/e0", key, b)],
                                                                           args.seconds + 2)))
            th.start()
            subprocess.run([str(pyspy), "record", "-p", kids[0], "-d", str(args.seconds), "-r", "200",
                            "-f", "raw", "-o", args.out, "--nonblocking", *(["--gil"] if args.gil else [])],
                           capture_output=True)
            th.join()
        finally:
            api.stop()
    incl: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    total = 0
    for line in Path(args.out).read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        n = int(n)
        frames = stack.split(";")
        if any("wait" in f and "threading" in f for f in frames[-2:]) or "select" in frames[-1]:
            continue  # idle threads
        total += n
        for f in set(frames):
            incl[f.split(" (")[0]] += n
        own[frames[-1].split(" (")[0]] += n
    for name, n in incl.most_common(45):
        print(f"{100 * n / max(1, total):5.1f}%  {name}")
    print("own time:")
    for name, n in own.most_common(20):
        print(f"{100 * n / max(1, total):5.1f}%  {name}")
    r = box["r"]
    print(json.dumps({"bench": "profile_api", "events": args.events, "requests_per_s": round(r.requests_per_s, 1),
                      "samples": total, "out": args.out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
