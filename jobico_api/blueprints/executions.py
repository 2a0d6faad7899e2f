"""Execution records of the calling tenant."""
from __future__ import annotations

import marshmallow as ma
from flask import g
from flask_smorest import Blueprint

from jobico_core.db import STATUSES
from jobico_core.services import controls
from jobico_core.services import executions as svc

from ..auth import ERROR_SCHEMA, SECURITY, ctx, tenant_required
from ..openapi import Cursor

blp = Blueprint("executions", __name__, url_prefix="/api/v1/executions",
                description="What happened to each event: status, code, result, logs.")


class LogSchema(ma.Schema):
    level = ma.fields.Integer(metadata={"description": "0-6"})
    message = ma.fields.String()


class ExecutionSummarySchema(ma.Schema):
    id = ma.fields.String(metadata={"description": "UUIDv7"})
    tenant = ma.fields.String()
    package = ma.fields.String()
    version = ma.fields.Integer()
    event = ma.fields.String()
    status = ma.fields.String(metadata={"enum": list(STATUSES)})
    code = ma.fields.Integer(allow_none=True, metadata={"description": "unsigned 64-bit result code"})
    result = ma.fields.String(allow_none=True)
    stdout = ma.fields.String()
    limit = ma.fields.String(allow_none=True, metadata={"description": "which limit stopped it"})
    message = ma.fields.String(allow_none=True, metadata={
        "description": "why it ended so, or where it stands; 'internal_error: ... (error id <id>) ...' when the "
                       "worker failed unexpectedly (the id is in the worker's log line; docs/api.md)"})
    attempts = ma.fields.Integer()
    dead_lettered = ma.fields.Boolean()
    chained_from = ma.fields.String(allow_none=True)
    submitter = ma.fields.String(allow_none=True, metadata={
        "description": "who submitted it: the key's name (hmac, anonymous), the tenant's submitter header, "
                       "cron, mqtt:<topic>, chain, or the key that resubmitted it"})
    trigger = ma.fields.String(metadata={"enum": ["webhook", "cron", "mqtt", "chain", "resubmit"]})
    worker = ma.fields.String(allow_none=True, metadata={"description": "the worker (Celery hostname) that "
                                                                         "claimed it last"})
    scheduled_at = ma.fields.String(allow_none=True, metadata={"description": "trigger cron: the fire time"})
    duration_ms = ma.fields.Float(allow_none=True)
    seq = ma.fields.Integer(allow_none=True, metadata={
        "description": "position in the stream of finished executions (the SSE id)"})
    locks = ma.fields.List(ma.fields.String(), metadata={"description": "the event's named locks"})
    waiting_for = ma.fields.String(allow_none=True, metadata={
        "description": "queued behind a lock: '<lock> (held by <execution id>)'; behind a concurrency, "
                       "rate or debounce key: which limit and key (docs/package-format.md)"})
    flow = ma.fields.Dict(allow_none=True, metadata={
        "description": "the event's flow control as resolved for this payload: concurrency {key, limit}, "
                       "rate_limit {key, per_second, burst}, debounce {key, seconds}; null when none"})
    priority = ma.fields.Integer(allow_none=True, metadata={
        "description": "1..10: the event's priority or the request's X-Jobico-Priority; null: none (FIFO)"})
    superseded_by = ma.fields.String(allow_none=True, metadata={
        "description": "status superseded: the later execution of its debounce key that ran in its place"})
    resubmitted_from = ma.fields.String(allow_none=True, metadata={"description": "the execution this one "
                                                                                 "resubmitted"})
    cancelled_by = ma.fields.String(allow_none=True, metadata={"description": "who cancelled it"})
    trace_id = ma.fields.String(allow_none=True, metadata={
        "description": "its OpenTelemetry trace (32 hex digits; null when tracing was off, docs/operating.md)"})
    created_at = ma.fields.String(allow_none=True)
    started_at = ma.fields.String(allow_none=True)
    finished_at = ma.fields.String(allow_none=True)


class ExecutionSchema(ExecutionSummarySchema):
    logs = ma.fields.List(ma.fields.Nested(LogSchema))
    payload = ma.fields.String(metadata={"description": "the canonical JSON the guest received"})
    chain = ma.fields.List(ma.fields.String(), metadata={"description": "executions chained from this one"})
    resubmissions = ma.fields.List(ma.fields.String(), metadata={"description": "executions that resubmitted "
                                                                                 "this one, oldest first"})


class CancelArgs(ma.Schema):
    wait = ma.fields.Float(validate=ma.validate.Range(min=0, max=controls.CANCEL_WAIT_MAX_S), metadata={
        "description": f"seconds to wait for a running execution's final record (default "
                       f"{controls.CANCEL_WAIT_S:g}, at most {controls.CANCEL_WAIT_MAX_S:g}; 0: do not wait)"})


class CancelSchema(ExecutionSchema):
    cancel = ma.fields.String(metadata={"enum": list(controls.CANCEL_OUTCOMES), "description": (
        "cancelled_queued: it never started (and never will); cancelled_running: stopped in the sandbox and "
        "recorded cancelled; requested: still running when the wait ran out (HTTP 202), its worker stops it when "
        "the request reaches it; already_finished: it was final already, nothing changed")})
    cancel_ms = ma.fields.Float(metadata={"description": "milliseconds from the request to the final record "
                                                         "(or to the end of the wait)"})
    detail = ma.fields.String(metadata={"description": "what happened, in one sentence"})


class ExecutionPageSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(ExecutionSummarySchema))
    next_cursor = ma.fields.String(allow_none=True)


