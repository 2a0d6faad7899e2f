"""Flow control per key on the real platform (API, worker processes, Redis, PostgreSQL, S3):
a concurrency key never runs more than its limit at once (intervals from the records) while
other keys run beside it; a debounced burst runs once, with the last payload, the others
``superseded`` by it; a rate limit holds starts to the declared rate; a payload lacking a key's
path is refused with 422."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

from .helpers import example, flow_package

FLOW_YAML = flow_package("flow", rate_limit="key: partner-api, per_second: 4, burst: 1", nap_timeout_ms=15000,
                         plain=True)


def _setup(p, tenant: str) -> str:
    key = p.tenant(tenant)
    for f in ("jobicolets/nap.wasm", "jobicolets/echo.wasm", "schemas/any.json"):
        p.upload(key, example(f))
    p.deploy(key, FLOW_YAML)
    return key


def _cli(p, token: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "jobico"), "--api-url", p.url, "--token", token, *args],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "250"})


def _t(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _one(p, key, tenant, event, element) -> str:
    r = p.post(key, tenant, event, [element])
    assert r.status_code == 200, r.text
    return r.json()["executions"][0]


def _most_at_once(runs: list[dict]) -> int:
    edges = sorted([(_t(e["started_at"]), 1) for e in runs] + [(_t(e["finished_at"]), -1) for e in runs])
    most = now = 0
    for _, step in edges:  # a finish sorts before a start at the same instant
        now += step
        most = max(most, now)
    return most


def test_a_concurrency_key_runs_at_most_its_limit_and_keys_are_independent(platform):
    p = platform
    key = _setup(p, "flow1")
    p.start_worker(concurrency=6)
    # N + 2 = 4 of key "alpha" (limit 2), 2 of "beta": each naps 2 s (the first digit of its JSON)
    alpha = [_one(p, key, "flow1", "work", {"customer": "alpha", "seconds": 2}) for _ in range(4)]
    beta = [_one(p, key, "flow1", "work", {"customer": "beta", "seconds": 2}) for _ in range(2)]
    waiting = p.wait(key, alpha[3], timeout=20, until=lambda e: e["waiting_for"] is not None)
    assert waiting["status"] == "queued" and "concurrency/flow/work/alpha" in waiting["waiting_for"], waiting
    assert waiting["flow"] == {"concurrency": {"key": "alpha", "limit": 2}}
    held = {i["name"]: i for i in p.call(key, "GET", "/api/v1/locks").json()["items"]}
    assert len(held["concurrency/flow/work/alpha"]["holders"]) == 2, held
    shown = _cli(p, key, "locks")
    assert shown.returncode == 0 and "concurrency/flow/work/alpha" in shown.stdout and "(+1)" in shown.stdout, \
        shown.stdout
    runs = {i: p.wait(key, i, timeout=90) for i in alpha + beta}
    assert all(e["status"] == "succeeded" for e in runs.values()), runs
    assert _most_at_once([runs[i] for i in alpha]) == 2      # never more than 2 alpha at once...
    assert _most_at_once([runs[i] for i in beta]) == 2       # ...and beta ran beside them, not behind
    first_alpha_done = min(_t(runs[i]["finished_at"]) for i in alpha)
    assert all(_t(runs[i]["started_at"]) < first_alpha_done for i in beta), "beta waited for alpha"
    started = [_t(runs[i]["started_at"]) for i in alpha]
    assert max(started[:2]) < min(started[2:]) and started[2] <= started[3]   # first come, first served
    assert p.call(key, "GET", "/api/v1/locks").json()["items"] == []


def test_a_debounced_burst_runs_once_with_the_last_payload(platform):
    p = platform
    key = _setup(p, "flow2")
    p.start_worker(concurrency=3)
    burst = [_one(p, key, "flow2", "save", {"doc": "d1", "n": n}) for n in range(4)]
    other = _one(p, key, "flow2", "save", {"doc": "d2", "n": 9})
    last = p.wait(key, burst[-1], timeout=60)
    assert last["status"] == "succeeded" and '"n":3' in last["result"], last
    assert _t(last["started_at"]) - _t(last["created_at"]) >= dt.timedelta(seconds=2)  # the quiet period
    for i in burst[:-1]:
        e = p.wait(key, i, timeout=30)
        assert (e["status"], e["superseded_by"], e["started_at"]) == ("superseded", last["id"], None), e
        assert e["seq"] is not None and e["waiting_for"] is None
    assert p.wait(key, other, timeout=30)["status"] == "succeeded"   # another key: its own run
    listed = p.call(key, "GET", "/api/v1/executions", params={"status": "superseded"}).json()["items"]
    assert sorted(e["id"] for e in listed) == sorted(burst[:-1])
    shown = _cli(p, key, "executions", "show", burst[0])
    assert shown.returncode == 0 and "superseded by" in shown.stdout and last["id"] in shown.stdout, shown.stdout
    listed = _cli(p, key, "executions", "--status", "superseded", "--json")
    assert listed.returncode == 0 and burst[0] in listed.stdout, listed.stderr


def test_a_rate_limit_holds_starts_to_the_declared_rate(platform):
    p = platform
    key = _setup(p, "flow3")
    p.start_worker(concurrency=4)
    r = p.post(key, "flow3", "call", [{"n": n} for n in range(13)])
    assert r.status_code == 200, r.text                     # the webhook answers at once: nothing rejected
    ids = r.json()["executions"]
    p.wait(key, ids[-1], timeout=20, until=lambda e: (e["waiting_for"] or "").startswith("rate_limit key"))
    runs = [p.wait(key, i, timeout=60) for i in ids]
    assert all(e["status"] == "succeeded" for e in runs)
    starts = sorted(_t(e["started_at"]) for e in runs)
    rate = (len(starts) - 1) / (starts[-1] - starts[0]).total_seconds()
    print(f"rate_limit 4/s: measured {rate:.2f}/s over {len(starts)} starts")
    # the limit (4/s, burst 1) is a ceiling: each execution got a reserved start 1/4 s after the
    # previous one and never starts before it (late is allowed: a busy or loaded worker), so by any
    # time t at most 1 + 4 x (t - the first start) have started; 0.25 s of slack for the first
    # start's own delay between its reservation and its recorded start
    for k in range(1, len(starts)):
        since = (starts[k] - starts[0]).total_seconds()
        assert since >= k / 4 - 0.25, f"start {k} came {since:.3f} s after the first: above 4/s"
    # and the holding is not much slower than the rate (a loaded host delays starts, never hastens them)
    assert rate <= 4.4 and rate >= 2.5, f"measured {rate:.2f}/s for a declared 4/s"


def test_a_payload_without_the_keys_path_is_refused_and_undeclared_events_carry_no_flow(platform):
    p = platform
    key = _setup(p, "flow4")
    r = p.post(key, "flow4", "work", [{"customer": "a", "seconds": 1}, {"seconds": 1}])
    assert r.status_code == 422, r.text
    body = r.json()
    assert "$.customer" in body["message"] and body["errors"]["data"]["1"] == [
        "$.customer: missing (a flow-control key of the event)"], body
    plain = _one(p, key, "flow4", "plain", {"x": 1})
    e = p.call(key, "GET", f"/api/v1/executions/{plain}").json()
    assert e["flow"] is None and e["superseded_by"] is None


PRIORITY_YAML = """
id: prio
max_priority: 8
queues: [{id: q}]
jobs:
  - event: {id: low, schema: {id: s, schemaref: any.json}, supplierqueue: q, runtime: echo, priority: 2}
  - event: {id: high, schema: {id: s, schemaref: any.json}, supplierqueue: q, runtime: echo, priority: 9}
