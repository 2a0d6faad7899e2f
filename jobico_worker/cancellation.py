"""Stopping an execution that runs in this process: ``jobico executions cancel`` of a running one.

The API marks the row (``cancel_requested_at``, ``cancelled_by``) and publishes the id on
``broker.CANCEL_CHANNEL`` (``jobico_core.services.controls``). Every pool process keeps:

* a **registry** ``execution id -> CancelToken`` of what it runs now: ``executor.run_claimed``
  registers around ``runtime.run(..., cancel=token)`` with ``watch(execution_id)``;
* a **listener** thread subscribed to ``CANCEL_CHANNEL`` (started in each pool process after
  the fork, subscribed before it takes a task: ``app._after_fork``) that cancels the token of a
  registered id. A request for an id not registered (yet) is kept ``RECENT_S`` seconds: the
  claim, the module fetch and compile come before ``watch``, and a ``watch`` that finds its id
  there starts cancelled. When the listener's connection drops it reconnects with backoff and
  then asks the database which registered executions were asked to stop meanwhile
  (pub/sub is at most once; the API also publishes again every 0.25 s while it waits).

``cancel_here(execution_id, reason)`` is the entry point for anything in this process that must
stop an execution it runs (the listener; a named lock's lease keeper when the lease is lost).
A token-cancelled run is recorded ``cancelled`` with the reason and how long it ran, does not
fire its ok/error chain and is never retried (``executor.run_claimed``).
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from jobico_core.broker import CANCEL_CHANNEL, parse_cancel_message
from jobico_runtime import CancelToken

log = logging.getLogger("jobico.worker")

RECENT_S = 60.0          # how long a request for an execution not (yet) running here is kept
MAX_RECENT = 10_000      # ... and how many at most (every process hears every request)
SUBSCRIBE_WAIT_S = 2.0   # how long a starting pool process waits for the subscription
RECONNECT_MAX_S = 5.0

_lock = threading.Lock()
_running: dict[str, CancelToken] = {}
_recent: OrderedDict[str, tuple[float, str]] = OrderedDict()  # id -> (expiry, reason)


def reason_for(by: str | None) -> str:
    return f"cancelled by {by}" if by else "cancelled"


@contextlib.contextmanager
def watch(execution_id: str) -> Iterator[CancelToken]:
    """Register ``execution_id`` as running here for the block; yields its token (already
    cancelled when a request for it came before the block)."""
    token = CancelToken()
    with _lock:
        _running[execution_id] = token
        early = _recent.pop(execution_id, None)
    if early is not None and early[0] > time.monotonic():
        token.cancel(early[1])
    try:
        yield token
    finally:
        with _lock:
            if _running.get(execution_id) is token:
                del _running[execution_id]


def cancel_here(execution_id: str, reason: str) -> bool:
    """Stop ``execution_id`` if it runs in this process (returns True); the guest stops at its
    next epoch check (~5 ms) and the run is recorded ``cancelled`` with ``reason``."""
    with _lock:
        token = _running.get(execution_id)
    if token is None:
        return False
    if not token.cancelled:
        token.cancel(reason)
    return True


def requested(execution_id: str, reason: str) -> bool:
    """A cancel request heard from outside: cancel it here, or keep it for a ``watch`` that may
    come soon. Returns whether it ran here."""
    now = time.monotonic()
    with _lock:
        token = _running.get(execution_id)
        if token is None:  # kept for a watch() that may come soon
            _recent[execution_id] = (now + RECENT_S, reason)
            _recent.move_to_end(execution_id)
            while _recent and (len(_recent) > MAX_RECENT or next(iter(_recent.values()))[0] <= now):
                _recent.popitem(last=False)
            return False
    if not token.cancelled:
        token.cancel(reason)
    return True


def running_here() -> list[str]:
    with _lock:
        return list(_running)


# -- the listener ---------------------------------------------------------------------------
Check = Callable[[list[str]], Iterable[tuple[str, str | None]]]


class Listener(threading.Thread):
    """Subscribed to ``CANCEL_CHANNEL``; ``check(ids)`` returns (id, cancelled_by) of those among
    ``ids`` asked to stop (read after a reconnect)."""

    def __init__(self, redis_url: str, check: Check | None = None):
        super().__init__(name="jobico-cancel-listener", daemon=True)
        self.redis_url = redis_url
        self.check = check
        self.subscribed = threading.Event()
        self.stopping = threading.Event()
        self.connections = 0  # subscriptions made (1 + reconnects)
        self.heard = 0        # requests heard

    def run(self) -> None:
        delay = 0.1
        # no silent reconnection inside redis-py: a dropped connection must reach the loop below,
        # which reconnects and then reads what it may have missed from the database
        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=3, socket_keepalive=True,
                                      health_check_interval=10, retry=Retry(NoBackoff(), 0))
        while not self.stopping.is_set():
            ps = client.pubsub()
            try:
                ps.subscribe(CANCEL_CHANNEL)
                while True:  # Redis's confirmation: from now on every request reaches us
                    msg = ps.get_message(timeout=1.0)
                    if msg is not None and msg.get("type") == "subscribe":
                        break
                    if self.stopping.is_set():
                        return
                self.connections += 1
                self.subscribed.set()
                if self.connections > 1:
                    self._catch_up()
                delay = 0.1
                while not self.stopping.is_set():
                    msg = ps.get_message(timeout=1.0)
                    if msg is not None and msg.get("type") == "message":
                        self._heard(msg["data"])
            except Exception as exc:  # Redis went away: reconnect, then ask the database what we missed
                self.subscribed.clear()
                if self.stopping.is_set():
                    return
                log.warning("cancel listener: %s; reconnecting in %.1fs", exc, delay)
                self.stopping.wait(delay)
                delay = min(RECONNECT_MAX_S, delay * 2)
            finally:
                with contextlib.suppress(Exception):
                    ps.close()

    def _heard(self, data) -> None:
        parsed = parse_cancel_message(data)
        if parsed is None:
            log.warning("cancel listener: ignored a message that is not a cancel request: %r", data[:200])
            return
        self.heard += 1
        execution_id, by = parsed
        if requested(execution_id, reason_for(by)):
            log.info("execution %s: cancel requested by %s: stopping it", execution_id, by,
                     extra={"execution_id": execution_id})

    def _catch_up(self) -> None:
        ids = running_here()
        if not ids or self.check is None:
            return
        try:
            for execution_id, by in self.check(ids):
                if cancel_here(execution_id, reason_for(by)):
                    log.info("execution %s: cancel requested by %s while the listener was reconnecting: "
                             "stopping it", execution_id, by, extra={"execution_id": execution_id})
        except Exception as exc:  # the database too: the next reconnect (or a redelivery) covers it
            log.warning("cancel listener: could not read cancel requests from the database: %s", exc)

    def stop(self) -> None:
        self.stopping.set()


_listener: dict[str, object] = {}


def start(redis_url: str, check: Check | None = None, wait: float = SUBSCRIBE_WAIT_S) -> Listener:
    """Start this process's listener (once per process: a forked child starts its own) and wait
    up to ``wait`` seconds for its subscription."""
    with _lock:
        current = _listener.get("thread")
        if _listener.get("pid") == os.getpid() and isinstance(current, Listener) and current.is_alive():
            return current
        if _listener.get("pid") != os.getpid():  # a forked child inherits the parent's registry:
            _running.clear()                     # nothing of it runs here
            _recent.clear()
        thread = Listener(redis_url, check)
        _listener.update(pid=os.getpid(), thread=thread)
    thread.start()
    if not thread.subscribed.wait(wait):
        log.warning("cancel listener: not subscribed after %.1fs (Redis unreachable?); it keeps trying", wait)
    return thread


def stop() -> None:
    with _lock:
        thread = _listener.pop("thread", None)
        _listener.pop("pid", None)
    if isinstance(thread, Listener):
        thread.stop()
        thread.join(5)


def asked_to_stop(ctx, ids: list[str]) -> list[tuple[str, str | None]]:
    """(id, cancelled_by) of the executions among ``ids`` whose cancel was requested."""
    from sqlalchemy import select

    from jobico_core.db import Execution
    with ctx.db.session() as s:
        return [(r.id, r.cancelled_by) for r in s.execute(
            select(Execution.id, Execution.cancelled_by).where(Execution.id.in_(ids),
                                                                Execution.cancel_requested_at.is_not(None)))]
