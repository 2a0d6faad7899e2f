"""Celery tasks: thin wrappers over ``jobico_worker.executor`` (one execution) and
``jobico_worker.batch`` (several executions of one request)."""
from __future__ import annotations

import logging

from sqlalchemy.exc import DBAPIError, OperationalError

from jobico_core.broker import EXECUTE_BATCH_TASK, EXECUTE_TASK, TaskMessage, publish
from jobico_core.services import leases
from jobico_core.services.executions import task_message

from . import cancellation, locking
from . import flow as flow_control
from . import priority as slots
from .batch import BatchFailed, BatchInterrupted, dead_letter_many, run_batch
from .celery_app import app, settings
from .context import worker_context
from .executor import INFRA_ERRORS, backoff_cap, dead_letter, retry_delay, run_execution
from .failures import record_internal_error

log = logging.getLogger("jobico.worker")

__all__ = ["INFRA_ERRORS", "execute", "execute_batch"]


def _runtime(ctx):
    from jobico_runtime import get_runtime
    return get_runtime(cache_dir=ctx.settings.cache_dir / "compiled")


def _keep_leased(ctx, ids: list[str], delay: float, cause: Exception) -> None:
    """Claimed rows stay ``running`` until the retry: extend their leases over its countdown, so
    the lease recovery does not put them back meanwhile (leases.extend). Not when the database is
    what failed: the write would only wait for it, and the recovery cannot run either."""
    if not isinstance(cause, (OperationalError, DBAPIError)):
        leases.extend(ctx, ids, delay)


def _internal_error(task, ctx, ids: list[str], exc: Exception, where: str, extra: dict, **retry_kwargs) -> None:
    """Record an unexpected exception's executions ``failed``/``internal_error`` (failures.py);
    if even that cannot be written, never acknowledge: retry the task at the longest backoff, as
    when an infrastructure failure's dead letter cannot be written."""
    try:
        record_internal_error(ctx, ids, exc, where, extra)
    except Exception as again:
        log.error("%s: could not record its internal error either (%s); retrying", where, again, extra=extra)
        raise task.retry(exc=again, countdown=retry_delay(30, base=0.5, cap=backoff_cap(settings)),
                         max_retries=task.request.retries + 1, **retry_kwargs) from again


@app.task(name=EXECUTE_TASK, bind=True, acks_late=True, reject_on_worker_lost=True,
          max_retries=settings.task_retries)
def execute(self, execution_id: str, payload: str, tenant: str | None = None, package: str | None = None,
            event: str | None = None, locks: list[str] | None = None, waiting: str | None = None,
            token: str | None = None, flow: str | None = None, priority: int | None = None) -> None:
    """``locks``: the event's named locks, taken before the claim (``jobico_worker.locking``);
    ``waiting``: what the row last said it waits for; ``token``: a lock waiter's task token;
    ``flow``: the flow control still to pass (``jobico_worker.flow``; the concurrency key is a
    lease taken with the locks); ``priority``: this task is a slot of its queue's prioritised
    executions and runs the best one waiting (``jobico_worker.priority``)."""
    ctx = worker_context(settings, celery=app)
    keep = None
    extra = {"execution_id": execution_id, "tenant": tenant, "package": package, "event": event}
    afresh = {**(self.request.kwargs or {}), "token": None}  # a lock waiter's token was this delivery's
    try:
        runtime = _runtime(ctx)
        if priority:
            chosen = slots.choose(ctx, TaskMessage(execution_id, payload, tenant or "", package or "", event or "",
                                                   (self.request.delivery_info or {}).get("routing_key") or "",
                                                   tuple(locks or ()), None, None, flow))
            if chosen.execution_id != execution_id:
                execution_id, payload, tenant, package, event = (chosen.execution_id, chosen.payload, chosen.tenant,
                                                                 chosen.package, chosen.event)
                locks, flow, waiting, token = list(chosen.locks), chosen.flow, None, None
                extra = {"execution_id": execution_id, "tenant": tenant, "package": package, "event": event,
                         "slot": self.request.args[0] if self.request.args else None}
        names: tuple[str, ...] = ()
        if locks or flow:
            message = TaskMessage(execution_id, payload, tenant or "", package or "", event or "",
                                  (self.request.delivery_info or {}).get("routing_key") or "", tuple(locks or ()),
                                  waiting, token, flow)
            if flow:  # debounce, rate limit (a woken lock waiter's flow holds only its concurrency key)
                message = flow_control.gate(ctx, message)
                if message is None:
                    return
            names, limits = locking.message_leases(message)
            if names:
                if not locking.take(ctx, message):
                    return
                keep = locking.keeper(ctx, on_lost=cancellation.cancel_here)  # a lost lease stops the run
                keep.hold(tenant, names, execution_id, limits)
        try:
            record = run_execution(ctx, runtime, execution_id, payload, worker=self.request.hostname or "worker",
                                   infra_retries=self.request.retries)
        finally:
            if keep is not None:
                locking.let_go(ctx, tenant, names, execution_id, keep)
    except INFRA_ERRORS as exc:
        if self.request.retries >= self.max_retries:
            log.error("execution %s: infrastructure failure after %d retries (%s): dead-lettered",
                      execution_id, self.request.retries, exc, extra=extra)
            try:
                dead_letter(ctx, execution_id, f"infrastructure failure after {self.request.retries} retries: {exc}")
            except Exception as again:  # the database is what failed: nothing recorded its fate yet
                # Acknowledging now would lose an accepted event (its row stuck 'running' or 'queued'):
                # keep the task alive, at the longest backoff, until the database can take either outcome.
                log.error("execution %s: could not dead-letter it either (%s); retrying", execution_id, again,
                          extra=extra)
                raise self.retry(exc=again, countdown=retry_delay(30, base=0.5, cap=backoff_cap(settings)),
                                 max_retries=self.request.retries + 1, kwargs=afresh) from again
            return
        delay = retry_delay(self.request.retries, base=0.5, cap=backoff_cap(settings))
        log.warning("execution %s: infrastructure failure (%s); retry %d in %.1fs",
                    execution_id, exc, self.request.retries + 1, delay, extra=extra)
        _keep_leased(ctx, [execution_id], delay, exc)
        raise self.retry(exc=exc, countdown=delay, kwargs=afresh) from exc
    except Exception as exc:  # not an infrastructure error: a defect or a corrupt row, at any point
        _internal_error(self, ctx, [execution_id], exc, f"execution {execution_id}", extra, kwargs=afresh)
        return
    if record:
        log.info("execution %s %s/%s/%s -> %s", execution_id, tenant, package, event, record.get("status"),
                 extra={"execution_id": execution_id, "tenant": tenant, "package": package, "event": event,
                        "status": record.get("status")})


