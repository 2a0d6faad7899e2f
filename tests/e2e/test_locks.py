"""Named locks on the real platform: a held lock holds back the next execution (which waits
``queued`` with ``waiting_for``, in order), a SIGKILLed worker's locks free within the lease, and
two events taking two locks in different orders never deadlock nor overlap."""
from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .helpers import example

LOCKED_YAML = """
id: deployer
queues: [{id: q}]
jobs:
  - event: {id: deploy_api, schema: {id: s, schemaref: any.json}, supplierqueue: q, runtime: sleeper,
            locks: [env-prod], limits: {timeout_ms: %(ms)d, fuel: 10000000000}}
  - event: {id: deploy_web, schema: {id: s, schemaref: any.json}, supplierqueue: q, runtime: sleeper,
            locks: [env-prod], limits: {timeout_ms: %(ms)d, fuel: 10000000000}}
runtimes: [{id: sleeper, moduleref: sleeper.wasm}]
"""

TWO_LOCKS_YAML = """
id: crossing
queues: [{id: q}]
jobs:
  - event: {id: ab, schema: {id: s, schemaref: any.json}, supplierqueue: q, runtime: sleeper,
            locks: [a, b], limits: {timeout_ms: 150, fuel: 10000000000}}
  - event: {id: ba, schema: {id: s, schemaref: any.json}, supplierqueue: q, runtime: sleeper,
            locks: [b, a], limits: {timeout_ms: 150, fuel: 10000000000}}
  - event: {id: only_b, schema: {id: s, schemaref: any.json}, supplierqueue: q, runtime: sleeper,
            locks: [b], limits: {timeout_ms: 150, fuel: 10000000000}}
runtimes: [{id: sleeper, moduleref: sleeper.wasm}]
"""


def _cli(p, token: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "jobico"), "--api-url", p.url, "--token", token, *args],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})


def _setup(p, tenant: str, yaml_text: str) -> str:
    key = p.tenant(tenant)
    p.upload(key, example("jobicolets/sleeper.wasm"))
    p.upload(key, example("schemas/any.json"))
    p.deploy(key, yaml_text)
    return key


def _example(p, tenant: str) -> str:
    """A tenant with the README's example package deployed (examples/packages/locks.yaml, nap.wasm)."""
    key = p.tenant(tenant)
    for f in ("jobicolets/nap.wasm", "schemas/any.json"):
        p.upload(key, example(f))
    p.deploy(key, example("packages/locks.yaml").read_text())
    return key


