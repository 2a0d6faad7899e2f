"""Traces across processes: the API (this process, the SDK's in-memory exporter) and a real
Celery worker (prefork) exporting OTLP/HTTP to a collector stub that decodes what it receives."""
from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from jobico_core import tracing
from tests.waiting import wait_until

from .helpers import SERVE_POLL_S
from .test_platform import _setup_demo

TRACE = "0af7651916cd43dd8448eb211c80319c"


class Collector:
    """An OTLP/HTTP endpoint: every span received, as (name, trace id, span id, parent id, attributes),
    and the service that sent each (span id -> ``service.name``)."""

    def __init__(self):
        self.spans: list[tuple[str, str, str, str, dict]] = []
        self.services: dict[str, str] = {}
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                data = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    data = gzip.decompress(data)
                req = ExportTraceServiceRequest.FromString(data)
                for rs in req.resource_spans:
                    service = next((a.value.string_value for a in rs.resource.attributes
                                    if a.key == "service.name"), "")
                    for ss in rs.scope_spans:
                        for s in ss.spans:
                            collector.services[s.span_id.hex()] = service
                            attrs = {a.key: a.value.string_value or a.value.int_value for a in s.attributes}
                            collector.spans.append((s.name, s.trace_id.hex(), s.span_id.hex(),
                                                    s.parent_span_id.hex(), attrs))
                body = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": SERVE_POLL_S},
                         daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"


@pytest.fixture
def api_spans():
    spans = InMemorySpanExporter()
    tracing.setup("jobico-api-test", exporter=spans)
    yield spans
    tracing.shutdown()


def test_a_real_worker_continues_the_webhook_trace_and_the_chain(platform, api_spans):
    p = platform
    key = _setup_demo(p)
    collector = Collector()
    try:
        p.start_worker(extra_env={"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "100"})
        r = p.post(key, "demo", "hello", [{"name": "Ada"}],
                   headers={"traceparent": f"00-{TRACE}-b7ad6b7169203331-01"})
        assert r.status_code == 200, r.text
        [eid] = r.json()["executions"]
        first = p.wait(key, eid, until=lambda e: e["status"] == "succeeded" and e["chain"])
        child = p.wait(key, first["chain"][0])
        assert child["status"] == "succeeded" and first["trace_id"] == child["trace_id"] == TRACE

        def executes():
            got = {s[4].get("jobico.execution_id"): s for s in collector.spans if s[0] == "jobico.execute"}
            return got if {eid, child["id"]} <= set(got) and len(collector.spans) >= 8 else None

        got = wait_until(executes, 30, interval=0.1)
    finally:
        collector.server.shutdown()
    webhook = next(s for s in api_spans.get_finished_spans() if s.name == "jobico.webhook")
    assert format(webhook.context.trace_id, "032x") == TRACE
    assert {s[1] for s in collector.spans} == {TRACE}
    parent = got[eid]
    assert parent[3] == format(webhook.context.span_id, "016x")  # across processes, through the row
    names = {(s[0], s[3]) for s in collector.spans}
    for name in ("jobico.claim", "jobico.run", "jobico.record"):
        assert (name, parent[2]) in names
    record = next(s for s in collector.spans if s[0] == "jobico.record" and s[3] == parent[2])
    assert got[child["id"]][3] == record[2]  # the chained execution: a child of its parent's record
    for name in ("jobico.claim", "jobico.run", "jobico.record"):
        assert (name, got[child["id"]][2]) in names
    # the report's sample trace (pytest -s): the API's spans (in-memory exporter) and the worker's
    # (OTLP), as a tree
    rows = [(s.name, format(s.context.span_id, "016x"), format(s.parent.span_id, "016x") if s.parent else "",
             "jobico-api", dict(s.attributes or {})) for s in api_spans.get_finished_spans()]
    rows += [(s[0], s[2], s[3], collector.services.get(s[2], ""), s[4]) for s in collector.spans]

    def tree(parent: str, depth: int) -> None:
        for name, span, up, service, attrs in rows:
            if up == parent:
                eid_attr = attrs.get("jobico.execution_id", "")
                print(f"{'  ' * depth}{name} [{service}] span {span}{f' execution {eid_attr}' if eid_attr else ''}")
                tree(span, depth + 1)

    print(f"\ntrace {TRACE}")
    tree("b7ad6b7169203331", 1)
