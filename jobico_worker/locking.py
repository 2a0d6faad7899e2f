"""An execution's named locks on the worker: taken before the claim, waited for without holding
a pool slot, kept while the guest runs, let go on any outcome (``jobico_core.locks`` has the
Redis side).

* ``take`` tries every lock of the execution at once. When one is held (or an earlier execution
  waits for it), the row stays ``queued`` with ``waiting_for`` saying which lock and who has it,
  and the task is parked in Redis: the release of the lock publishes it again at once (to the
  first in line), and a safety poll every ``JOBICO_LOCK_POLL_SECONDS`` covers a holder whose
  worker died. Nothing is failed, no pool slot is held meanwhile, and the lines keep the
  executions' order.
* While the execution runs, a per-process ``LeaseKeeper`` thread renews its leases every third
  of ``JOBICO_LOCK_LEASE_SECONDS``. If a lease is lost anyway (Redis unreachable for a whole
  lease, or someone else took it), the execution is stopped (``on_lost``): two holders of one
  lock never run side by side for longer than the renewal period.
* ``let_go`` releases the locks after the outcome is recorded (or the execution was put back
  for a retry) and publishes the woken waiters' tasks; a worker killed mid-run leaves the locks
  to expire within the lease.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace

from sqlalchemy import bindparam, select, update

from jobico_core.broker import TaskMessage, publish
from jobico_core.db import TERMINAL_STATUSES, Execution
from jobico_core.flow import leases
from jobico_core.locks import Gone, Stale, Wake
from jobico_core.services.context import Context

log = logging.getLogger("jobico.worker")

_EX = Execution.__table__
_NOTE_WAITING = (update(_EX).where(_EX.c.id == bindparam("b_id"), _EX.c.status == "queued")
                 .values(waiting_for=bindparam("b_waiting")).returning(_EX.c.id))
_STATUS = select(_EX.c.status).where(_EX.c.id == bindparam("b_id"))


class LeaseKeeper:
    """Renews the leases of the executions this process runs (one thread per process)."""

    def __init__(self, ctx: Context, on_lost: Callable[[str, str], object]):
        self.ctx = ctx
        self.on_lost = on_lost
        self.period = ctx.settings.lock_lease_s / 3
        # id -> (tenant, names, slots of the counted ones, last renewal)
        self._held: dict[str, tuple[str, tuple[str, ...], dict, float]] = {}
        self._mutex = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="jobico-lease-keeper", daemon=True)
        self._thread.start()

    def hold(self, tenant: str, names: Sequence[str], execution_id: str, limits: dict | None = None) -> None:
        with self._mutex:
            self._held[execution_id] = (tenant, tuple(names), limits or {}, time.monotonic())

    def drop(self, execution_id: str) -> None:
        with self._mutex:
            self._held.pop(execution_id, None)

    def _loop(self) -> None:
        while True:
            time.sleep(self.period)
            with self._mutex:
                held = list(self._held.items())
            for execution_id, (tenant, names, limits, last) in held:
                self._renew(execution_id, tenant, names, limits, last)

    def _renew(self, execution_id: str, tenant: str, names: tuple[str, ...], limits: dict, last: float) -> None:
        try:
            lost = self.ctx.locks.renew(tenant, names, execution_id, limits)
        except Exception as exc:  # Redis unreachable: the lease still runs until it expires
            if time.monotonic() - last < self.ctx.settings.lock_lease_s:
                log.warning("execution %s: could not renew its lock leases (%s); trying again", execution_id, exc)
                return
            lost, reason = len(names), f"its lock leases could not be renewed for {self.ctx.settings.lock_lease_s:g} s"
        else:
            reason = "another execution took one of its locks (its lease ran out)"
        if lost:
            log.error("execution %s stopped: %s", execution_id, reason, extra={"execution_id": execution_id})
            self.drop(execution_id)
            self.on_lost(execution_id, f"stopped: {reason}")
            return
        with self._mutex:
            if execution_id in self._held:
                self._held[execution_id] = (tenant, names, limits, time.monotonic())


_keepers: dict[int, LeaseKeeper] = {}
_keepers_lock = threading.Lock()


def keeper(ctx: Context, on_lost: Callable[[str, str], object]) -> LeaseKeeper:
    """This process's lease keeper (threads do not survive a fork: one per pid)."""
    with _keepers_lock:
        k = _keepers.get(os.getpid())
        if k is None or k.ctx is not ctx:
            k = _keepers[os.getpid()] = LeaseKeeper(ctx, on_lost)
        return k


