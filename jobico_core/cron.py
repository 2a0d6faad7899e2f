"""Cron expressions of ``schedule:`` triggers: checking them and computing fire times.

Five fields (minute hour day-of-month month day-of-week) or six with a leading
seconds field (``*/10 * * * * *``: every ten seconds), evaluated in an IANA
time zone (``Europe/Paris``; ``UTC`` by default). Parsing and iteration are
croniter's; this module fixes the accepted forms and words the errors.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterBadDateError, CroniterError

MAX_EXPRESSION = 200
MAX_TIMEZONE = 64


class CronError(ValueError):
    """A cron expression or time zone that cannot be used (the message says why)."""


def check_expression(expr: object) -> str:
    """The expression, normalised to single spaces; ``CronError`` when it is not usable."""
    if not isinstance(expr, str) or not expr.strip():
        raise CronError("must be a cron expression: 5 fields (minute hour day month weekday), "
                        "or 6 with leading seconds")
    if len(expr) > MAX_EXPRESSION:
        raise CronError(f"is longer than {MAX_EXPRESSION} characters")
    fields = expr.split()
    if len(fields) not in (5, 6):
        raise CronError(f"{expr!r} has {len(fields)} fields; give 5 (minute hour day month weekday) "
                        "or 6 (seconds first)")
    norm = " ".join(fields)
    try:
        it = croniter(norm, dt.datetime(2000, 1, 1, tzinfo=dt.UTC), second_at_beginning=True)
        it.get_next(dt.datetime)
    except CroniterBadDateError:
        raise CronError(f"{norm!r} never fires (no such date)") from None
    except (CroniterError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise CronError(f"{norm!r} is not a valid cron expression: {exc}") from None
    return norm


@lru_cache(maxsize=512)
def zone(name: object) -> ZoneInfo:
    """The IANA time zone ``name``; ``CronError`` when unknown."""
    if not isinstance(name, str) or not name or len(name) > MAX_TIMEZONE or "\x00" in name:
        raise CronError("must be an IANA time zone name such as 'UTC' or 'Europe/Paris'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CronError(f"{name!r} is not a known IANA time zone (e.g. 'UTC', 'Europe/Paris')") from None


@dataclass(frozen=True)
class Cron:
    """A checked expression in its time zone."""
    expression: str
    timezone: str = "UTC"

    @classmethod
    def parse(cls, expression: object, timezone: object = "UTC") -> Cron:
        return cls(check_expression(expression), zone(timezone).key)

    @property
    def has_seconds(self) -> bool:
        return len(self.expression.split()) == 6

    def next_after(self, when: dt.datetime) -> dt.datetime:
        """The first fire time strictly after ``when`` (aware), in UTC."""
        local = when.astimezone(zone(self.timezone))
        nxt = croniter(self.expression, local, second_at_beginning=True).get_next(dt.datetime)
        return nxt.astimezone(dt.UTC)

    def between(self, start: dt.datetime, end: dt.datetime, limit: int) -> list[dt.datetime]:
        """Fire times in ``(start, end]``, oldest first, at most the ``limit`` most recent ones."""
        out: list[dt.datetime] = []
        t = start
        while True:
            t = self.next_after(t)
            if t > end:
                return out[-limit:]
            out.append(t)
            if len(out) > 4 * limit:  # a long gap: keep only the tail
                out = out[-limit:]
