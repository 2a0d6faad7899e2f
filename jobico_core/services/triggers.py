"""The change counter of the deployed triggers: deploys, rollbacks, package and tenant deletes bump
it; beat (``schedules``) and the MQTT bridge (``mqtt``) re-read the triggers when it moves."""
from __future__ import annotations

import logging

from .context import Context

log = logging.getLogger(__name__)

SCHEDULES_CHANGED = "jobico:schedules:generation"


def schedules_changed(ctx: Context) -> None:
    """Tell running beat processes and MQTT bridges to re-read the deployed triggers now (best
    effort: they also re-read every JOBICO_SCHEDULE_REFRESH / JOBICO_MQTT_REFRESH seconds)."""
    try:
        ctx.redis.incr(SCHEDULES_CHANGED)
    except Exception as exc:  # the change is committed; beat catches up on its next re-read
        log.warning("could not notify beat of a schedule change: %s", exc)
