"""The webhook's core: ``POST /events/<tenant>/<event>`` without the HTTP.

Checks in the contract's order: body size (413), tenant exists (404),
credentials (401/403), event exists (404), body shape (400), element size
(413), schema (422); then idempotency, then admission (429; a signed request's
signature already spent: 409), then rows + tasks (all or nothing).
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import metrics, ratelimit, tracing
from ..canonical import dumps_parsed_each, loads
from ..db import Tenant
from ..errors import BadRequest, Conflict, Invalid, JobicoError, NotFound, TooLarge, TooManyRequests, Unavailable
from ..flow import MAX_PRIORITY, PRIORITY_HEADER, missing_keys, request_priority
from ..limits import Limits, resolve
from ..schemas import elements_errors
from .context import ROUTING_GENERATION, Context
from .executions import enqueue, new_executions
from .files import schema_validator
from .packages import route
from .tenants import bearer_token, check_webhook_credentials, hash_key, spent_signature, webhook_submitter

log = logging.getLogger(__name__)
IDEMPOTENCY_PENDING_WAIT = 10.0  # seconds a repeat waits for the first request to finish


@dataclass(frozen=True)
class _TenantAuth:
    """What the webhook needs of a tenant row (cached: JOBICO_WEBHOOK_CACHE_SECONDS)."""
    id: str
    webhook_auth: str
    signing_secret: str | None
    submitter_header: str | None
    # which tenant of that name: a tenant deleted and created again under its name is another one,
    # and state kept outside the database by name (idempotency keys) must not carry over
    incarnation: str
    previous_signing_secret: str | None = None
    previous_secret_expires_at: Any = None  # a datetime: checked at each request, so caching is safe


def _identify(ctx: Context, tenant_id: str, event: str, body: bytes, headers: Mapping[str, str]):
    """Tenant (404), credentials (401/403), event (404), in that order; returns (submitter, route,
    the spent-signature record of a signed request: ``tenants.spent_signature``, or None).

    The three lookups are served from the per-process ``ctx.webhook_cache`` for
    JOBICO_WEBHOOK_CACHE_SECONDS (found ones only: a new tenant, key or package is
    seen at once); any change empties every process's cache through a Redis
    counter, so a removed one is seen at the next request too (``_accept``).
    """
    cache = ctx.webhook_cache  # checked against ROUTING_GENERATION by the caller (``_accept``)
    tenant = cache.get(("tenant", tenant_id))
    if tenant is not None and tenant.id != tenant_id:
        tenant = None
    if tenant is None:
        row = None
        if "\x00" not in tenant_id:  # PostgreSQL refuses NUL
            with ctx.db.session() as s:
                row = s.get(Tenant, tenant_id)
        if row is None:
            raise NotFound(f"tenant {tenant_id!r} does not exist")
        tenant = cache.put(("tenant", tenant_id), _TenantAuth(row.id, row.webhook_auth, row.signing_secret,
                                                                 row.submitter_header, row.created_at.isoformat(),
                                                                 row.previous_signing_secret,
                                                                 row.previous_secret_expires_at))
    submitter = _submitter(ctx, tenant, headers, body)
    once = spent_signature(tenant, headers)  # after the signature is verified, never before
    info = cache.get(("route", tenant_id, event))
    if info is not None and (info.tenant != tenant_id or event not in info.spec.events):
        log.error("webhook cache: route %s/%s held version %d of %s/%s: refused", tenant_id, event,
                  info.version_id, info.tenant, info.package, extra={"tenant": tenant_id})
        info = None  # never served: looked up again
    if info is None:
        info = route(ctx, tenant_id, event) if "\x00" not in event else None
        if info is None:
            raise NotFound(f"event {event!r} is not deployed for tenant {tenant_id!r}")
        cache.put(("route", tenant_id, event), info)
    return webhook_submitter(tenant, headers, submitter), info, tenant.incarnation, once


def _submitter(ctx: Context, tenant: _TenantAuth, headers: Mapping[str, str], body: bytes) -> str:
    """The caller's name; a tenant key found valid is remembered by its hash (as stored)."""
    if tenant.webhook_auth != "key":
        return check_webhook_credentials(ctx, tenant, headers, body)
    token = bearer_token(headers.get("Authorization"))
    ckey = ("key", tenant.id, hash_key(token)) if token else None
    name = ctx.webhook_cache.get(ckey) if ckey else None
    if name is None:
        name = check_webhook_credentials(ctx, tenant, headers, body)
        if ckey:
            ctx.webhook_cache.put(ckey, name)
    return name


