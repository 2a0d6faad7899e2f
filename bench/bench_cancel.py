#!/usr/bin/env python3
"""Cancel benchmark (issue 11): how long ``jobico executions cancel`` takes to stop a running execution.

Run: .venv/bin/python bench/bench_cancel.py [--cancels 30] [--workers 2]

The API under gunicorn (shipped config) and a worker (``-c 2``, as ``jobico run``) run against
real PostgreSQL/Redis/S3. For each of ``--cancels`` rounds one event of a jobicolet that spins
forever (examples/jobicolets/sleeper.wasm, 30 s deadline) is posted; once its row is
``running`` (plus 50 ms, well inside the guest's loop) ``POST /api/v1/executions/<id>/cancel``
is sent and timed. Reported, p50/p99/max over the rounds:

* **request -> cancelled record**: the send of the cancel request to the row's ``finished_at``
  (the worker's record; same host, wall clock), i.e. API update + Redis publish + the pool
  process's listener + the guest stopping at its next epoch tick + the record;
* **answer** (``cancel_ms``): what the API reports, request to the moment it saw the final row
  (adds its 10 ms polling);
* **round trip**: the client's view of the whole HTTP request;
* the floor, measured in the same run: ``CancelToken.cancel()`` -> ``Runtime.run`` returns, on
  the same module in this process (no API, Redis, database).
Prints a table, then one JSON line.
"""
from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import EXAMPLES, Services, context, gunicorn, log, pct, table, worker  # noqa: E402

YAML = """
id: spin
queues: [{id: q}]
jobs:
  - event: {id: spin, schema: {id: s, schemaref: any.json}, supplierqueue: q, runtime: sleeper,
            limits: {timeout_ms: 30000, fuel: 10000000000}}
runtimes: [{id: sleeper, moduleref: sleeper.wasm}]
"""
LIMITS = {"timeout_ms": 30_000, "fuel": 10_000_000_000}


def setup(ctx) -> str:
    from jobico_core.services import files, packages, tenants
    _, key = tenants.create_tenant(ctx, "t0")
    files.upload(ctx, "t0", "any.json", (EXAMPLES / "schemas/any.json").read_bytes())
    files.upload(ctx, "t0", "sleeper.wasm", (EXAMPLES / "jobicolets/sleeper.wasm").read_bytes())
    packages.deploy(ctx, "t0", YAML)
    return key


class Api:
    def __init__(self, url: str, key: str):
        u = urlsplit(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        self.hdr = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        self.conn.request(method, path, json.dumps(body).encode() if body is not None else None, self.hdr)
        r = self.conn.getresponse()
        return r.status, json.loads(r.read() or b"{}")


def one_round(api: Api, ctx) -> dict:
    from jobico_core.db import Execution
    status, body = api.call("POST", "/events/t0/spin", {"data": [{}]})
    if status != 200:
        raise RuntimeError(f"webhook answered {status}: {body}")
    eid = body["executions"][0]
    deadline = time.monotonic() + 30
    while True:
        with ctx.db.session() as s:
            if s.get(Execution, eid).status == "running":
                break
        if time.monotonic() > deadline:
            raise RuntimeError(f"execution {eid} never started")
        time.sleep(0.005)
    time.sleep(0.05)
    sent_wall, t0 = time.time(), time.perf_counter()
    status, rec = api.call("POST", f"/api/v1/executions/{eid}/cancel?wait=10")
    trip = (time.perf_counter() - t0) * 1000
    if status != 200 or rec.get("cancel") != "cancelled_running" or rec.get("status") != "cancelled":
        raise RuntimeError(f"cancel of {eid} answered {status}: {rec.get('cancel')} {rec.get('detail')}")
    with ctx.db.session() as s:
        finished = s.get(Execution, eid).finished_at.timestamp()
    return {"record": (finished - sent_wall) * 1000, "answer": rec["cancel_ms"], "trip": trip}


def floor(n: int) -> list[float]:
    """CancelToken.cancel() -> Runtime.run returns, same module, in this process."""
    from bench_runtime import cancel_latencies

    from jobico_core.limits import Limits
    from jobico_runtime import Runtime
    rt = Runtime(cache_dir=None)
    return cancel_latencies(rt, rt.load((EXAMPLES / "jobicolets/sleeper.wasm").read_bytes()), n, Limits(**LIMITS))


def stats(xs: list[float]) -> dict:
    return {"p50": round(pct(xs, 50), 1), "p99": round(pct(xs, 99), 1), "max": round(max(xs), 1)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cancels", type=int, default=30)
    ap.add_argument("--workers", type=int, default=2, help="worker processes (-c)")
    args = ap.parse_args()
    with Services() as svc:
        env = svc.env("cancel")
        ctx = context(env)
        key = setup(ctx)
        logdir = svc.tmp / "logs"
        api_proc, url = gunicorn("api", "jobico_api.wsgi:app", env, logdir)
        w = worker("cancel", env, logdir, args.workers)
        try:
            api = Api(url, key)
            for _ in range(2):  # warm-up: module fetch and compile in both pool processes, connections
                one_round(api, ctx)
            rounds = [one_round(api, ctx) for _ in range(args.cancels)]
            log(f"{len(rounds)} cancels done")
            bare = floor(max(10, args.cancels))
        finally:
            w.stop()
            api_proc.stop()
            ctx.db.engine.dispose()
    res = {"bench": "cancel", "cancels": len(rounds), "workers": args.workers}
    for name in ("record", "answer", "trip"):
        res[f"{name}_ms"] = stats([r[name] for r in rounds])
    res["floor_ms"] = stats(bare)
    labels = {"record": "request -> cancelled record (finished_at)",
              "answer": "API's cancel_ms (request -> final record seen)",
              "trip": "HTTP round trip of POST .../cancel",
              "floor": "floor: CancelToken.cancel() -> Runtime.run returns"}
    table([(labels[k], res[f"{k}_ms"]["p50"], res[f"{k}_ms"]["p99"], res[f"{k}_ms"]["max"])
           for k in ("record", "answer", "trip", "floor")],
          (f"cancel of a running spinning jobicolet, {len(rounds)} cancels (ms)", "p50", "p99", "max"))
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
