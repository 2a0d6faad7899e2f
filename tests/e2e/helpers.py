"""End-to-end harness: the real API (gunicorn-free, in a thread), real Celery
worker processes, real Redis, PostgreSQL and S3.
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import requests

from jobico_core.services.context import Context
from jobico_core.settings import Settings
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
ADMIN = "admin-token-for-tests-0123456789"
#: how often a server thread of the tests checks for its shutdown (socketserver's poll_interval)
SERVE_POLL_S = 0.05
W = TypeVar("W", bound="Worker")


@dataclass
class Platform:
    env: dict[str, str]
    settings: Settings
    ctx: Context
    tmp: Path
    url: str = ""
    workers: list[Worker] = field(default_factory=list)

    def start_worker(self, name: str = "w1", concurrency: int = 2, extra_env: dict | None = None, *,
                     wait: bool = True) -> Worker:
        return self._started(Worker(self, name, concurrency, extra_env or {}), wait)

    def start_bridge(self, name: str = "bridge1", extra_env: dict | None = None, *, wait: bool = True) -> Bridge:
        return self._started(Bridge(self, name, 0, extra_env or {}), wait)

    def start_beat(self, name: str = "beat1", extra_env: dict | None = None, *, wait: bool = True) -> Beat:
        return self._started(Beat(self, name, 0, extra_env or {}), wait)

    def ready(self, *procs: Worker) -> None:
        """Until each of ``procs`` (started with ``wait=False``: several start at once) is ready."""
        for proc in procs:
            proc.ready()

    def _started(self, proc: W, wait: bool) -> W:
        proc.launch()
        self.workers.append(proc)  # stopped by the fixture even when it never gets ready
        if wait:
            proc.ready()
        return proc

    # -- HTTP helpers ----------------------------------------------------------
    def admin(self, method: str, path: str, **kw) -> requests.Response:
        return requests.request(method, self.url + path, headers={"Authorization": f"Bearer {ADMIN}"},
                                timeout=30, **kw)

    def call(self, key: str, method: str, path: str, **kw) -> requests.Response:
        headers = {"Authorization": f"Bearer {key}", **kw.pop("headers", {})}
        return requests.request(method, self.url + path, headers=headers, timeout=30, **kw)

    def tenant(self, tenant: str) -> str:
        r = self.admin("POST", "/api/v1/tenants", json={"id": tenant})
        assert r.status_code == 201, r.text
        return r.json()["key"]

    def upload(self, key: str, path: Path, name: str | None = None) -> None:
        r = self.call(key, "PUT", f"/api/v1/files/{name or path.name}", data=path.read_bytes())
        assert r.status_code in (200, 201), r.text

    def deploy(self, key: str, yaml_text: str, redeploy_id: str | None = None) -> dict:
        if redeploy_id:
            r = self.call(key, "PUT", f"/api/v1/packages/{redeploy_id}", data=yaml_text.encode(),
                          headers={"Content-Type": "application/yaml"})
        else:
            r = self.call(key, "POST", "/api/v1/packages", data=yaml_text.encode(),
                          headers={"Content-Type": "application/yaml"})
        assert r.status_code == 201, r.text
        return r.json()

    def post(self, key: str, tenant: str, event: str, data: list, **kw) -> requests.Response:
        return self.call(key, "POST", f"/events/{tenant}/{event}", json={"data": data}, **kw)

    def wait(self, key: str, execution_id: str, timeout: float = 60.0,
             until=lambda e: e["status"] not in ("queued", "running")) -> dict:
        seen: dict = {}

        def reached() -> dict | None:
            r = self.call(key, "GET", f"/api/v1/executions/{execution_id}")
            if r.status_code != 200:
                raise AssertionError(r.text)
            seen["e"] = r.json()
            return seen["e"] if until(seen["e"]) else None

        try:
            return wait_until(reached, timeout, interval=0.1)
        except AssertionError:
            if "e" not in seen:
                raise
            logs = "\n".join(w.log_tail() for w in self.workers)
            raise AssertionError(f"execution {execution_id} still {seen['e']['status']} after {timeout}s\n{logs}") \
                from None


class Worker:
    def __init__(self, platform: Platform, name: str, concurrency: int, extra_env: dict):
        self.platform, self.name, self.concurrency, self.extra_env = platform, name, concurrency, extra_env
        self.proc: subprocess.Popen | None = None
        self.log_path = platform.tmp / f"worker-{name}.log"

    def start(self, timeout: float = 60.0) -> None:
        self.launch()
        self.ready(timeout)

    def launch(self) -> None:
        """Start the process; ``ready()`` waits until it serves."""
        env = {**os.environ, **self.platform.env, **self.extra_env}
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "jobico_worker.app", "worker", "-n", f"{self.name}@%h",
             "-P", "prefork", "-c", str(self.concurrency), "--without-gossip", "--without-mingle",
             "--without-heartbeat", "-l", "INFO"],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def ready(self, timeout: float = 60.0) -> None:
        self.wait_log(" ready.", timeout, what="worker ready")

    def wait_log(self, needle: str, timeout: float = 20.0, after: int = 0, *, what: str | None = None) -> None:
        """Until the process logs ``needle`` (after byte ``after``); its exit or the deadline fails
        with the log's tail."""
        what = what or f"{self.name} logged {needle!r}"

        def seen() -> bool:
            if needle.encode() in self.log_path.read_bytes()[after:]:
                return True
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{what}: the process exited ({self.proc.returncode}):\n{self.log_tail()}")
            return False
        try:
            wait_until(seen, timeout, what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log_tail()}") from None

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return f"--- worker {self.name} ---\n" + "\n".join(lines[-n:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0, group: bool = True) -> None:
        """``sig`` to the worker's process group (pool processes too), or with ``group=False`` to its
        main process alone, as Kubernetes and Docker stop a container (a warm shutdown: the pool
        processes finish what they run); SIGKILL to the group after ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            if group:
                os.killpg(self.proc.pid, sig)
            else:
                os.kill(self.proc.pid, sig)
            self.proc.wait(timeout)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        self._log.close()


class Beat(Worker):
    """``celery beat`` with Jobico's scheduler (what `jobico run`, the chart and compose start)."""

    def launch(self) -> None:
        from jobico_ops.launcher import BEAT_SCHEDULER
        env = {**os.environ, **self.platform.env, **self.extra_env}
        self.log_path = self.platform.tmp / f"beat-{self.name}.log"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "jobico_worker.app", "beat", "-l", "INFO",
             "--scheduler", BEAT_SCHEDULER],
            cwd=self.platform.tmp, env={**env, "PYTHONPATH": str(ROOT)}, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True)

    def ready(self, timeout: float = 60.0) -> None:
        self.wait_log("beat: Starting", timeout, what="beat started")

    def holds_lock(self) -> bool:
        return b"holds the lock" in self.log_path.read_bytes()