def parse_body(ctx: Context, body: bytes) -> list[Any]:
    try:
        doc = loads(body)
    except UnicodeDecodeError as exc:
        raise BadRequest(f"body is not UTF-8: {exc}", {"body": ["not UTF-8"]}) from None
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}", {"body": ["not JSON"]}) from None
    if not isinstance(doc, dict) or "data" not in doc:
        raise BadRequest('body must be a JSON object with a "data" array', {"data": ["missing"]})
    data = doc["data"]
    if not isinstance(data, list):
        raise BadRequest('"data" must be an array of events', {"data": ["not an array"]})
    if not data:
        raise BadRequest('"data" is empty: send at least one event', {"data": ["empty"]})
    if len(data) > ctx.settings.max_elements:
        raise BadRequest(f'"data" has {len(data)} events; at most {ctx.settings.max_elements} per request',
                         {"data": [f"more than {ctx.settings.max_elements} elements"]})
    return data


def accept(ctx: Context, tenant_id: str, event: str, body: bytes, headers: Mapping[str, str]) -> list[str]:
    """Validate, record and enqueue every element; returns execution ids in order.

    No database session is opened for the checks when the webhook cache serves the lookups
    (a session's begin/commit/close cost ~0.1 ms of CPU for nothing); a lookup the cache
    misses opens its own. The rows go in (autocommitted) before their tasks are published.
    With tracing on, the request is a ``jobico.webhook`` span continuing its ``traceparent``
    header (a new trace without one), and every execution's spans are its children.
    """
    if ctx.settings.ingest_linger_ms and ctx.settings.ingest_coalesce:
        with ctx.ingest_batches.coming():  # a lingering group waits for this request, not for an idle API
            return _traced_accept(ctx, tenant_id, event, body, headers)
    return _traced_accept(ctx, tenant_id, event, body, headers)


def _traced_accept(ctx: Context, tenant_id: str, event: str, body: bytes, headers: Mapping[str, str]) -> list[str]:
    if not tracing.ENABLED:
        return _accept(ctx, tenant_id, event, body, headers)
    with tracing.span("jobico.webhook", {"jobico.tenant": tenant_id, "jobico.event": event},
                      parent=tracing.extracted(headers), kind="server"):
        ids = _accept(ctx, tenant_id, event, body, headers)
        tracing.set_attributes(executions=len(ids))
        return ids


class _RoutingMoved(Exception):
    """ROUTING_GENERATION moved since this process's webhook cache was last checked against it:
    the request is checked again, nothing of it done (no token nor signature spent)."""


def _accept(ctx: Context, tenant_id: str, event: str, body: bytes, headers: Mapping[str, str]) -> list[str]:
    """The webhook cache is current when a request is answered from it: its entries are checked
    against ROUTING_GENERATION by the admission script itself (``ratelimit.admit(expect=...)``,
    or its group's ``admit_all``: the same Redis call, so no ``GET`` of the counter before the
    checks); a request refused by
    the checks (401, 404, 422...) reads the counter before it is answered. When the counter
    moved, the caches are emptied and the request is checked again. A request with an
    ``Idempotency-Key`` reads the counter first, as before: a repeat is answered without
    admission."""
    max_body = ctx.settings.max_body_kb * 1024
    if len(body) > max_body:
        raise TooLarge(f"body is {len(body)} bytes; the limit is {ctx.settings.max_body_kb} KB")
    if ctx.webhook_cache.ttl > 0 and "Idempotency-Key" not in headers:
        for _ in range(2):
            try:
                return _checked_accept(ctx, tenant_id, event, body, headers,
                                       expect=(ROUTING_GENERATION, ctx.routing_generation_seen))
            except _RoutingMoved:
                continue  # the caches were emptied: checked again, against fresh lookups
    ctx.fresh_webhook_cache()  # the counter read first (or no cache)
    return _checked_accept(ctx, tenant_id, event, body, headers, expect=None)