def message_leases(message: TaskMessage) -> tuple[tuple[str, ...], dict]:
    """The leases ``take`` takes for ``message``: its named locks and its concurrency key's
    (``jobico_core.flow.leases``), and the slots of the counted ones."""
    return leases(message.package, message.event, message.locks, message.flow)


def take(ctx: Context, message: TaskMessage) -> bool:
    """Take the execution's locks and concurrency slot (True: run it, then ``let_go``), or leave
    it waiting (False: its task is parked for a release to wake, with a safety poll published;
    or it was cancelled meanwhile, or this task was superseded by a woken one, and it ends here)."""
    token = uuid.uuid4().hex
    names, limits = message_leases(message)
    parked = json.dumps({"payload": message.payload, "tenant": message.tenant, "package": message.package,
                         "event": message.event, "queue": message.queue, "locks": list(message.locks),
                         "waiting": message.waiting, "flow": message.flow})
    try:
        blocked = ctx.locks.acquire(message.tenant, names, message.execution_id, message.token,
                                    park=(token, parked), limits=limits)
    except Gone:
        log.info("execution %s was cancelled while it waited for its locks", message.execution_id,
                 extra={"execution_id": message.execution_id})
        return False
    except Stale:  # a release woke it: the woken task carries it now
        return False
    if blocked is None:
        return True
    text = blocked.describe()[:255]
    if text != message.waiting and not note_waiting(ctx, message, text):
        return False
    publish(ctx.celery, [replace(message, waiting=text, token=token)], countdown=ctx.settings.lock_poll_s)
    return False


def note_waiting(ctx: Context, message: TaskMessage, text: str) -> bool:
    """Show on the queued row what it waits for; False when the row is gone or final (the
    task ends; a running row is a redelivery or a duplicate of a live task: it keeps waiting)."""
    with ctx.db.session() as s:
        if s.execute(_NOTE_WAITING, {"b_id": message.execution_id, "b_waiting": text}).first() is not None:
            return True
        status = s.execute(_STATUS, {"b_id": message.execution_id}).scalar()
    if status is None or status in TERMINAL_STATUSES:
        names, _ = message_leases(message)
        if names:
            ctx.locks.forget(message.tenant, names, message.execution_id)
        log.info("execution %s %s: its task ends while it waits", message.execution_id,
                 "has no record" if status is None else f"is already {status}",
                 extra={"execution_id": message.execution_id})
        return False
    return True


def let_go(ctx: Context, tenant: str, names: Sequence[str], execution_id: str, keep: LeaseKeeper) -> None:
    """Stop renewing, release the locks and publish the tasks of the waiters that release woke
    (a failure only leaves the locks to run out, and the waiters to their safety poll)."""
    keep.drop(execution_id)
    try:
        woken = ctx.locks.release(tenant, names, execution_id)
        if woken:
            publish(ctx.celery, [_woken_message(w) for w in woken])
    except Exception as exc:
        log.warning("execution %s: could not release its locks or wake the next (%s); they free themselves "
                    "within %g s", execution_id, exc, ctx.settings.lock_lease_s, extra={"execution_id": execution_id})


def _woken_message(w: Wake) -> TaskMessage:
    m = json.loads(w.message)
    return TaskMessage(w.execution_id, m["payload"], m["tenant"], m["package"], m["event"], m["queue"],
                       tuple(m["locks"]), m.get("waiting"), w.token, m.get("flow"))
