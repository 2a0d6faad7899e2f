"""Operating the platform: Flower sees workers and tasks, Prometheus metrics
(API and worker), JSON logs carrying execution ids, per-tenant worker pools.

Real API, real Celery worker processes, real Flower, real Redis/PostgreSQL/S3.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
import redis
import requests

from tests.waiting import wait_until

from .helpers import ROOT, example, metric

HELLO_YAML = example("packages/hello.yaml").read_text()
FLOWER_AUTH = ("ops", "flower-test-password")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup_tenant(p, tenant: str) -> str:
    key = p.tenant(tenant)
    for f in ("jobicolets/greet.wasm", "jobicolets/echo.wasm", "schemas/hello.json", "schemas/result.json"):
        p.upload(key, example(f))
    p.deploy(key, HELLO_YAML.replace("tenant: demo", f"tenant: {tenant}"))
    return key


def poll(fn, timeout: float, what: str, interval: float = 0.3):
    """wait_until, a refused connection or a non-JSON answer counting as "not yet"."""
    return wait_until(fn, timeout, what=what, interval=interval, ignore=(requests.RequestException, ValueError))


@pytest.fixture
def flower(platform):
    port = free_port()
    log_path = platform.tmp / "flower.log"
    log = open(log_path, "ab")
    env = {**os.environ, **platform.env}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.pop("FLOWER_UNAUTHENTICATED_API", None)
    env["FLOWER_BASIC_AUTH"] = ":".join(FLOWER_AUTH)  # as compose and the chart run it (docs/operating.md)
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "jobico_worker.app", "flower", "--address=127.0.0.1",
         f"--port={port}", "--persistent=False"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        poll(lambda: proc.poll() is None and requests.get(url + "/healthcheck", timeout=2).status_code == 200,
             45, f"flower answering /healthcheck\n{log_path.read_text(errors='replace')[-3000:]}")
        yield url
    finally:
        try:
            os.killpg(proc.pid, 15)
            proc.wait(15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, 9)
            except ProcessLookupError:
                pass
        log.close()


def test_flower_metrics_and_json_logs(platform, flower):
    p = platform
    key = setup_tenant(p, "demo")
    metrics_port = free_port()
    worker = p.start_worker("w1", concurrency=2, extra_env={
        "JOBICO_LOG_FORMAT": "json", "JOBICO_WORKER_METRICS_PORT": str(metrics_port)})

    # Flower sees the worker (through its heartbeats/events)
    workers = poll(lambda: [w for w in requests.get(flower + "/api/workers?refresh=1", auth=FLOWER_AUTH,
                                                    timeout=20).json()
                            if w.startswith("w1@")], 40, "flower listing worker w1")
    assert workers
    assert requests.get(flower + "/api/workers", timeout=20).status_code == 401  # no credentials, no answer

    r = p.post(key, "demo", "hello", [{"name": "Ada"}])
    assert r.status_code == 200, r.text
    execution_id = r.json()["executions"][0]
    assert p.wait(key, execution_id)["status"] == "succeeded"

    # ... and the task, under the execution id, with the shadow name, finished
    def task():
        tasks = requests.get(flower + "/api/tasks", auth=FLOWER_AUTH, timeout=10).json()
        t = tasks.get(execution_id)
        return t if t and t.get("state") == "SUCCESS" else None
    t = poll(task, 60, f"flower showing task {execution_id} as SUCCESS")
    assert t["uuid"] == execution_id
    assert t["name"] in ("jobico.execute", "jobico.execute[demo/hello/hello]"), t["name"]
    assert t["worker"].startswith("w1@")

    # the worker's metrics (main process, adding up the prefork children)
    def worker_metrics():
        text = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        return text if 'jobico_executions_total{status="succeeded",tenant="demo"}' in text else None
    text = poll(worker_metrics, 30, "worker metrics counting the execution")
    assert metric(text, "jobico_executions_total", tenant="demo", status="succeeded") >= 1
    assert metric(text, "jobico_execution_duration_seconds_count", status="succeeded") >= 1
    assert metric(text, "jobico_module_cache_misses_total") >= 1

    # the API's metrics: accepted, rejected by reason, queue depth per tenant
    assert p.post("not-a-key", "demo", "hello", [{"name": "x"}]).status_code == 401
    assert p.post(key, "demo", "nosuchevent", [{"name": "x"}]).status_code == 404
    api = requests.get(p.url + "/metrics", timeout=10)
    assert api.status_code == 200 and api.headers["Content-Type"].startswith("text/plain")
    assert metric(api.text, "jobico_events_accepted_total", tenant="demo") >= 1
    assert metric(api.text, "jobico_events_rejected_total", tenant="demo", reason="unauthorized") >= 1
    assert metric(api.text, "jobico_events_rejected_total", tenant="demo", reason="not_found") >= 1
    assert metric(api.text, "jobico_queue_depth", tenant="demo") == 0
    assert metric(api.text, "jobico_queue_depth_up") == 1

    # JSON logs: every line of the worker's own loggers parses, and they name the execution
    worker.stop()
    records = []
    for line in worker.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    assert records and all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    mine = [r for r in records if r.get("execution_id") == execution_id]
    assert mine and mine[0]["tenant"] == "demo" and mine[0]["logger"] == "jobico.worker", records[-5:]


def test_per_tenant_pool_consumes_only_its_tenants(platform):
    p = platform
    key_a = setup_tenant(p, "pool-a")
    p.start_worker("pool", concurrency=1, extra_env={"JOBICO_WORKER_TENANTS": "pool-a"})
    # deployed after the worker started: reaches it through the add_consumer broadcast
    key_b = setup_tenant(p, "pool-b")
    time.sleep(2.5)  # a few queue refreshes (JOBICO_QUEUE_REFRESH=1 in the platform)
    rb = p.post(key_b, "pool-b", "hello", [{"name": "B"}])
    ra = p.post(key_a, "pool-a", "hello", [{"name": "A"}])
    assert ra.status_code == rb.status_code == 200
    assert p.wait(key_a, ra.json()["executions"][0])["status"] == "succeeded"
    time.sleep(2.0)
    b = p.call(key_b, "GET", f"/api/v1/executions/{rb.json()['executions'][0]}").json()
    assert b["status"] == "queued", b
    r = redis.Redis.from_url(p.settings.redis_url)
    assert r.llen("jobico.pool-b.hello.main") == 1
    assert r.llen("jobico.pool-a.hello.main") == 0