def _checked_accept(ctx: Context, tenant_id: str, event: str, body: bytes, headers: Mapping[str, str],
                    expect: tuple[str, bytes | None] | None) -> list[str]:
    """The checks, then the request's rows and tasks; ``expect``: the routing counter's value
    the webhook cache was last checked against (``_accept``), or None (checked already)."""
    try:
        submitter, info, incarnation, once = _identify(ctx, tenant_id, event, body, headers)
        payloads = _validated_payloads(ctx, info, event, parse_body(ctx, body))
        prio = _priority(info, event, headers)
    except JobicoError:
        if expect is not None and ctx.recheck_routing():  # refused from cache entries gone stale
            raise _RoutingMoved() from None
        raise
    key = headers.get("Idempotency-Key")
    if key is None:
        return _enqueue(ctx, info, event, payloads, submitter, once=once, together=True, priority=prio,
                        expect=expect)
    return _idempotent(ctx, tenant_id, incarnation, key, event, payloads,
                       lambda: _enqueue(ctx, info, event, payloads, submitter, once=once, together=True,
                                        priority=prio, expect=expect))


def _priority(info, event: str, headers: Mapping[str, str]) -> int | None:
    """The request's X-Jobico-Priority (1 to the package's max_priority; 422 naming it), else the
    event's own ``priority:`` (None: none, FIFO)."""
    try:
        return request_priority(headers.get(PRIORITY_HEADER), info.spec.events[event].priority,
                                info.spec.max_priority or MAX_PRIORITY)
    except ValueError as exc:
        raise Invalid(str(exc), {PRIORITY_HEADER: [str(exc)]}) from None


def _validated_payloads(ctx: Context, info, event: str, data: list) -> list[str]:
    """Element size (413), then schema (422); returns each element as canonical JSON."""
    ev = info.spec.events[event]
    s = ctx.settings
    max_element = _max_element(s.max_element_kb, s.default_limits, s.max_limits,
                               _frozen(info.spec.runtimes[ev.runtime].limits), _frozen(ev.limits))
    payloads = dumps_parsed_each(data)
    # a character is at most 4 bytes in UTF-8: when the longest text is within a quarter of the
    # limit no element can pass it, and none is encoded to be measured (30 us per 100 events)
    if max(map(len, payloads)) * 4 > max_element:
        too_big = {str(i): [f"{n} bytes; the limit is {max_element // 1024} KB"]
                   for i, n in enumerate(len(p.encode()) for p in payloads) if n > max_element}
    else:
        too_big = {}
    if too_big:
        first = next(iter(too_big))
        raise TooLarge(f"event {first} is larger than {max_element // 1024} KB", {"data": too_big})

    validator = schema_validator(ctx, info.tenant, info.pins[ev.schema.schemaref])
    problems = elements_errors(validator, data)
    if problems:
        first, errs = next(iter(problems.items()))
        raise Invalid(f"event {first} does not match schema {ev.schema.schemaref!r}: {errs[0]['path']}: "
                      f"{errs[0]['message']}", {"data": problems})
    if ev.flow:
        _check_flow_keys(ev.flow, data)
    return payloads


def _frozen(limits: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(limits.items()))


@functools.lru_cache(maxsize=1024)
def _max_element(max_element_kb: int, defaults: Limits, maxima: Limits, runtime: tuple, event: tuple) -> int:
    """An element's size limit in bytes: JOBICO_MAX_ELEMENT_KB, or the event's ``input_kb`` when
    lower (``limits.resolve`` of the operator's defaults and maxima, the runtime's and the
    event's ``limits:``). Keyed by those values themselves, so never stale: resolving them
    checked ~40 values, ~7 % of a 1-event request's CPU."""
    return min(max_element_kb, resolve(defaults, maxima, dict(runtime), dict(event)).input_kb) * 1024


