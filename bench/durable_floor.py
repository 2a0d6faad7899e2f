#!/usr/bin/env python3
"""How much of the ingest floor the webhook's durability costs by itself (issue 19).

Run: .venv/bin/python bench/durable_floor.py [--seconds 5] [--repeats 3] [--events 1]

Three servers under the shipped gunicorn configuration, driven one at a time with the same
1-event (``--events``) requests over 32 connections, alternated, ``--repeats`` times:
``bare`` (bench/bare_app.py: json.loads + LPUSH, the floor of ``bench_ingest.py``),
``bare+insert`` (bench/bare_durable_app.py: the same plus one autocommitted INSERT of the
elements before the LPUSH: the write the webhook's guarantee "rows committed before their
task is published" needs, and nothing else) and ``jobico`` (the webhook). Prints the medians,
their ratios to ``bare`` and the webhook's ratio to ``bare+insert``, then one JSON line.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Services, body, context, gunicorn, load, log, median, setup_tenant  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--events", type=int, default=1)
    args = ap.parse_args()
    import psycopg

    from bench.bare_durable_app import TABLE, database_url
    with Services() as svc:
        env = svc.env("durable")
        ctx = context(env)
        key = setup_tenant(ctx, "t0")
        with psycopg.connect(database_url(env), autocommit=True) as conn:
            conn.execute(TABLE)
        logdir = svc.tmp / "durable" / "logs"
        servers = {name: gunicorn(name, app, env, logdir) for name, app in
                   (("bare", "bench.bare_app:app"), ("bare+insert", "bench.bare_durable_app:app"),
                    ("jobico", "jobico_api.wsgi:app"))}
        b = body([{"age": 50, "firstName": "john"}] * args.events)
        runs: dict[str, list[float]] = {name: [] for name in servers}
        try:
            for _, url in servers.values():  # warm every worker
                load(url, [("/events/t0/e0", key, b)], 2, 32)
            for rep in range(args.repeats):
                for name, (_, url) in servers.items():
                    r = load(url, [("/events/t0/e0", key, b)], args.seconds, 32)
                    if r.non_2xx or r.errors:
                        raise RuntimeError(f"{name}: {r.non_2xx} non-2xx, {r.errors} errors; see {logdir}")
                    runs[name].append(r.requests_per_s * args.events)
                    log(f"rep {rep + 1} {name}: {r.requests_per_s * args.events:.0f} events/s")
            # the floor really wrote its rows: at least one second of its measured rate, one payload
            with psycopg.connect(database_url(env), autocommit=True) as conn:
                stored = conn.execute("SELECT count(*), count(DISTINCT payload) FROM floor_rows").fetchone()
            if stored[0] < sum(runs["bare+insert"]) or stored[1] != 1:
                raise RuntimeError(f"bare+insert stored {stored[0]} rows ({stored[1]} payloads)")
        finally:
            for proc, _ in servers.values():
                proc.stop()
            ctx.db.engine.dispose()
    m = {k: median(v) for k, v in runs.items()}
    res = {"bench": "durable_floor", "events": args.events,
           **{f"{k}_events_s": round(v) for k, v in m.items()},
           "ratio_bare_insert_to_bare": round(m["bare+insert"] / m["bare"], 3),
           "ratio_jobico_to_bare": round(m["jobico"] / m["bare"], 3),
           "ratio_jobico_to_bare_insert": round(m["jobico"] / m["bare+insert"], 3),
           "runs": {k: [round(x) for x in v] for k, v in runs.items()}}
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
