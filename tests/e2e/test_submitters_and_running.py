"""Who submitted each execution (key name, the tenant's submitter header, chain; cron in
test_cron.py) and the running view, on the real platform, through the API and the CLI."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.waiting import wait_until

from .helpers import example

JOBICO = Path(sys.executable).parent / "jobico"

SLEEPY_YAML = """
id: sleepy
queues: [{id: q}]
jobs:
  - event: {id: nap, schema: {id: s, schemaref: any.json}, supplierqueue: q, runtime: sleeper,
            limits: {timeout_ms: 5000, fuel: 10000000000}}
runtimes: [{id: sleeper, moduleref: sleeper.wasm}]
"""


def cli(p, token: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(JOBICO), "--api-url", p.url, "--token", token, *args], capture_output=True,
                          text=True, timeout=60)


def test_submitter_of_key_header_and_chain(platform):
    p = platform
    key = p.tenant("subs")
    for f in ("jobicolets/greet.wasm", "jobicolets/echo.wasm", "schemas/hello.json", "schemas/result.json"):
        p.upload(key, example(f))
    p.deploy(key, example("packages/hello.yaml").read_text().replace("tenant: demo", "tenant: subs"))
    r = p.admin("POST", "/api/v1/tenants/subs/keys", json={"name": "ci-bot"})
    assert r.status_code == 201, r.text
    ci_key = r.json()["key"]
    p.start_worker()

    by_default = p.post(key, "subs", "hello", [{"name": "a"}]).json()["executions"][0]
    by_ci = p.post(ci_key, "subs", "hello", [{"name": "b"}]).json()["executions"][0]
    # the header is ignored until the tenant names it
    ignored = p.post(key, "subs", "hello", [{"name": "c"}], headers={"X-Submitter": "alice"}).json()
    # the admin names the header (the CLI's `jobico tenant submitter-header`)
    res = cli(p, "admin-token-for-tests-0123456789", "tenant", "submitter-header", "subs", "X-Submitter",
              "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["submitter_header"] == "X-Submitter"
    by_alice = p.post(ci_key, "subs", "hello", [{"name": "d"}], headers={"x-submitter": "alice"}).json()
    no_header = p.post(ci_key, "subs", "hello", [{"name": "e"}]).json()["executions"][0]
    bad = p.post(key, "subs", "hello", [{"name": "f"}], headers={"X-Submitter": "x" * 200})
    assert bad.status_code == 400 and "X-Submitter" in bad.json()["message"], bad.text

    first = p.wait(key, by_default)
    assert (first["submitter"], first["trigger"]) == ("default", "webhook")
    assert p.wait(key, by_ci)["submitter"] == "ci-bot"
    assert p.wait(key, ignored["executions"][0])["submitter"] == "default"
    assert p.wait(key, by_alice["executions"][0])["submitter"] == "alice"
    assert p.wait(key, no_header)["submitter"] == "ci-bot"
    child = p.wait(key, first["chain"][0])  # hello -> hello_done, made by the worker
    assert (child["submitter"], child["trigger"], child["chained_from"]) == ("chain", "chain", by_default)
    assert first["worker"].startswith("w1@")

    r = p.call(key, "GET", "/api/v1/executions?submitter=alice")
    assert [e["id"] for e in r.json()["items"]] == by_alice["executions"]
    res = cli(p, key, "executions", "--submitter", "chain", "--json")
    assert res.returncode == 0, res.stderr
    chained = json.loads(res.stdout)["items"]
    assert child["id"] in {e["id"] for e in chained} and {e["submitter"] for e in chained} == {"chain"}
    res = cli(p, key, "executions", "--submitter", "ci-bot")  # the table for people
    assert res.returncode == 0 and no_header in res.stdout, res.stdout

    # a header that means something else cannot be chosen; the tenant list shows the setting
    r = p.admin("PATCH", "/api/v1/tenants/subs", json={"submitter_header": "Authorization"})
    assert r.status_code == 422 and "already means something" in r.json()["errors"]["submitter_header"][0], r.text
    assert p.admin("GET", "/api/v1/tenants/subs").json()["submitter_header"] == "X-Submitter"
    res = cli(p, "admin-token-for-tests-0123456789", "tenant", "submitter-header", "subs", "--clear")
    assert res.returncode == 0, res.stderr
    assert p.admin("GET", "/api/v1/tenants/subs").json()["submitter_header"] is None


def test_running_view_shows_a_sleeping_execution(platform):
    p = platform
    key = p.tenant("naps")
    for f in ("jobicolets/sleeper.wasm", "schemas/any.json"):
        p.upload(key, example(f))
    p.deploy(key, SLEEPY_YAML)
    res = cli(p, key, "executions", "running")
    assert res.returncode == 0 and "Nothing is running" in res.stdout + res.stderr
    p.start_worker("napper")
    nap = p.post(key, "naps", "nap", [{}]).json()["executions"][0]

    doc = wait_until(lambda: (d := p.call(key, "GET", "/api/v1/executions/running").json())["total"] and d, 30,
                     what="the execution shown as running")
    assert doc["truncated"] is False
    [group] = doc["packages"]
    assert group["package"] == "sleepy" and group["running"] == 1
    [e] = group["items"]
    assert e["id"] == nap and e["status"] == "running" and e["attempts"] == 1
    assert e["worker"].startswith("napper@") and e["age_s"] >= 0
    time.sleep(1.0)
    res = cli(p, key, "executions", "running", "--json")
    assert res.returncode == 0, res.stderr
    again = json.loads(res.stdout)["packages"][0]["items"][0]
    assert again["id"] == nap and again["age_s"] >= e["age_s"] + 0.9  # it ages
    res = cli(p, key, "executions", "running")
    assert res.returncode == 0 and nap in res.stdout and "sleepy" in res.stdout and "napper@" in res.stdout
    assert p.call(key, "GET", "/api/v1/executions/running?package=other").json()["packages"] == []

    done = p.wait(key, nap, timeout=30)
    assert done["status"] in ("timed_out", "limit_exceeded")
    assert p.call(key, "GET", "/api/v1/executions/running").json() == {"packages": [], "total": 0,
                                                                       "truncated": False}


BATCH_YAML = """
id: sleepy
queues: [{id: q}]
jobs:
  - event: {id: nap, schema: {id: s, schemaref: any.json}, supplierqueue: q, runtime: sleeper,
            limits: {timeout_ms: 3000, fuel: 10000000000}}
