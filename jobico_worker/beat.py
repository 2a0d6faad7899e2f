"""Celery beat's scheduler for cron triggers:
``celery -A jobico_worker.app beat --scheduler jobico_worker.beat:JobicoScheduler``.

The schedules are the ``schedule:`` of every package's active version, read
from the database at start, whenever a deploy, redeploy, rollback or delete
bumps the change counter in Redis (checked every tick, at most a second
apart), and every JOBICO_SCHEDULE_REFRESH seconds regardless. Nothing is kept
in a schedule file.

One beat fires: the holder of a Redis lock (``SET NX PX``, renewed every
tick, released at exit); another beat started by mistake waits as a standby
and takes over within JOBICO_BEAT_LOCK_SECONDS (default 10) of the holder's death. Should two
ever fire the same time anyway (a holder frozen past its lock), the database
records the fire once (``services.schedules.fire``).

Timing: a fire time is fired once it has passed (ticks wake up at the next
fire time, so a fire is late by milliseconds); fire times missed while the
beat was down are made up if at most MISFIRE_GRACE seconds late (a takeover
also re-checks the last lock TTL + 2 TICK seconds, so nothing the previous
holder missed before dying is lost; what it did fire is refused as a
duplicate) and skipped beyond that.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from celery.beat import Scheduler

from jobico_core import tracing
from jobico_core.db import utcnow
from jobico_core.services.schedules import Schedule, deployed_schedules, fire, generation

log = logging.getLogger("jobico.beat")

LOCK_KEY = "jobico:beat:lock"
MISFIRE_GRACE = 60.0   # seconds late a missed fire time may still be fired
MAX_CATCH_UP = 100     # most fire times of one schedule made up at once
TICK = 1.0             # longest sleep between ticks (lock renewal, change counter)
ALIVE_FILE = Path(tempfile.gettempdir()) / "jobico-beat.alive"  # touched every tick (a liveness probe's)

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


@dataclass
class _Entry:
    schedule: Schedule
    done_until: dt.datetime  # every fire time up to here was handled


class JobicoScheduler(Scheduler):
    """Fires the deployed schedules (see the module's docstring)."""

    def __init__(self, *args, **kwargs):
        from .celery_app import settings
        from .context import worker_context
        # a cron fire's jobico.submit span starts the trace its execution continues (only with
        # OTEL_EXPORTER_OTLP_ENDPOINT set; replaces the worker's setup that importing the app made)
        tracing.setup("jobico-beat")
        self.ctx = worker_context(settings, celery=kwargs.get("app"))
        self.refresh_every = float(settings.schedule_refresh)
        self.lock_ttl = float(settings.beat_lock_s)  # seconds a dead holder keeps the lock
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.leader = False
        self.entries: dict[tuple, _Entry] = {}
        self.seen_generation: int | None = None
        self.loaded_at = float("-inf")
        super().__init__(*args, **kwargs)

    # -- celery.beat.Scheduler --------------------------------------------------------
    def setup_schedule(self) -> None:  # nothing from beat_schedule or a file: the database is the source
        pass

    @property
    def info(self) -> str:
        return (f"    . schedules -> active package versions (re-read every {self.refresh_every:g}s "
                f"and on deploy)\n    . lock -> redis {LOCK_KEY} as {self.token}")

    def tick(self, *args, **kwargs) -> float:
        try:
            ALIVE_FILE.touch()
        except OSError:  # pragma: no cover - a read-only /tmp: no liveness file
            pass
        try:
            return self._tick()
        except Exception as exc:  # Redis or the database is down: keep beating, try again shortly
            log.warning("beat tick failed: %s", exc)
            return TICK

    def close(self) -> None:
        if self.leader:
            try:
                self.ctx.redis.eval(_RELEASE, 1, LOCK_KEY, self.token)
            except Exception as exc:  # the lock expires by itself
                log.warning("could not release the beat lock: %s", exc)
            self.leader = False
        super().close()

    # -- the work ---------------------------------------------------------------------------
    def _tick(self) -> float:
        took_over = self._hold_lock()
        if not self.leader:
            return TICK
        now = utcnow()
        gen = generation(self.ctx)
        if took_over or gen != self.seen_generation or time.monotonic() - self.loaded_at >= self.refresh_every:
            self._load(now, gen, took_over)
        now = utcnow()
        for entry in self.entries.values():
            try:
                self._fire_due(entry, now)
            except Exception as exc:  # database / Redis: the unfired times are retried next tick
                log.warning("schedule %s/%s: could not fire: %s", entry.schedule.tenant, entry.schedule.event, exc)
        nxt = min((e.schedule.cron.next_after(e.done_until) for e in self.entries.values()), default=None)
        if nxt is None:
            return TICK
        return max(0.0, min(TICK, (nxt - utcnow()).total_seconds()))

    def _hold_lock(self) -> bool:
        """Take or renew the lock; True when this tick made this beat the holder."""
        r = self.ctx.redis
        ttl_ms = int(self.lock_ttl * 1000)
        if self.leader:
            try:
                renewed = r.eval(_RENEW, 1, LOCK_KEY, self.token, ttl_ms)
            except Exception:
                self.leader = False
                raise
            if not renewed:
                log.warning("beat lost its lock (%s): standing by", LOCK_KEY)
                self.leader = False
            return False
        if r.set(LOCK_KEY, self.token, nx=True, px=ttl_ms):
            log.info("beat holds the lock %s: firing schedules", LOCK_KEY)
            self.leader = True
            return True
        return False

    def _load(self, now: dt.datetime, gen: int, took_over: bool) -> None:
        schedules = deployed_schedules(self.ctx)
        # a new holder re-checks what the previous one may have missed (duplicates are refused)
        start = now - dt.timedelta(seconds=self.lock_ttl + 2 * TICK) if took_over else now
        entries = {}
        for sched in schedules:
            old = self.entries.get(sched.key)
            if old is not None:
                old.schedule = sched  # same timing, maybe a newer version
                entries[sched.key] = old
            else:
                entries[sched.key] = _Entry(sched, max(start, sched.deployed_at))
                log.info("schedule %s/%s/%s: %r %s", sched.tenant, sched.package, sched.event,
                         sched.cron.expression, sched.cron.timezone)
        for key in self.entries.keys() - entries.keys():
            log.info("schedule %s/%s: %r %s removed", key[0], key[1], key[2], key[3])
        self.entries = entries
        self.seen_generation = gen
        self.loaded_at = time.monotonic()

    def _fire_due(self, entry: _Entry, now: dt.datetime) -> None:
        sched = entry.schedule
        floor = now - dt.timedelta(seconds=MISFIRE_GRACE)
        if entry.done_until < floor:
            log.warning("schedule %s/%s: fire times before %s skipped (more than %gs late)", sched.tenant,
                        sched.event, floor.isoformat(), MISFIRE_GRACE)
            entry.done_until = floor
        for when in sched.cron.between(entry.done_until, now, MAX_CATCH_UP):
            fire(self.ctx, sched, when)  # raises on infrastructure errors: this time is retried next tick
            entry.done_until = when
        entry.done_until = max(entry.done_until, now)
