"""prometheus-client's multiprocess mode: the life of ``PROMETHEUS_MULTIPROC_DIR``.

A process that forks workers (gunicorn, Celery prefork) and serves one ``/metrics``
for all of them needs every worker to write its samples to files in one directory
that a scrape adds up (``jobico_core.metrics.registry``). The directory must start
empty (stale files of an earlier run would be added in), and when a worker exits its
live gauges must be dropped (``mark_process_dead``); its counters stay, so a total
never goes down when gunicorn replaces a worker.

This module imports no metric definitions, so a process that only manages the
directory (gunicorn's master) writes no samples of its own.
"""
from __future__ import annotations

import os
from pathlib import Path

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def directory() -> str | None:
    """The multiprocess directory of this process, or None (single-process mode)."""
    return os.environ.get(VARIABLE) or os.environ.get("prometheus_multiproc_dir") or None


def reset(path: os.PathLike | str | None = None) -> None:
    """Create the directory (private to its owner) and delete the sample files (``*.db``) an
    earlier run left in it. Nothing at all without a directory (never the working directory)."""
    path = path or directory()
    if not path:
        return
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for entry in path.glob("*.db"):  # prometheus-client's files: <type>_<pid>.db; nothing else is touched
        if entry.is_file() and not entry.is_symlink():
            entry.unlink(missing_ok=True)


def process_exited(pid: int) -> None:
    """A worker process is gone: drop its live gauges (its counters keep counting in the total)."""
    path = directory()
    if path:
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(pid, path)
