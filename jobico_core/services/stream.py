"""The live feed of a tenant's finished executions: what ``GET /api/v1/executions/stream`` sends
(the API only frames it as Server-Sent Events and adds keepalives).

How it is fed, and what it guarantees (see docs/api.md, "Live stream"):

1. subscribe to the tenant's pub/sub channel and wait for Redis to confirm it (:func:`subscribe`);
2. replay from the database (:meth:`Feed.replay`): after a ``last`` seq every finished execution
   with a higher seq, in seq order, plus a lookback window (those with a lower seq, never the
   named one itself, that finished at most ``LOOKBACK_SECONDS`` before it: sequence numbers are
   handed out before commit, so they can commit out of order); without it the ``recent`` last ones;
3. then live (:meth:`Feed.live`): each pub/sub message not already sent on this connection, even
   one whose seq is lower than the highest sent (a late commit);
4. every ``CATCHUP_SECONDS`` a catch-up query (:meth:`Feed.catch_up_if_due`) sends what pub/sub
   did not deliver (pub/sub is at most once), so a lost message is late, not lost.

Within one feed an execution is sent at most once. Across a reconnect the lookback may send an
execution again: clients deduplicate by the record's ``id``.
"""
from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from ..broker import results_channel
from ..errors import Unavailable
from .context import Context
from .executions import finished_after, last_seq, recent_finished

log = logging.getLogger(__name__)

CATCHUP_SECONDS = 5.0
LOOKBACK_SECONDS = 10.0
REPLAY_BATCH = 500
SENT_MEMORY = 10000  # execution ids remembered per feed (dedup of live vs replay/catch-up)


class Filter:
    """The feed's optional package, event and status."""

    def __init__(self, package: str | None, event: str | None, status: str | None):
        self.package, self.event, self.status = package, event, status

    def kwargs(self) -> dict[str, Any]:
        return {"package": self.package, "event": self.event, "status": self.status}

    def __call__(self, d: dict) -> bool:
        return ((self.package is None or d.get("package") == self.package)
                and (self.event is None or d.get("event") == self.event)
                and (self.status is None or d.get("status") == self.status))


def subscribe(ctx: Context, tenant: str) -> Any:
    """A pub/sub connection on the tenant's channel, the subscription confirmed by Redis."""
    try:
        pubsub = ctx.redis.pubsub()
        pubsub.subscribe(results_channel(tenant))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            msg = pubsub.get_message(timeout=1.0)
            if msg and msg["type"] == "subscribe":
                return pubsub
        pubsub.close()
    except Exception as exc:
        log.warning("stream: cannot subscribe to Redis: %s", exc)
    raise Unavailable("the live stream is unavailable: Redis does not answer")


class Feed:
    """One connection's executions: the replay, then (with a pub/sub subscription) live ones and
    catch-ups, each execution at most once. Close it when done (it owns the subscription)."""

    def __init__(self, ctx: Context, tenant: str, flt: Filter, last: int | None, recent: int, pubsub: Any = None):
        self.ctx, self.tenant, self.flt = ctx, tenant, flt
        self.last, self.recent, self.pubsub = last, recent, pubsub
        try:
            watermark = last_seq(ctx, tenant) if last is None else last
        except Exception:
            self.close()
            raise
        self.high = watermark   # the highest seq known to be covered (sent, or before the connection)
        self.floor = watermark  # where this feed starts: older ones are history (or the replay's lookback)
        self.sent: OrderedDict[str, int] = OrderedDict()
        self.next_catchup = time.monotonic() + CATCHUP_SECONDS

    @property
    def follows(self) -> bool:
        return self.pubsub is not None

    def _new(self, d: dict) -> bool:
        """Whether ``d`` is to be sent (matching, not sent yet); remembers it."""
        eid, seq = d.get("id"), d.get("seq")
        if not eid or seq is None or eid in self.sent or not self.flt(d):
            return False
        self.sent[eid] = seq
        if len(self.sent) > SENT_MEMORY:
            self.sent.popitem(last=False)
        self.high = max(self.high, int(seq))
        return True

    def _catch_up(self, after: int, lookback: float, not_below: int | None) -> Iterator[dict]:
        while True:
            rows = finished_after(self.ctx, self.tenant, after, limit=REPLAY_BATCH, lookback_seconds=lookback,
                                  not_below=not_below, **self.flt.kwargs())
            yield from (d for d in rows if self._new(d))
            newer = [d["seq"] for d in rows if d["seq"] > after]
            if len(newer) < REPLAY_BATCH:
                return
            after, lookback = max(newer), 0.0

    def replay(self) -> Iterator[dict]:
        """Since ``last`` (with the lookback), else the ``recent`` last ones."""
        if self.last is not None:
            yield from self._catch_up(self.last, LOOKBACK_SECONDS, not_below=None)
        elif self.recent:
            yield from (d for d in recent_finished(self.ctx, self.tenant, self.recent, **self.flt.kwargs())
                        if self._new(d))

    def resume_point(self) -> int | None:
        """After the replay: the seq a reconnect should resume from, when the client does not know
        it yet (so it resumes from here even when nothing matching was sent)."""
        return self.high if self.last is None or self.high > self.last else None

    def live(self, timeout: float = 1.0) -> Iterator[dict]:
        """The next pub/sub message (waiting up to ``timeout``), if it is new and matches."""
        msg = self.pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
        if msg is None or msg.get("type") != "message":
            return
        try:
            d = json.loads(msg["data"])
        except (TypeError, ValueError):
            return
        if isinstance(d, dict) and d.get("tenant") == self.tenant:
            d.setdefault("logs", [])
            if self._new(d):
                yield d

    def catch_up_if_due(self) -> Iterator[dict]:
        """Every CATCHUP_SECONDS: what pub/sub did not deliver since the highest seq covered."""
        if time.monotonic() < self.next_catchup:
            return
        yield from self._catch_up(self.high, LOOKBACK_SECONDS, not_below=self.floor)
        self.next_catchup = time.monotonic() + CATCHUP_SECONDS

    def close(self) -> None:
        if self.pubsub is not None:
            try:
                self.pubsub.close()
            except Exception:
                pass