runtimes:
  - {id: echo, moduleref: echo.wasm}
"""


def test_priorities_reorder_a_backlog_and_the_header_is_bounded(platform):
    p = platform
    key = p.tenant("flow5")
    for f in ("jobicolets/echo.wasm", "schemas/any.json"):
        p.upload(key, example(f))
    p.deploy(key, PRIORITY_YAML)
    # a backlog with no worker: lows first, then highs, then one low sent with the header at 8
    lows = [_one(p, key, "flow5", "low", {"n": n}) for n in range(4)]
    highs = [_one(p, key, "flow5", "high", {"n": n}) for n in range(4)]
    r = p.post(key, "flow5", "low", [{"n": 9}], headers={"X-Jobico-Priority": "8"})
    assert r.status_code == 200, r.text
    raised = r.json()["executions"][0]
    for bad in ("9", "0", "soon"):  # above the package's max_priority (8), or not 1..8
        r = p.post(key, "flow5", "low", [{"n": 1}], headers={"X-Jobico-Priority": bad})
        assert r.status_code == 422 and "X-Jobico-Priority must be an integer from 1 to 8" in r.json()["message"]
    p.start_worker(concurrency=1)
    runs = {i: p.wait(key, i, timeout=60) for i in lows + highs + [raised]}
    assert all(e["status"] == "succeeded" for e in runs.values())
    assert runs[raised]["priority"] == 8 and runs[lows[0]]["priority"] == 2
    order = [i for i, _ in sorted(runs.items(), key=lambda kv: _t(kv[1]["started_at"]))]
    assert order == highs + [raised] + lows, order   # priority first, creation order within one


def test_the_example_package_deploys_and_runs(platform):
    """examples/packages/flow.yaml, as the docs tell users to deploy it."""
    p = platform
    key = p.tenant("flow6")
    for f in ("jobicolets/nap.wasm", "schemas/any.json"):
        p.upload(key, example(f))
    p.deploy(key, example("packages/flow.yaml").read_text())
    p.start_worker(concurrency=2)
    ids = [_one(p, key, "flow6", ev, {"customer": "acme", "doc": "readme", "seconds": 1})
           for ev in ("sync_account", "notify_partner", "reindex", "urgent_sync")]
    runs = [p.wait(key, i, timeout=60) for i in ids]
    assert [e["status"] for e in runs] == ["succeeded"] * 4, runs
    assert runs[0]["flow"] == {"concurrency": {"key": "acme", "limit": 2}} and runs[3]["priority"] == 9
    # the CLI shows them: the package (its YAML) and each execution's flow control and priority
    shown = _cli(p, key, "show", "flow")
    assert shown.returncode == 0 and "concurrency: {key: $.customer, limit: 2}" in shown.stdout, shown.stderr
    shown = _cli(p, key, "executions", "show", ids[0])
    assert shown.returncode == 0 and "concurrency 'acme' (limit 2)" in shown.stdout, shown.stdout
    shown = _cli(p, key, "executions", "show", ids[3])
    assert shown.returncode == 0 and "priority" in shown.stdout and " 9" in shown.stdout, shown.stdout


def test_a_tenants_priorities_never_pass_another_tenants_turn(platform):
    p = platform
    keys = {}
    for tenant, line in (("flow7a", "priority: 10"), ("flow7b", "retries: 0")):
        keys[tenant] = key = p.tenant(tenant)
        for f in ("jobicolets/echo.wasm", "schemas/any.json"):
            p.upload(key, example(f))
        p.deploy(key, f"""
id: fair
queues: [{{id: q}}]
jobs:
  - event: {{id: e, schema: {{id: s, schemaref: any.json}}, supplierqueue: q, runtime: echo, {line}}}
runtimes:
  - {{id: echo, moduleref: echo.wasm}}
""")
    a = [_one(p, keys["flow7a"], "flow7a", "e", {"n": n}) for n in range(6)]   # urgent, first
    b = [_one(p, keys["flow7b"], "flow7b", "e", {"n": n}) for n in range(3)]   # no priority, after
    p.start_worker(concurrency=1)
    runs = {i: p.wait(keys["flow7a"] if i in a else keys["flow7b"], i, timeout=60) for i in a + b}
    order = [i for i, _ in sorted(runs.items(), key=lambda kv: _t(kv[1]["started_at"]))]
    assert max(order.index(i) for i in b) <= 6, order   # the queues took turns: b did not wait for all of a
