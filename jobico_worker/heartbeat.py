"""This process's renewal of the leases of the executions it holds (``jobico_core.services.leases``).

``holding(ctx, rows)`` around everything a task does with executions it claimed (run, record):
a thread of the process renews their leases every third of ``JOBICO_EXECUTION_LEASE_SECONDS``,
keyed by the attempt each claim counted, so a delivery superseded by a later claim of the same
execution renews nothing. A process that dies stops renewing: the recovery takes its
executions back once their leases run out.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Iterator

from jobico_core.services import leases
from jobico_core.services.context import Context

from .per_process import PerProcess

log = logging.getLogger("jobico.worker")


class Heartbeat:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.period = max(0.2, leases.lease_s(ctx) / 3)
        self._held: dict[str, int] = {}  # execution id -> the attempt its claim counted
        self._mutex = threading.Lock()
        threading.Thread(target=self._loop, name="jobico-lease-heartbeat", daemon=True).start()

    @contextlib.contextmanager
    def holding(self, rows: Iterable) -> Iterator[None]:
        mine = {r.id: r.attempts for r in rows}
        with self._mutex:
            self._held.update(mine)
        try:
            yield
        finally:
            with self._mutex:
                for execution_id, attempts in mine.items():
                    if self._held.get(execution_id) == attempts:
                        del self._held[execution_id]

    def held(self) -> list[tuple[str, int]]:
        with self._mutex:
            return list(self._held.items())

    def _loop(self) -> None:
        while True:
            time.sleep(self.period)
            held = self.held()
            if not held:
                continue
            try:
                leases.renew(self.ctx, held)
            except Exception as exc:  # the database is away: the leases run on until they expire
                log.warning("could not renew the leases of %d running execution(s): %s", len(held), exc)


_beats: PerProcess[Heartbeat] = PerProcess(Heartbeat)


def heartbeat(ctx: Context) -> Heartbeat:
    """This process's heartbeat (threads do not survive a fork: one per pid)."""
    return _beats.get(ctx)


def holding(ctx: Context, rows: Iterable) -> contextlib.AbstractContextManager:
    """Renew the leases of the claimed ``rows`` (each with ``id`` and ``attempts``) for the block."""
    return heartbeat(ctx).holding(list(rows))
