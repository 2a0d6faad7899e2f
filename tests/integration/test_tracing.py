"""Traces end to end (jobico_core.tracing), seen by the OpenTelemetry SDK's in-memory exporter.

Real PostgreSQL, Redis and S3, real WASM: the events go through the webhook (Flask test
client), their task messages are read back from the tenant's Redis list (headers included)
and run with ``executor.run_execution`` / ``batch.run_batch`` in this process, as
tests/integration/test_batch.py does, so every span lands in this process's exporter.
"""
from __future__ import annotations

import json
import re
import threading
import time

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from jobico_core import tracing
from jobico_core.broker import EXECUTE_BATCH_TASK, EXECUTE_TASK
from jobico_worker.batch import run_batch
from jobico_worker.executor import run_execution
from tests.e2e.helpers import serve_app

from .helpers import ROOT
from .test_batch import rows, take
from .test_cli import Cli

QUEUE = "jobico.demo.hello.main"
INCOMING_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
INCOMING_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def exporter():
    spans = InMemorySpanExporter()
    tracing.setup("jobico-test", exporter=spans)
    yield spans
    tracing.shutdown()


@pytest.fixture
def h(make_api):
    return _demo(make_api())


def _demo(api):
    """``api`` with tenant ``demo`` and the demo package deployed (``api.t``: its handle)."""
    t = api.tenant("demo")
    for name in ("jobicolets/greet.wasm", "jobicolets/echo.wasm", "schemas/hello.json", "schemas/result.json"):
        path = ROOT / "examples" / name
        assert api.upload(t, path.name, path.read_bytes()).status_code == 201
    r = api.deploy(t, (ROOT / "examples/packages/hello.yaml").read_text())
    assert r.status_code == 201, r.get_json()
    api.t = t
    return api


def runtime():
    from jobico_runtime import get_runtime
    return get_runtime()


def hexid(n: int, width: int) -> str:
    return format(n, f"0{width}x")


def children(spans, parent, name: str) -> list:
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id
            and s.name == name]


def one(xs: list):
    assert len(xs) == 1, xs
    return xs[0]


def test_a_chained_execution_is_one_trace_from_the_webhook_to_the_chained_record(h, exporter, tmp_path):
    traceparent = f"00-{INCOMING_TRACE}-{INCOMING_SPAN}-01"
    r = h.post_events("demo", "hello", {"data": [{"name": "Ada"}]},
                      headers={**h.t.headers, "traceparent": traceparent})
    assert r.status_code == 200, r.get_json()
    [eid] = r.get_json()["executions"]
    [(name, args, headers)] = take(h, QUEUE)
    assert name == EXECUTE_TASK and args[0] == eid
    first = rows(h, [eid])[eid]
    assert first.trace_id == INCOMING_TRACE
    assert headers["traceparent"] == f"00-{INCOMING_TRACE}-{first.trace_parent}-01"

    rec = run_execution(h.ctx, runtime(), eid, args[1], worker="w1")
    assert rec["status"] == "succeeded" and rec["trace_id"] == INCOMING_TRACE
    [(name, (child_id, payload), child_headers)] = take(h, QUEUE)
    child = rows(h, [child_id])[child_id]
    assert child.chained_from == eid and child.trace_id == INCOMING_TRACE
    assert child_headers["traceparent"] == f"00-{INCOMING_TRACE}-{child.trace_parent}-01"
    rec2 = run_execution(h.ctx, runtime(), child_id, payload, worker="w1")
    assert rec2["status"] == "succeeded" and rec2["trace_id"] == INCOMING_TRACE

    spans = exporter.get_finished_spans()
    assert {hexid(s.context.trace_id, 32) for s in spans} == {INCOMING_TRACE}  # one trace, the caller's
    webhook = one([s for s in spans if s.name == "jobico.webhook"])
    assert hexid(webhook.parent.span_id, 16) == INCOMING_SPAN and webhook.parent.is_remote
    assert webhook.attributes["jobico.tenant"] == "demo" and webhook.attributes["jobico.executions"] == 1
    # the first request after the deploy finds the routing counter moved: checked again, admitted once
    *moved, admit = children(spans, webhook, "jobico.admit")
    assert len(moved) <= 1 and all(s.attributes.get("jobico.routing_moved") for s in moved), moved
    assert "jobico.routing_moved" not in admit.attributes and all(s.status.is_ok for s in moved + [admit])
    one(children(spans, webhook, "jobico.publish"))
    execute = one(children(spans, webhook, "jobico.execute"))
    assert first.trace_parent == hexid(webhook.context.span_id, 16)  # the row names its parent span
    assert execute.attributes["jobico.execution_id"] == eid and execute.attributes["jobico.attempt"] == 1
    one(children(spans, execute, "jobico.claim"))
    run = one(children(spans, execute, "jobico.run"))
    assert run.attributes["jobico.module"] == "greet.wasm" and run.attributes["jobico.status"] == "succeeded"
    record = one(children(spans, execute, "jobico.record"))
    assert record.attributes["jobico.status"] == "succeeded" and record.attributes["jobico.chained"] == child_id
    assert child.trace_parent == hexid(record.context.span_id, 16)
    one(children(spans, record, "jobico.publish"))  # the chained task, published by the record
    chained = one(children(spans, record, "jobico.execute"))
    assert chained.attributes["jobico.execution_id"] == child_id and chained.attributes["jobico.trigger"] == "chain"
    one(children(spans, chained, "jobico.claim"))
    assert one(children(spans, chained, "jobico.run")).attributes["jobico.module"] == "echo.wasm"
    assert one(children(spans, chained, "jobico.record")).attributes["jobico.execution_id"] == child_id
    # webhook, admit (and the recheck's), publish, 2 x (execute, claim, run, record), the chain's publish
    assert len(spans) == 12 + len(moved)

    server, url = serve_app(h.app)  # the record shows its trace: API and `jobico executions show`
    try:
        cli = Cli(url, tmp_path / "jobico-home")
        assert cli.json("executions", "show", child_id, token=h.t.key)["trace_id"] == INCOMING_TRACE
        human = cli("executions", "show", child_id, token=h.t.key).stdout
    finally:
        server.shutdown()
    assert re.search(rf"│ trace +{INCOMING_TRACE} ", human), human