@app.task(name=EXECUTE_BATCH_TASK, bind=True, acks_late=True, reject_on_worker_lost=True,
          max_retries=settings.task_retries)
def execute_batch(self, execution_ids: list[str], tenant: str | None = None, package: str | None = None,
                  event: str | None = None) -> None:
    """Several executions of one tenant/package/event; see ``jobico_worker.batch`` for how each
    keeps its own guarantees."""
    ctx = worker_context(settings, celery=app)
    extra = {"tenant": tenant, "package": package, "event": event, "batch": len(execution_ids)}
    delay = retry_delay(self.request.retries, base=0.5, cap=backoff_cap(settings))
    where = f"batch of {len(execution_ids)} {tenant}/{package}/{event}"
    try:
        res = run_batch(ctx, _runtime(ctx), list(execution_ids), worker=self.request.hostname or "worker")
    except BatchFailed as failed:  # not an infrastructure error: what the batch had not finished
        _internal_error(self, ctx, failed.unfinished, failed.cause, where, extra)
        return
    except BatchInterrupted as stop:
        # What ran is recorded (if the database allowed); every unfinished execution goes back as
        # its own task, with this failure counted in its retries and the backoff applied.
        log.warning("batch of %d %s/%s/%s: infrastructure failure (%s); %d executions requeued alone, "
                    "retry in %.1fs", len(execution_ids), tenant, package, event, stop.cause,
                    len(stop.unfinished), delay, extra=extra)
        _keep_leased(ctx, [r.id for r in stop.unfinished], delay, stop.cause)
        try:
            publish(ctx.celery, [task_message(r) for r in stop.unfinished], countdown=delay,
                    retries=self.request.retries + 1)
        except Exception as again:  # the broker too: redeliver the batch (its running rows are then requeued alone)
            raise self.retry(exc=again, countdown=delay, max_retries=self.request.retries + 1) from again
        return
    except INFRA_ERRORS as exc:  # nothing ran: retry the whole batch
        if self.request.retries >= self.max_retries:
            log.error("batch of %d %s/%s/%s: infrastructure failure after %d retries (%s): dead-lettered",
                      len(execution_ids), tenant, package, event, self.request.retries, exc, extra=extra)
            try:
                dead_letter_many(ctx, list(execution_ids),
                                 f"infrastructure failure after {self.request.retries} retries: {exc}")
            except Exception as again:  # as for one execution: never acknowledge an unrecorded fate
                raise self.retry(exc=again, countdown=retry_delay(30, base=0.5, cap=backoff_cap(settings)),
                                 max_retries=self.request.retries + 1) from again
            return
        log.warning("batch of %d %s/%s/%s: infrastructure failure (%s); retry %d in %.1fs", len(execution_ids),
                    tenant, package, event, exc, self.request.retries + 1, delay, extra=extra)
        _keep_leased(ctx, list(execution_ids), delay, exc)  # what its claim took, if it did
        raise self.retry(exc=exc, countdown=delay) from exc
    except Exception as exc:  # outside run_batch (the runtime): nothing ran, every execution gets that fate
        _internal_error(self, ctx, list(execution_ids), exc, where, extra)
        return
    log.info("batch of %d %s/%s/%s: %d recorded, %d skipped, %d requeued alone, %d guest retries, %d put back",
             len(execution_ids), tenant, package, event, len(res.recorded), res.skipped, res.isolated,
             res.requeued, res.handed_back, extra=extra)