def _check_flow_keys(declared: dict, data: list) -> None:
    """Every element has the JSONPaths its event's flow-control keys read (422 naming them)."""
    missing = {str(i): [f"{path}: missing (a flow-control key of the event)" for path in paths]
               for i, el in enumerate(data) if (paths := missing_keys(declared, el))}
    if missing:
        i, msgs = next(iter(missing.items()))
        raise Invalid(f"event {i} has no value at {msgs[0].split(':')[0]}, which the event's flow control "
                      "uses as its key", {"data": missing})


def validated_element(ctx: Context, info, event: str, raw: bytes) -> str:
    """One event without the webhook's envelope (an MQTT message's payload), checked like one
    element of a webhook body: size (413), JSON (400), element size (413), schema (422).
    Returns its canonical JSON."""
    if len(raw) > ctx.settings.max_body_kb * 1024:
        raise TooLarge(f"the message is {len(raw)} bytes; the limit is {ctx.settings.max_body_kb} KB")
    try:
        element = loads(raw)
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the message is not UTF-8: {exc}", {"payload": ["not UTF-8"]}) from None
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"the message is not valid JSON: {exc}", {"payload": ["not JSON"]}) from None
    return _validated_payloads(ctx, info, event, [element])[0]


def _admit(ctx: Context, info, event: str, n: int, once: tuple[str, int] | None = None,
           expect: tuple[str, bytes | None] | None = None, span: Any = None) -> bool:
    """A signed request's signature not spent yet (409; spent now when admitted), queue cap (per
    queue) and rate limit (per tenant): 429 with Retry-After. One Redis round trip. ``expect``:
    the routing counter's value the request's lookups were checked against: when it moved,
    nothing is decided, the caches are emptied and True returned (the request is checked again)."""
    queue = info.queue_for(event)
    try:
        a = ratelimit.admit(ctx.redis, info.tenant, queue, n, ctx.settings.rate_limit, ctx.settings.rate_burst,
                            ctx.settings.max_queued, tasks=_tasks(ctx, n), once=once, expect=expect)
    except Exception as exc:  # redis errors
        raise _broker_unavailable(exc) from exc
    return _verdict(ctx, info.tenant, queue, a, span)


