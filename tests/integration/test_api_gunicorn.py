"""The WSGI entry point under a real gunicorn (gthread), configured from the environment only."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from jobico_core.embedded import free_port

from .conftest import ADMIN_TOKEN, SECRET_KEY

pytestmark = pytest.mark.services
ROOT = Path(__file__).resolve().parents[2]


def _gunicorn(s, tmp_path, port: int, **extra: str) -> subprocess.Popen:
    """gunicorn with the project's config, configured from the environment only; ready on /ready."""
    env = {**os.environ,
           "JOBICO_API_HOST": "127.0.0.1", "JOBICO_API_PORT": str(port), "JOBICO_API_WORKERS": "1",
           "JOBICO_API_THREADS": "2", "JOBICO_DATABASE_URL": s.database_url, "JOBICO_REDIS_URL": s.redis_url,
           "JOBICO_STORAGE_URL": s.storage_url, "JOBICO_S3_ENDPOINT": s.s3_endpoint,
           "JOBICO_S3_ACCESS_KEY": s.s3_access_key, "JOBICO_S3_SECRET_KEY": s.s3_secret_key,
           "JOBICO_ADMIN_TOKEN": ADMIN_TOKEN, "JOBICO_SECRET_KEY": SECRET_KEY, "JOBICO_DATA_DIR": str(tmp_path),
           "JOBICO_EMBEDDED": "0", "JOBICO_MAX_BODY_KB": "64", **extra}
    gunicorn = Path(sys.executable).parent / "gunicorn"
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(gunicorn), "-c", "python:jobico_api.gunicorn_conf", "jobico_api.wsgi:app"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 30
    while True:
        try:
            r = requests.get(f"http://127.0.0.1:{port}/ready", timeout=5)
            assert r.status_code == 200, r.text
            return proc
        except requests.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                _stop(proc)
                raise AssertionError("gunicorn did not start:\n" + log_path.read_text()[-3000:])
            time.sleep(0.2)


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def test_gunicorn_serves_the_app_from_env(api_settings, tmp_path):
    port = free_port()
    proc = _gunicorn(api_settings, tmp_path, port)
    base = f"http://127.0.0.1:{port}"
    try:
        r = requests.post(f"{base}/api/v1/tenants", json={"id": "tenant_1"},
                          headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)
        assert r.status_code == 201
        key = r.json()["key"]
        r = requests.post(f"{base}/events/tenant_1/nope", data=json.dumps({"data": [1]}),
                          headers={"Authorization": f"Bearer {key}"}, timeout=10)
        assert r.status_code == 404 and r.json()["message"] == "event 'nope' is not deployed for tenant 'tenant_1'"
        # chunked body over the limit: refused while reading
        def chunks():
            for _ in range(200):
                yield b"x" * 1024
        r = requests.post(f"{base}/events/tenant_1/nope", data=chunks(), timeout=10)
        assert r.status_code == 413 and r.json()["code"] == 413
    finally:
        _stop(proc)


def test_gunicorn_split_ports_keep_the_control_api_off_the_gateway(api_settings, tmp_path):
    """JOBICO_GATEWAY_PORT: one gunicorn listens on both ports; the control API (and its docs and
    metrics) is a 404 on the gateway port, the webhook a 404 on the control port, whatever the
    Host header claims."""
    port, gw_port = free_port(), free_port()
    proc = _gunicorn(api_settings, tmp_path, port, JOBICO_GATEWAY_PORT=str(gw_port))
    api, gw = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{gw_port}"
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        r = requests.post(f"{api}/api/v1/tenants", json={"id": "tenant_1"}, headers=admin, timeout=10)
        assert r.status_code == 201
        key = {"Authorization": f"Bearer {r.json()['key']}"}
        r = requests.post(f"{gw}/events/tenant_1/nope", json={"data": [1]}, headers=key, timeout=10)
        assert r.status_code == 404 and "is not deployed" in r.json()["message"]  # the webhook answered
        for path in ("/api/v1/tenants", "/api/v1/openapi.json", "/docs", "/metrics", "/api/v1/whoami"):
            for headers in (admin, {**admin, "Host": f"127.0.0.1:{port}"}):
                r = requests.get(f"{gw}{path}", headers=headers, timeout=10)
                assert r.status_code == 404 and r.json()["code"] == 404, (path, r.text[:200])
        r = requests.post(f"{gw}/api/v1/tenants", json={"id": "evil"}, headers=admin, timeout=10)
        assert r.status_code == 404
        r = requests.post(f"{api}/events/tenant_1/nope", json={"data": [1]}, headers=key, timeout=10)
        assert r.status_code == 404 and r.json()["code"] == 404 and "not deployed" not in r.json()["message"]
        assert requests.get(f"{api}/api/v1/whoami", headers=key, timeout=10).json()["tenant"] == "tenant_1"
        assert "jobico_events_rejected_total" in requests.get(f"{api}/metrics", timeout=10).text
        for base in (api, gw):
            assert requests.get(f"{base}/health", timeout=10).json() == {"status": "ok"}
    finally:
        _stop(proc)


def test_wsgi_refuses_to_start_without_credentials(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBICO_")}
    env["JOBICO_DATA_DIR"] = str(tmp_path)
    r = subprocess.run([sys.executable, "-c", "import jobico_api.wsgi"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "JOBICO_ADMIN_TOKEN is not set" in r.stderr and "JOBICO_SECRET_KEY is not set" in r.stderr