def test_a_batch_gives_each_execution_its_own_span_and_its_chain_continues_it(h, exporter):
    r = h.post_events("demo", "hello", {"data": [{"name": "Ada"}, {"name": "Linus"}]}, headers=h.t.headers)
    assert r.status_code == 200, r.get_json()
    ids = r.get_json()["executions"]
    [(name, args, headers)] = take(h, QUEUE)
    assert name == EXECUTE_BATCH_TASK and args[0] == ids and "traceparent" not in headers
    res = run_batch(h.ctx, runtime(), ids, worker="w1")
    assert len(res.recorded) == 2

    spans = exporter.get_finished_spans()
    webhook = one([s for s in spans if s.name == "jobico.webhook"])
    assert webhook.parent is None  # no traceparent header: a new trace
    trace = hexid(webhook.context.trace_id, 32)
    executes = children(spans, webhook, "jobico.execute")
    assert sorted(s.attributes["jobico.execution_id"] for s in executes) == sorted(ids)
    got = rows(h, ids)
    assert {got[i].trace_id for i in ids} == {trace}
    for s in executes:
        one(children(spans, s, "jobico.claim"))
        one(children(spans, s, "jobico.run"))
    by_exec = {s.attributes["jobico.execution_id"]: hexid(s.context.span_id, 16) for s in executes}
    chained = take(h, QUEUE)
    child_ids = [x for _, a, _ in chained for x in (a[0] if isinstance(a[0], list) else [a[0]])]
    kids = rows(h, child_ids)
    assert len(kids) == 2
    for k in kids.values():  # each chained execution hangs under its own parent's execution span
        assert k.trace_id == trace and k.trace_parent == by_exec[k.chained_from]


def test_requests_admitted_together_each_have_their_own_admit_span(make_api, exporter):
    """Concurrent requests grouped by the group commit, admitted by one script call for the group
    (a bucket of 3 tokens): every request's webhook span has one ``jobico.admit`` child, ok for
    the admitted ones, an error for the refused ones (429); one publish per group."""
    api = _demo(make_api(ingest_linger_ms=1000, rate_limit=1, rate_burst=3, max_elements=1))
    api.ctx.fresh_webhook_cache()  # the deploy's routing change seen: no request is checked twice
    exporter.clear()
    n = 6
    out: list = [None] * n
    start = threading.Barrier(n)

    def send(i: int) -> None:
        client = api.app.test_client()
        start.wait()
        out[i] = client.post("/events/demo/hello", data=json.dumps({"data": [{"name": f"p{i}"}]}),
                             headers={"Content-Type": "application/json", **api.t.headers})

    started = time.monotonic()
    threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    elapsed = time.monotonic() - started
    codes = [r.status_code for r in out]
    assert sorted(set(codes)) == [200, 429] and 3 <= codes.count(200) <= 3 + int(elapsed), codes
    assert api.ctx.ingest_batches.flushes < n
    spans = exporter.get_finished_spans()
    webhooks = [s for s in spans if s.name == "jobico.webhook"]
    assert len(webhooks) == n
    admits = [one(children(spans, w, "jobico.admit")) for w in webhooks]
    assert all(a.attributes["jobico.events"] == 1 and "jobico.routing_moved" not in a.attributes for a in admits)
    assert sum(a.status.is_ok for a in admits) == codes.count(200)
    for w, a in zip(webhooks, admits):
        assert w.start_time <= a.start_time <= a.end_time <= w.end_time
    publishes = [s for s in spans if s.name == "jobico.publish"]
    assert 1 <= len(publishes) <= api.ctx.ingest_batches.flushes
    assert all(p.parent.span_id in {w.context.span_id for w in webhooks} for p in publishes)


def test_tracing_off_creates_no_span_and_stores_no_trace(h):
    assert not tracing.ENABLED
    r = h.post_events("demo", "hello", {"data": [{"name": "Ada"}]},
                      headers={**h.t.headers, "traceparent": f"00-{INCOMING_TRACE}-{INCOMING_SPAN}-01"})
    [eid] = r.get_json()["executions"]
    [(_, args, headers)] = take(h, QUEUE)
    assert "traceparent" not in headers
    rec = run_execution(h.ctx, runtime(), eid, args[1], worker="w1")
    assert rec["status"] == "succeeded" and rec["trace_id"] is None
    [(_, (child_id, _), _)] = take(h, QUEUE)
    assert rows(h, [child_id])[child_id].trace_id is None
    got = h.client.get(f"/api/v1/executions/{eid}", headers=h.t.headers).get_json()
    assert "trace_id" in got and got["trace_id"] is None
