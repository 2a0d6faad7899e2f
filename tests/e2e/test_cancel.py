"""`jobico executions cancel` and `resubmit` on the real platform: the API in a thread, Celery
worker processes (prefork: each pool process has its own cancel listener), real Redis,
PostgreSQL and S3, through the CLI."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.waiting import holds_for, wait_until

from .helpers import example

JOBICO = Path(sys.executable).parent / "jobico"

# logs one line, then loops until something stops it (here: the cancel, long before the deadline)
NAPPER_WAT = """
(module
  (import "env" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (global $spins (mut i64) (i64.const 0))
  (data (i32.const 100) "dozing off")
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (local.get $p) (i32.add (local.get $n) (i32.const 8))))
    (local.get $p))
  (func (export "free") (param i32))
  (func (export "event") (param $res i32) (param $in i32) (param $len i32)
    (call $log (i32.const 1) (i32.const 100) (i32.const 10))
    (loop $forever
      (global.set $spins (i64.add (global.get $spins) (i64.const 1)))
      (br $forever))))
"""

YAML = """
id: naps
queues: [{id: q}]
jobs:
  - event:
      id: nap
      schema: {id: s, schemaref: any.json}
      supplierqueue: q
      runtime: napper
      retries: 2
      limits: {timeout_ms: 20000, fuel: 10000000000}
    result:
      error: {id: grumpy, schema: {id: s, schemaref: any.json}, supplierqueue: q, runtime: echo}
  - event: {id: say, schema: {id: s, schemaref: any.json}, supplierqueue: q, runtime: echo}
runtimes:
  - {id: napper, moduleref: napper.wasm}
  - {id: echo, moduleref: echo.wasm}
"""


def cli(p, key: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(JOBICO), "--api-url", p.url, "--token", key, *args], capture_output=True, text=True,
                          timeout=60)


def wait_running(p, key: str, eid: str, timeout: float = 30.0) -> None:
    """Until the execution has run 0.3 s in its sandbox (the platform's running view says so):
    inside the guest's loop, past its start."""
    def age() -> float:
        view = p.call(key, "GET", "/api/v1/executions/running").json()
        return max((i.get("age_s") or 0 for g in view["packages"] for i in g["items"] if i["id"] == eid), default=0)
    p.wait(key, eid, timeout=timeout, until=lambda e: e["status"] == "running")
    wait_until(lambda: age() >= 0.3, timeout, what=f"{eid} running for 0.3 s")


def test_cancel_queued_and_running_executions_and_resubmit_through_the_cli(platform):
    import wasmtime
    p = platform
    key = p.tenant("t")
    napper = p.tmp / "napper.wasm"
    napper.write_bytes(wasmtime.wat2wasm(NAPPER_WAT))
    p.upload(key, napper)
    for f in ("jobicolets/echo.wasm", "schemas/any.json"):
        p.upload(key, example(f))
    p.deploy(key, YAML)

    # queued, no worker consuming: cancelled at once; it never starts, even once a worker comes up
    [queued] = p.post(key, "t", "nap", [{"n": 0}]).json()["executions"]
    res = cli(p, key, "executions", "cancel", queued)
    assert res.returncode == 0, res.stderr
    assert f"execution {queued} cancelled before it started" in res.stdout
    p.start_worker("w1", concurrency=2)
    [said] = p.post(key, "t", "say", [{"hi": 1}]).json()["executions"]  # same queue, after the cancelled task
    assert p.wait(key, said)["status"] == "succeeded"
    e = p.wait(key, queued)
    assert (e["status"], e["attempts"], e["started_at"], e["cancelled_by"]) == ("cancelled", 0, None, "default")

    # running, --wait 0: exit 4 (still running when the wait ran out); its worker stops it anyway
    [first] = p.post(key, "t", "nap", [{"n": 1}]).json()["executions"]
    wait_running(p, key, first)
    res = cli(p, key, "executions", "cancel", first, "--wait", "0", "--json")
    assert res.returncode == 4, (res.returncode, res.stdout, res.stderr)
    assert json.loads(res.stdout)["cancel"] == "requested"
    e = p.wait(key, first, timeout=10)
    assert e["status"] == "cancelled" and e["message"].startswith("cancelled by default after ")

    # running, waiting for the record: exit 0, stopped inside the sandbox within the wait
    [second] = p.post(key, "t", "nap", [{"n": 2}]).json()["executions"]
    wait_running(p, key, second)
    t0 = time.monotonic()
    res = cli(p, key, "executions", "cancel", second, "--json")
    took = time.monotonic() - t0
    assert res.returncode == 0, (res.stdout, res.stderr)
    body = json.loads(res.stdout)
    assert (body["cancel"], body["status"], body["cancelled_by"]) == ("cancelled_running", "cancelled", "default")
    assert body["cancel_ms"] < 5000 and took < 10, (body["cancel_ms"], took)  # generous: measured in bench_cancel
    assert body["logs"] == [{"level": 1, "message": "dozing off"}] and body["duration_ms"] >= 300
    assert body["worker"].startswith("w1@") and body["attempts"] == 1
    holds_for(lambda: p.call(key, "GET", "/api/v1/executions?event=grumpy").json()["items"] == []
              and all(p.call(key, "GET", f"/api/v1/executions/{eid}").json()["attempts"] == 1
                      for eid in (first, second)),
              1.0, what="neither retried (retries: 2) nor chained (error: grumpy)")
    for eid in (first, second):
        e = p.wait(key, eid)
        assert (e["status"], e["attempts"], e["chain"], e["dead_lettered"]) == ("cancelled", 1, [], False)
    assert p.call(key, "GET", "/api/v1/executions?event=grumpy").json()["items"] == []

    # finished: a no-op, exit 0; unknown: exit 1 with the server's message
    res = cli(p, key, "executions", "cancel", said)
    assert res.returncode == 0 and f"execution {said} already finished (succeeded): nothing to cancel" in res.stdout
    res = cli(p, key, "executions", "cancel", "01890a5d-ac96-774b-bcce-b302099a8057")
    assert res.returncode == 1 and "does not exist" in res.stderr

    # resubmit: a new execution of the same payload, linked both ways, that runs
    res = cli(p, key, "executions", "resubmit", said, "--json")
    assert res.returncode == 0, res.stderr
    copy = json.loads(res.stdout)
    assert (copy["resubmitted_from"], copy["trigger"], copy["payload"]) == (said, "resubmit", '{"hi":1}')
    done = p.wait(key, copy["id"])
    assert (done["status"], done["result"]) == ("succeeded", '{"hi":1}')
    assert p.wait(key, said)["resubmissions"] == [copy["id"]]
    res = cli(p, key, "executions", "resubmit", queued)  # a cancelled one too; the table for people
    assert res.returncode == 0 and f"resubmitted {queued} as " in res.stdout, res.stderr
    res = cli(p, key, "executions", "show", said)
    assert res.returncode == 0 and "resubmissions" in res.stdout and copy["id"] in res.stdout
