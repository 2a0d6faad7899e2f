"""Traces end to end (OpenTelemetry): setup and the helpers every layer uses.

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (``setup()``, called once per process by the
API and the worker); then spans go to that OTLP/HTTP endpoint. When off, no span is created:
``ENABLED`` is checked first by every helper, and the SDK is not even imported.

An execution's trace context lives on its row (``trace_id``, ``trace_parent``: the span its
own spans hang under), so a batch task, a retry, a lease recovery's requeue and a chained event
all continue the trace of the request that created the execution. Its task message carries
``traceparent`` too (W3C Trace Context, in the Celery message headers), for other consumers.
docs/operating.md lists the spans and their attributes.
"""
from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any

ENABLED = False       # checked once by every helper: False, and tracing costs an attribute check
_tracer: Any = None
_provider: Any = None
_NOOP = contextlib.nullcontext()
SERVICE = "jobico"


def setup(service: str, exporter: Any = None) -> bool:
    """Enable tracing for this process when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (or an
    ``exporter`` is given: tests pass the SDK's in-memory one, exported synchronously).
    Returns whether tracing is on. Called again, it replaces the previous setup."""
    global ENABLED, _tracer, _provider
    if exporter is None and not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return ENABLED
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    if _provider is not None:
        _provider.shutdown()
    _provider, _tracer, ENABLED = provider, provider.get_tracer("jobico"), True
    return True


def shutdown() -> None:
    """Flush and stop (tests; a process's exit flushes through the SDK's atexit hook)."""
    global ENABLED, _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    ENABLED, _tracer, _provider = False, None, None


def traceparent(trace_id: str | None, span_id: str | None) -> str | None:
    """The W3C ``traceparent`` of a stored context (None when there is none)."""
    return f"00-{trace_id}-{span_id}-01" if trace_id and span_id else None


def _context(trace_id: str | None, span_id: str | None) -> Any:
    if not trace_id or not span_id:
        return None
    from opentelemetry import trace
    sc = trace.SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True,
                           trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED))
    return trace.set_span_in_context(trace.NonRecordingSpan(sc))


def extracted(headers: Mapping[str, str]) -> Any:
    """The context of a request's ``traceparent`` header (None: absent or malformed, a new trace)."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    value = headers.get("traceparent")
    return TraceContextTextMapPropagator().extract({"traceparent": value}) if value else None


def span(name: str, attributes: dict[str, Any] | None = None, *, parent: Any = None,
         kind: str = "internal", start_ns: int | None = None) -> Any:
    """A context manager: a span (child of ``parent``, a context, else of the current span);
    a shared no-op one when tracing is off."""
    if not ENABLED:
        return _NOOP
    from opentelemetry.trace import SpanKind
    return _tracer.start_as_current_span(name, context=parent, attributes=attributes,
                                         kind=getattr(SpanKind, kind.upper()), start_time=start_ns)


def span_between(name: str, attributes: dict[str, Any] | None, start_ns: int | None, end_ns: int | None) -> Any:
    """A context manager: a span, child of the current one, that covers what ran elsewhere
    from ``start_ns`` to ``end_ns`` (``now_ns()`` values; another thread did the work for this
    one); inside it, ``set_attributes`` and an exception raised mark it as ``span`` would. A
    shared no-op one when tracing is off or a time is missing."""
    if not ENABLED or start_ns is None or end_ns is None:
        return _NOOP
    return _between(name, attributes, start_ns, end_ns)


@contextlib.contextmanager
def _between(name: str, attributes: dict[str, Any] | None, start_ns: int, end_ns: int) -> Iterator[Any]:
    from opentelemetry import trace
    s = _tracer.start_span(name, attributes=attributes, start_time=start_ns)
    try:
        with trace.use_span(s, end_on_exit=False):
            yield s
    finally:
        s.end(end_time=end_ns)


def current_ids() -> tuple[str | None, str | None]:
    """(trace id, span id) of the current span, as hex; (None, None) when tracing is off or none."""
    if not ENABLED:
        return None, None
    from opentelemetry import trace
    sc = trace.get_current_span().get_span_context()
    if not sc.is_valid:
        return None, None
    return format(sc.trace_id, "032x"), format(sc.span_id, "016x")


def now_ns() -> int | None:
    """A start time for a span opened later (``execution``); None when tracing is off."""
    return time.time_ns() if ENABLED else None


def set_attributes(**attributes: Any) -> None:
    """Add attributes (None values skipped) to the current span."""
    if not ENABLED:
        return
    from opentelemetry import trace
    current = trace.get_current_span()
    for k, v in attributes.items():
        if v is not None:
            current.set_attribute(f"jobico.{k}", v)


@contextlib.contextmanager
def _execution(row: Any, worker: str, claim: tuple[int, int] | None, start_ns: int | None) -> Iterator[None]:
    attrs = {"jobico.execution_id": row.id, "jobico.tenant": row.tenant_id, "jobico.package": row.package,
             "jobico.event": row.event, "jobico.trigger": row.trigger, "jobico.attempt": row.attempts,
             "jobico.worker": worker}
    with span("jobico.execute", attrs, parent=_context(row.trace_id, row.trace_parent), kind="consumer",
              start_ns=start_ns):
        if claim is not None:
            _tracer.start_span("jobico.claim", attributes={"jobico.execution_id": row.id},
                               start_time=claim[0]).end(end_time=claim[1])
        yield


def execution(row: Any, worker: str, claim: tuple[int, int] | None = None, start_ns: int | None = None) -> Any:
    """The span of one claimed execution (``jobico.execute``), a child of the span its row names
    (``trace_parent``: the request's, or the chained-from execution's record), started at
    ``start_ns`` (else now), with a ``jobico.claim`` child covering ``claim`` (start, end)."""
    if not ENABLED:
        return _NOOP
    return _execution(row, worker, claim, start_ns)


def claimed(start_ns: int | None) -> tuple[int, int] | None:
    """(start, now) of a claim that began at ``start_ns`` (``now_ns()``); None when tracing is off."""
    return (start_ns, time.time_ns()) if ENABLED and start_ns is not None else None
