"""An unexpected exception in a task: recorded, never acknowledged and lost.

Whatever a task raises that is not an infrastructure error (``executor.INFRA_ERRORS``) is a
defect of the platform or a corrupt stored row, at any point of the task: lock handling,
claim, module fetch, run, record, chain. ``record_internal_error`` logs it once, with its
traceback and a fresh **error id**, then records every execution the task held that is not
final yet as ``failed``, ``dead_lettered``, with the message
``internal_error: ... (error id <id>) ...``: an operator greps the worker logs for that id
(a JSON log line carries it as ``error_id``), and ``jobico executions retry`` replays the
execution once the cause is fixed. Executions already final keep their outcome. If the record
cannot be written either (the database is away) the caller retries the task instead of
acknowledging it (``tasks``).
"""
from __future__ import annotations

import logging
import uuid

from jobico_core import metrics
from jobico_core.services.context import Context
from jobico_core.services.leases import end

log = logging.getLogger("jobico.worker")

REASON = "internal_error"  # how the record's message starts


def message(error_id: str, exc: BaseException) -> str:
    """The record's message: the reason, the exception's type (its text may hold internals:
    it is in the log only) and the error id of the log line."""
    return (f"{REASON}: the worker failed unexpectedly ({type(exc).__name__}; error id {error_id}); "
            "dead-lettered: retry it once the cause is fixed")


def record_internal_error(ctx: Context, ids: list[str], exc: BaseException, where: str,
                          extra: dict | None = None) -> str:
    """Log ``exc`` under a new error id and record the executions ``ids`` that are not final yet
    ``failed``/``internal_error``, dead-lettered. Returns the error id. ``where``: what failed,
    for the log ("execution <id>", "batch of 3 t/p/e"). Raises when the record cannot be written."""
    error_id = uuid.uuid4().hex[:16]
    log.error("%s: internal error %s (%s: %s) in execution(s) %s: recording them failed (internal_error), "
              "dead-lettered", where, error_id, type(exc).__name__, exc, ", ".join(ids),
              exc_info=(type(exc), exc, exc.__traceback__), extra={**(extra or {}), "error_id": error_id})
    for data in end(ctx, dict.fromkeys(ids, message(error_id, exc)), status="failed", dead_lettered=True):
        metrics.finished(data["tenant"], "failed", data.get("duration_ms"))
    return error_id
