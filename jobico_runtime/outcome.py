"""The runtime's public types: what a run returns (:class:`Outcome`, :class:`Status`,
:class:`LogRecord`) and how another thread stops it (:class:`CancelToken`)."""
from __future__ import annotations

import enum
import threading
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Status", "LogRecord", "Outcome", "CancelToken"]


class Status(str, enum.Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TRAPPED = "trapped"
    TIMED_OUT = "timed_out"
    LIMIT_EXCEEDED = "limit_exceeded"
    INVALID_MODULE = "invalid_module"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class LogRecord:
    level: int
    message: str


@dataclass
class Outcome:
    status: Status
    code: int | None = None
    result: str | None = None
    logs: list[LogRecord] = field(default_factory=list)
    stdout: str = ""
    limit: str | None = None
    message: str | None = None
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status is Status.SUCCEEDED

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value, "code": self.code, "result": self.result,
            "logs": [{"level": r.level, "message": r.message} for r in self.logs],
            "stdout": self.stdout, "limit": self.limit, "message": self.message,
            "duration_ms": self.duration_ms,
        }


class CancelToken:
    """Cancel a running execution from another thread.

    ``cancel()`` makes the execution it was passed to stop at its next epoch
    check (within a tick, ~5 ms, while the guest runs wasm code) with status
    ``cancelled``.  A token cancelled before the run starts cancels it
    immediately.
    """

    __slots__ = ("_event", "reason")

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None

    def cancel(self, reason: str | None = None) -> None:
        self.reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()