class Bridge(Worker):
    """``jobico mqtt-bridge`` (what `jobico run`, the chart and compose start when a broker is set)."""

    def launch(self) -> None:
        env = {**os.environ, **self.platform.env, **self.extra_env}
        self.log_path = self.platform.tmp / f"bridge-{self.name}.log"
        self._log = open(self.log_path, "ab")
        self._offset = self.log_path.stat().st_size
        self.proc = subprocess.Popen([sys.executable, "-m", "jobico_ops.main", "mqtt-bridge"], cwd=ROOT, env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def ready(self, timeout: float = 60.0) -> None:
        self.wait_log("connected to", timeout, after=self._offset, what="bridge connected")

    def log_size(self) -> int:
        return self.log_path.stat().st_size


def serve_app(app):
    from werkzeug.serving import make_server
    server = make_server("127.0.0.1", 0, app, threaded=True)
    # shutdown() returns at the loop's next poll: every 0.5 s by default, half a second a test
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": SERVE_POLL_S}, daemon=True)
    thread.start()
    return server, f"http://127.0.0.1:{server.server_port}"


@contextlib.contextmanager
def served_api(settings: Settings, **app_options) -> Iterator[tuple[Context, str]]:
    """The API (``create_app(ctx=..., **app_options)``, e.g. ``role="gateway"``) on its own Context
    over ``settings``, served over real HTTP on 127.0.0.1:<free port> in a thread; yields (its
    Context, its URL), then stops the server and closes the Context."""
    from jobico_api import create_app
    ctx = Context(settings)
    server, url = serve_app(create_app(ctx=ctx, **app_options))
    try:
        yield ctx, url
    finally:
        server.shutdown()
        server.server_close()
        ctx.celery.close()
        ctx.db.engine.dispose()


def serve_api(settings: Settings) -> tuple[Context, str, object]:
    """Another API process's worth: its own app and Context on ``settings``, served in a thread.
    Returns (its Context, its URL, its server: ``shutdown()`` it)."""
    from jobico_api import create_app
    app = create_app(settings)
    server, url = serve_app(app)
    return app.extensions["jobico"], url, server


def platform_env(pg_url: str, redis_url: str, s3, bucket: str, tmp: Path, **extra: str) -> dict[str, str]:
    """The JOBICO_* environment of a platform on the given real services (API, workers)."""
    return {
        "JOBICO_EMBEDDED": "0",
        "JOBICO_DATABASE_URL": pg_url,
        "JOBICO_REDIS_URL": redis_url,
        "JOBICO_STORAGE_URL": f"s3://{bucket}",
        "JOBICO_S3_ENDPOINT": s3.endpoint,
        "JOBICO_S3_ACCESS_KEY": s3.access_key,
        "JOBICO_S3_SECRET_KEY": s3.secret_key,
        "JOBICO_ADMIN_TOKEN": ADMIN,
        "JOBICO_SECRET_KEY": "secret-key-for-tests-0123456789",
        "JOBICO_DATA_DIR": str(tmp / "data"),
        "JOBICO_CACHE_DIR": str(tmp / "cache"),
        "JOBICO_QUEUE_REFRESH": "1",
        "JOBICO_SCHEDULE_REFRESH": "1",
        "JOBICO_LOG_LEVEL": "INFO",
        **extra,
    }


def example(path: str) -> Path:
    return EXAMPLES / path


def flow_package(pkg_id: str, *, rate_limit: str, nap_timeout_ms: int, plain: bool = False) -> str:
    """The flow-control package of the flow tests (tests/e2e/test_flow.py, tests/chaos/test_flow.py):
    ``work`` (nap.wasm) at most 2 at once per ``$.customer``, ``save`` debounced 2 s per ``$.doc``,
    ``call`` rate-limited (``rate_limit``: the flow mapping's key, per_second and burst), and with
    ``plain`` an event without flow control. Needs nap.wasm, echo.wasm and any.json uploaded."""
    plain_event = "  - event: {id: plain, schema: {id: s, schemaref: any.json}, supplierqueue: q, runtime: echo}\n"
    return f"""
id: {pkg_id}
queues: [{{id: q}}]
jobs:
  - event: {{id: work, schema: {{id: s, schemaref: any.json}}, supplierqueue: q, runtime: nap,
            concurrency: {{key: $.customer, limit: 2}}}}
  - event: {{id: save, schema: {{id: s, schemaref: any.json}}, supplierqueue: q, runtime: echo,
            debounce: {{key: $.doc, seconds: 2}}}}
  - event: {{id: call, schema: {{id: s, schemaref: any.json}}, supplierqueue: q, runtime: echo,
            rate_limit: {{{rate_limit}}}}}
{plain_event if plain else ""}runtimes:
  - {{id: nap, moduleref: nap.wasm, limits: {{timeout_ms: {nap_timeout_ms}}}}}
  - {{id: echo, moduleref: echo.wasm}}
"""


def metric(text: str, name: str, **labels) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total, found = 0.0, False
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{([^}]*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total, found = total + float(m.group(4)), True
    assert found, f"no sample {name}{labels} in:\n" + "\n".join(x for x in text.splitlines() if name in x)
    return total