class RunningExecutionSchema(ExecutionSummarySchema):
    age_s = ma.fields.Float(allow_none=True, metadata={"description": "seconds since it was claimed (this "
                                                                      "attempt; with its batch, for a batch task)"})
    batch_waiting = ma.fields.Integer(metadata={"description": "executions of its batch task claimed (status "
                                                               "running) and waiting to run after it"})


class RunningPackageSchema(ma.Schema):
    package = ma.fields.String()
    running = ma.fields.Integer(metadata={"description": "executions in a sandbox now (one per task)"})
    claimed = ma.fields.Integer(metadata={"description": "executions claimed by a batch task behind the one it "
                                                         "runs (not listed)"})
    items = ma.fields.List(ma.fields.Nested(RunningExecutionSchema))


class RunningSchema(ma.Schema):
    packages = ma.fields.List(ma.fields.Nested(RunningPackageSchema),
                              metadata={"description": "by package name; oldest start first within one"})
    total = ma.fields.Integer()
    truncated = ma.fields.Boolean(metadata={"description": "more were running than limit"})


class RunningArgs(ma.Schema):
    package = ma.fields.String()
    limit = ma.fields.Integer(load_default=200, validate=ma.validate.Range(min=1, max=1000))


class ListArgs(ma.Schema):
    package = ma.fields.String()
    event = ma.fields.String()
    status = ma.fields.String(validate=ma.validate.OneOf(STATUSES))
    submitter = ma.fields.String(metadata={"description": "a key's name, a submitter header's value, cron, "
                                                          "mqtt:<topic> or chain"})
    limit = ma.fields.Integer(load_default=50, validate=ma.validate.Range(min=1, max=500))
    cursor = Cursor()


@blp.route("", methods=["GET"])
@blp.doc(security=SECURITY, summary="List executions, newest first (cursor-paginated)")
@tenant_required
@blp.arguments(ListArgs, location="query")
@blp.response(200, ExecutionPageSchema)
@blp.alt_response(400, schema=ERROR_SCHEMA, description="cursor is not a next_cursor of this API")
def list_executions(args):
    items, nxt = svc.list_executions(ctx(), g.tenant, package=args.get("package"), event=args.get("event"),
                                     status=args.get("status"), submitter=args.get("submitter"),
                                     limit=args["limit"], cursor=args.get("cursor"))
    return {"items": items, "next_cursor": nxt}


@blp.route("/running", methods=["GET"])
@blp.doc(security=SECURITY, summary="What runs now, per package: worker, attempt and age of each execution")
@tenant_required
@blp.arguments(RunningArgs, location="query")
@blp.response(200, RunningSchema)
def running(args):
    return svc.running_executions(ctx(), g.tenant, package=args.get("package"), limit=args["limit"])


@blp.route("/<execution_id>", methods=["GET"])
@blp.doc(security=SECURITY, summary="One execution record, with its logs")
@tenant_required
@blp.response(200, ExecutionSchema)
@blp.alt_response(404, schema=ERROR_SCHEMA, description="no such execution in this tenant")
def show(execution_id):
    return svc.get_execution(ctx(), g.tenant, execution_id)


@blp.route("/<execution_id>/retry", methods=["POST"])
@blp.doc(security=SECURITY, summary="Replay a dead-lettered execution (same id and payload)")
@tenant_required
@blp.response(202, ExecutionSchema)
@blp.alt_response(404, schema=ERROR_SCHEMA, description="no such execution in this tenant")
@blp.alt_response(409, schema=ERROR_SCHEMA, description="the execution is not dead-lettered")
def retry(execution_id):
    return svc.retry_execution(ctx(), g.tenant, execution_id)


@blp.route("/<execution_id>/cancel", methods=["POST"])
@blp.doc(security=SECURITY, summary="Cancel an execution: a queued one never starts, a running one is stopped "
                                    "in the sandbox; a finished one is left as it is")
@tenant_required
@blp.arguments(CancelArgs, location="query")
@blp.arguments(CancelArgs, location="json", required=False)
@blp.response(200, CancelSchema)
@blp.alt_response(202, schema=CancelSchema, description="a running execution was asked to stop but had not "
                                                        "stopped when the wait ran out")
@blp.alt_response(404, schema=ERROR_SCHEMA, description="no such execution in this tenant")
def cancel(query, body, execution_id):
    wait = (body or {}).get("wait", query.get("wait"))  # {"wait": s} or ?wait=s
    res = controls.cancel_execution(ctx(), g.tenant, execution_id, by=g.key_name,
                                    wait=controls.CANCEL_WAIT_S if wait is None else wait)
    return res.as_dict(), 202 if res.cancel == controls.REQUESTED else 200


@blp.route("/<execution_id>/resubmit", methods=["POST"])
@blp.doc(security=SECURITY, summary="Run an execution's payload again as a new execution of the same event, on "
                                    "the package's active version")
@tenant_required
@blp.response(201, ExecutionSchema)
@blp.alt_response(404, schema=ERROR_SCHEMA, description="no such execution in this tenant")
@blp.alt_response(409, schema=ERROR_SCHEMA, description="its event is no longer deployed by its package")
@blp.alt_response(422, schema=ERROR_SCHEMA, description="the payload no longer matches the event's schema")
@blp.alt_response(429, schema=ERROR_SCHEMA, description="the queue is full or the tenant over its rate limit")
def resubmit(execution_id):
    return controls.resubmit_execution(ctx(), g.tenant, execution_id, submitter=g.key_name)
