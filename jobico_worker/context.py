"""The worker process's Context and runtime, created lazily after fork."""
from __future__ import annotations

import os
import threading

from jobico_core.services.context import Context
from jobico_core.settings import Settings

_lock = threading.Lock()
_state: dict[str, object] = {}


def worker_context(settings: Settings | None = None, celery=None) -> Context:
    """One Context per process (database engines and sockets must not cross a fork)."""
    with _lock:
        if _state.get("pid") != os.getpid() or "ctx" not in _state:
            settings = settings or Settings.from_env()
            _state.clear()
            _state.update(pid=os.getpid(), ctx=Context(settings, _celery=celery))
        return _state["ctx"]  # type: ignore[return-value]


def reset() -> None:
    with _lock:
        _state.clear()