runtimes: [{id: sleeper, moduleref: sleeper.wasm}]
"""


def test_running_view_lists_one_execution_per_batch_task(platform):
    """One request of 3 events is one batch task: it claims the 3 (their records say running)
    but runs one at a time, so the view lists one running execution, 2 claimed behind it."""
    p = platform
    key = p.tenant("naps")
    for f in ("jobicolets/sleeper.wasm", "schemas/any.json"):
        p.upload(key, example(f))
    p.deploy(key, BATCH_YAML)
    naps = p.post(key, "naps", "nap", [{}, {}, {}]).json()["executions"]
    p.start_worker("napper", concurrency=1)

    wait_until(lambda: [p.call(key, "GET", f"/api/v1/executions/{i}").json()["status"] for i in naps].count("running")
               == 3, 30, what="the batch claiming all three")
    doc = p.call(key, "GET", "/api/v1/executions/running").json()
    [group] = doc["packages"]
    assert group["running"] == 1 and group["claimed"] == 2 and doc["total"] == 1, doc
    [e] = group["items"]
    assert e["id"] == naps[0] and e["batch_waiting"] == 2 and e["worker"].startswith("napper@")
    res = cli(p, key, "executions", "running")
    assert res.returncode == 0 and "1 running, 2 claimed behind them" in res.stdout, res.stdout + res.stderr
    assert naps[0] in res.stdout and naps[1] not in res.stdout and naps[2] not in res.stdout

    # every time the view is asked, at most one execution of the package is listed as running
    seen = set()

    def finished_while_one_at_a_time_runs() -> bool:
        if all(p.call(key, "GET", f"/api/v1/executions/{i}").json()["status"] not in ("queued", "running")
               for i in naps):
            return True
        doc = p.call(key, "GET", "/api/v1/executions/running").json()
        assert doc["total"] <= 1, doc
        for g in doc["packages"]:
            seen.update(i["id"] for i in g["items"])
            assert g["running"] + g["claimed"] <= 3
        return False

    wait_until(finished_while_one_at_a_time_runs, 60, what="the batch finishing", interval=0.1)
    assert seen <= set(naps) and len(seen) >= 2  # the listed one moved on through the batch
    assert p.call(key, "GET", "/api/v1/executions/running").json()["total"] == 0