def _t(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _post(p, key, tenant, event, n=1) -> list[str]:
    r = p.post(key, tenant, event, [{"n": i} for i in range(n)])
    assert r.status_code == 200, r.text
    return r.json()["executions"]


def _no_overlap(runs: list[dict]) -> None:
    spans = sorted((_t(e["started_at"]), _t(e["finished_at"]), e["id"]) for e in runs)
    for (_s1, f1, a), (s2, _f2, b) in zip(spans, spans[1:]):
        assert s2 >= f1, f"{b} started at {s2} while {a} ran until {f1}"


def test_a_held_lock_holds_back_the_next_in_order(platform):
    """The README's example package (examples/packages/locks.yaml, nap.wasm)."""
    p = platform
    key = _example(p, "locks1")
    p.start_worker(concurrency=3)
    first = p.post(key, "locks1", "deploy_api", [{"seconds": 4}]).json()["executions"][0]
    p.wait(key, first, until=lambda e: e["status"] == "running")
    second = p.post(key, "locks1", "deploy_web", [{"seconds": 1}]).json()["executions"][0]
    staging = p.post(key, "locks1", "deploy_staging", [{"seconds": 1}]).json()["executions"][0]  # another lock
    waiting = p.wait(key, second, timeout=10, until=lambda e: e["waiting_for"] is not None)
    assert waiting["status"] == "queued" and waiting["locks"] == ["production"]
    assert waiting["waiting_for"] == f"production (held by {first})"
    assert p.wait(key, staging, timeout=10, until=lambda e: e["status"] == "running")["started_at"]
    # who holds what, who waits: the API and the CLI (the table for people, --json for scripts)
    held = {lock["name"]: lock for lock in p.call(key, "GET", "/api/v1/locks").json()["items"]}
    assert held["production"]["holder"] == first and held["production"]["waiting"] == [second]
    assert held["staging"]["holder"] == staging and 0 < held["staging"]["lease_ms"] <= 30000
    res = _cli(p, key, "locks", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["items"][0]["holder"] == first, res.stderr
    res = _cli(p, key, "locks")
    assert res.returncode == 0 and "production" in res.stdout and first in res.stdout, res.stdout
    other = p.tenant("locks1b")  # another tenant sees none of them
    assert p.call(other, "GET", "/api/v1/locks").json() == {"items": [], "truncated": False}
    # three more behind it, posted one by one: they run one at a time, in the order they came
    later = [p.post(key, "locks1", ev, [{"seconds": 1}]).json()["executions"][0]
             for ev in ("deploy_api", "deploy_web", "deploy_api")]
    runs = [p.wait(key, i, timeout=60) for i in [first, second, *later]]
    assert all(e["status"] == "succeeded" and e["waiting_for"] is None for e in runs), runs
    assert runs[0]["result"] == "slept 4 s" and runs[1]["result"] == "slept 1 s"
    _no_overlap(runs)
    assert [e["id"] for e in sorted(runs, key=lambda e: e["started_at"])] == [first, second, *later]
    assert _t(runs[1]["started_at"]) - _t(runs[0]["finished_at"]) < dt.timedelta(seconds=2)  # handed on soon
    assert p.wait(key, staging)["status"] == "succeeded"


def test_a_killed_workers_lock_frees_within_the_lease(platform):
    p = platform
    key = _setup(p, "locks2", LOCKED_YAML % {"ms": 5000})
    lease = {"JOBICO_LOCK_LEASE_SECONDS": "3", "JOBICO_LOCK_POLL_SECONDS": "1"}
    w1 = p.start_worker("w1", concurrency=1, extra_env=lease)
    stuck = _post(p, key, "locks2", "deploy_api")[0]
    p.wait(key, stuck, until=lambda e: e["status"] == "running")
    time.sleep(1.5)  # a renewal or two happened: the lease would go on without the kill
    w1.stop(signal.SIGKILL)
    killed_at = dt.datetime.now(dt.UTC)
    p.start_worker("w2", concurrency=1, extra_env=lease)
    p.deploy(key, (LOCKED_YAML % {"ms": 200}), redeploy_id="deployer")  # the next one is short
    nxt = _post(p, key, "locks2", "deploy_web")[0]
    done = p.wait(key, nxt, timeout=30)
    assert done["status"] == "timed_out"
    waited = _t(done["started_at"]) - killed_at
    assert waited < dt.timedelta(seconds=3 + 5), f"the lock freed {waited} after the kill (lease 3 s)"


def test_two_locks_in_different_orders_never_deadlock_nor_overlap(platform):
    p = platform
    key = _setup(p, "locks3", TWO_LOCKS_YAML)
    p.start_worker(concurrency=3)
    ids = []
    for _ in range(4):
        for ev in ("ab", "ba", "only_b"):
            ids += _post(p, key, "locks3", ev)
    runs = [p.wait(key, i, timeout=90) for i in ids]
    assert all(e["status"] == "timed_out" for e in runs), [e["status"] for e in runs]
    _no_overlap(runs)  # every one of them holds "b"


def test_cancel_hands_the_lock_on_and_takes_a_waiter_out_of_the_line(platform):
    p = platform
    key = _example(p, "locks4")
    p.start_worker(concurrency=2)
    holder = p.post(key, "locks4", "deploy_api", [{"seconds": 9}]).json()["executions"][0]
    p.wait(key, holder, until=lambda e: e["status"] == "running")
    waiter = p.post(key, "locks4", "deploy_web", [{"seconds": 1}]).json()["executions"][0]
    behind = p.post(key, "locks4", "deploy_api", [{"seconds": 1}]).json()["executions"][0]
    p.wait(key, behind, timeout=10, until=lambda e: e["waiting_for"] is not None)
    r = p.call(key, "POST", f"/api/v1/executions/{waiter}/cancel")
    assert r.status_code == 200 and (r.json()["cancel"], r.json()["status"]) == ("cancelled_queued", "cancelled")
    held = {lock["name"]: lock for lock in p.call(key, "GET", "/api/v1/locks").json()["items"]}
    assert held["production"]["holder"] == holder and held["production"]["waiting"] == [behind]
    r = p.call(key, "POST", f"/api/v1/executions/{holder}/cancel")  # stopped inside the sandbox
    assert r.status_code == 200 and (r.json()["cancel"], r.json()["status"]) == ("cancelled_running", "cancelled")
    stopped = p.wait(key, holder)
    nxt = p.wait(key, behind, timeout=30)
    assert nxt["status"] == "succeeded"
    assert _t(nxt["started_at"]) - _t(stopped["finished_at"]) < dt.timedelta(seconds=2)
    never = p.wait(key, waiter)
    assert never["status"] == "cancelled" and never["started_at"] is None and never["waiting_for"] is None
    assert p.call(key, "GET", "/api/v1/locks").json()["items"] == []