def _tasks(ctx: Context, n: int) -> int:
    """The tasks ``n`` events of a request take on the queue (one per JOBICO_TASK_BATCH)."""
    return -(-n // ctx.settings.task_batch)


def _broker_unavailable(exc: Exception) -> Unavailable:
    return Unavailable(f"the message broker is unavailable: {exc}")


def _verdict(ctx: Context, tenant: str, queue: str, a: ratelimit.Admission | Unavailable, span: Any = None) -> bool:
    """``_admit``'s answer to an admission (or the error that prevented it): raises the refusal,
    True when the routing counter moved (caches emptied; the request's ``jobico.admit`` ``span``
    says so: not an error, the request is checked again by ``_accept``), False when admitted."""
    if isinstance(a, Unavailable):
        raise a
    if a.moved:
        ctx.follow_routing_generation(a.counter)
        if span is not None and tracing.ENABLED:
            span.set_attribute("jobico.routing_moved", True)
        return True
    if a.replayed:
        raise Conflict("signature_replayed: this signed request was already accepted (a signature is "
                       "good for one request); to send these events again, sign them again with a new "
                       "X-Jobico-Timestamp (identical bodies signed in the same second share a signature)",
                       {"X-Jobico-Signature": ["signature_replayed"]})
    if a.queue_full:
        raise TooManyRequests(f"queue {queue!r} already holds {a.depth} tasks (the cap is "
                              f"{ctx.settings.max_queued}); retry when the workers have caught up",
                              headers={"Retry-After": "30"})
    if not a.admitted:
        raise TooManyRequests(f"tenant {tenant!r} is over its rate limit of {ctx.settings.rate_limit} "
                              f"events/s; retry after {ratelimit.retry_after(a.wait)} s",
                              headers={"Retry-After": ratelimit.retry_after(a.wait)})
    return False


def submit(ctx: Context, info, event: str, payloads: list[str], *, submitter: str, trigger: str,
           **row_values) -> list[str]:
    """The path every trigger takes (webhook, cron, MQTT): admission, rows ``queued``, then tasks.

    ``payloads``: canonical JSON already checked against the event's schema;
    ``row_values``: ``scheduled_at`` (cron), ``execution_id`` (MQTT: one payload).
    """
    if not tracing.ENABLED:
        return _enqueue(ctx, info, event, payloads, submitter, trigger, **row_values)
    with tracing.span("jobico.submit", {"jobico.tenant": info.tenant, "jobico.event": event,
                                        "jobico.trigger": trigger}, kind="producer"):
        return _enqueue(ctx, info, event, payloads, submitter, trigger, **row_values)


def _enqueue(ctx: Context, info, event: str, payloads: list[str], submitter: str, trigger: str = "webhook",
             once: tuple[str, int] | None = None, together: bool = False,
             expect: tuple[str, bytes | None] | None = None, **row_values) -> list[str]:
    """``together``: the rows may be admitted, recorded and published with those of concurrent
    requests (``_enqueue_together``); ``expect``: see ``_admit``."""
    rows = None
    if together and ctx.settings.ingest_coalesce:
        rows = new_executions(info, event, payloads, submitter=submitter, trigger=trigger, **row_values)
        if _coalescable(ctx, rows):
            ids = _enqueue_together(ctx, info, event, rows, once, expect)
            metrics.accepted(info.tenant, len(ids))
            return ids
    with tracing.span("jobico.admit", {"jobico.events": len(payloads)}) as span:
        moved = _admit(ctx, info, event, len(payloads), once, expect, span)
    if moved:
        raise _RoutingMoved()
    if rows is None:
        rows = new_executions(info, event, payloads, submitter=submitter, trigger=trigger, **row_values)
    try:
        ids = enqueue(ctx, rows)
    except BaseException:
        if once is not None:  # nothing was enqueued: the same signed request may be sent again
            _unspend(ctx, once[0])
        raise
    metrics.accepted(info.tenant, len(ids))
    return ids


def _coalescable(ctx: Context, rows) -> bool:
    """Rows that would share a batch task: fewer than JOBICO_TASK_BATCH, none with named locks,
    flow control or a priority (those travel in tasks of their own: ``executions.task_messages``)."""
    return len(rows) < ctx.settings.task_batch and not any(r.locks or r.flow or r.priority for r in rows)


class _Member:
    """One request of a group commit: its rows and admission arguments; the leader fills in its
    admission (or the error that prevented it) and when the group's admission ran."""
    __slots__ = ("rows", "ask", "admission", "admitted_ns")

    def __init__(self, rows: list, ask: ratelimit.Ask):
        self.rows = rows
        self.ask = ask
        self.admission: ratelimit.Admission | Unavailable | None = None
        self.admitted_ns: tuple[int | None, int | None] = (None, None)


def _enqueue_together(ctx: Context, info, event: str, rows, once: tuple[str, int] | None,
                      expect: tuple[str, bytes | None] | None) -> list[str]:
    """Group commit (``Context.ingest_batches``): the rows of concurrent requests of this process
    for the same tenant, package version, event and queue are admitted by one Redis call
    (``ratelimit.admit_all``, in the order they joined, each its own verdict, as ``_admit``),
    then the admitted ones inserted by one statement and published as one
    ``jobico.execute_batch`` task (``executions.enqueue``). This returns once that is done, and
    raises this request's refusal, or what the INSERT or publish raised (nothing of the group
    stays) in every admitted request of it."""
    first = rows[0]
    member = _Member(rows, ratelimit.Ask(len(rows), _tasks(ctx, len(rows)), once, expect))
    failed: BaseException | None = None
    try:
        ctx.ingest_batches.submit((first.tenant_id, first.version_id, first.event, first.queue), [member],
                                  functools.partial(_flush_group, ctx, first.tenant_id, first.queue),
                                  size=len(rows))
    except BaseException as exc:
        failed = exc
    admission = member.admission
    if admission is None:  # pragma: no cover - the flush raised before it admitted (it admits first)
        assert failed is not None  # the flush returns only after it admitted
        raise failed
    # the request's jobico.admit span covers the group's admission, which the leader ran
    with tracing.span_between("jobico.admit", {"jobico.events": len(rows)}, *member.admitted_ns) as span:
        moved = _verdict(ctx, info.tenant, first.queue, admission, span)
    if moved:
        raise _RoutingMoved()
    if failed is not None:
        if once is not None:  # nothing was enqueued: the same signed request may be sent again
            _unspend(ctx, once[0])
        raise failed
    return [r.id for r in rows]


def _flush_group(ctx: Context, tenant: str, queue: str, group: list[_Member]) -> None:
    """The leader's flush of a group (``_enqueue_together``): its admission, then the admitted
    requests' rows in and published together."""
    started = tracing.now_ns()
    try:
        verdicts: list = ratelimit.admit_all(ctx.redis, tenant, queue, [m.ask for m in group],
                                             ctx.settings.rate_limit, ctx.settings.rate_burst,
                                             ctx.settings.max_queued)
    except Exception as exc:  # redis errors: every request of the group its own 503
        verdicts = [_broker_unavailable(exc) for _ in group]
        for v in verdicts:
            v.__cause__ = exc
    ended = tracing.now_ns()
    rows = []
    for m, a in zip(group, verdicts):
        m.admission, m.admitted_ns = a, (started, ended)
        if isinstance(a, ratelimit.Admission) and a.admitted:
            rows += m.rows
    if rows:
        enqueue(ctx, rows)
        metrics.ingest_group(len(rows))


def _unspend(ctx: Context, key: str) -> None:
    try:
        ctx.redis.delete(key)
    except Exception as exc:  # Redis gone as well: the record expires with the signature's window
        log.warning("could not release a spent signature after a failed enqueue: %s", exc)


def _idempotent(ctx: Context, tenant: str, incarnation: str, key: str, event: str, payloads: list[str],
                run) -> list[str]:
    if not key or len(key) > 255:
        raise BadRequest("Idempotency-Key must be 1 to 255 characters", {"Idempotency-Key": ["bad length"]})
    r = ctx.redis
    scoped = f"{incarnation}\n{key}".encode()  # the key of this tenant, not of a deleted one of its name
    rkey = f"jobico:idem:{tenant}:{hashlib.sha256(scoped).hexdigest()}"
    digest = hashlib.sha256((event + "\n" + "\n".join(payloads)).encode()).hexdigest()
    try:
        claimed = r.set(rkey, json.dumps({"hash": digest, "state": "pending"}), nx=True, ex=60)
        if not claimed:
            deadline = time.monotonic() + IDEMPOTENCY_PENDING_WAIT
            while True:
                raw = r.get(rkey)
                if raw is None:  # the first request failed and released the key: take it
                    if r.set(rkey, json.dumps({"hash": digest, "state": "pending"}), nx=True, ex=60):
                        break
                    continue
                seen = json.loads(raw)
                if seen["hash"] != digest:
                    raise Invalid("idempotency_key_reused: this Idempotency-Key was already used with a "
                                  "different request",
                                  {"Idempotency-Key": ["idempotency_key_reused"]}, status=422)
                if seen["state"] == "done":
                    return seen["ids"]
                if time.monotonic() > deadline:
                    raise Conflict("a request with this Idempotency-Key is still in progress; retry later",
                                   {"Idempotency-Key": ["in progress"]})
                time.sleep(0.05)
    except (Invalid, Conflict):
        raise
    except Exception as exc:  # redis errors
        raise Unavailable(f"the idempotency store (Redis) is unavailable: {exc}") from exc
    try:
        ids = run()
    except BaseException:
        try:
            r.delete(rkey)
        except Exception:  # pragma: no cover - Redis gone as well; the pending marker expires in 60 s
            pass
        raise
    try:
        r.set(rkey, json.dumps({"hash": digest, "state": "done", "ids": ids}), ex=ctx.settings.idempotency_ttl)
    except Exception as exc:  # the events are accepted: answer 200 rather than invite a duplicate retry
        log.warning("could not remember Idempotency-Key for tenant %s: %s", tenant, exc)
    return ids
