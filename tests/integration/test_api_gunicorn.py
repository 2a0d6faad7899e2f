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


def test_gunicorn_serves_the_app_from_env(api_settings, tmp_path):
    s = api_settings
    port = free_port()
    env = {**os.environ,
           "JOBICO_API_HOST": "127.0.0.1", "JOBICO_API_PORT": str(port), "JOBICO_API_WORKERS": "1",
           "JOBICO_API_THREADS": "2", "JOBICO_DATABASE_URL": s.database_url, "JOBICO_REDIS_URL": s.redis_url,
           "JOBICO_STORAGE_URL": s.storage_url, "JOBICO_S3_ENDPOINT": s.s3_endpoint,
           "JOBICO_S3_ACCESS_KEY": s.s3_access_key, "JOBICO_S3_SECRET_KEY": s.s3_secret_key,
           "JOBICO_ADMIN_TOKEN": ADMIN_TOKEN, "JOBICO_SECRET_KEY": SECRET_KEY, "JOBICO_DATA_DIR": str(tmp_path),
           "JOBICO_EMBEDDED": "0", "JOBICO_MAX_BODY_KB": "64"}
    gunicorn = Path(sys.executable).parent / "gunicorn"
    log = open(tmp_path / "gunicorn.log", "wb")
    proc = subprocess.Popen([str(gunicorn), "-c", "python:jobico_api.gunicorn_conf", "jobico_api.wsgi:app"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = requests.get(f"{base}/ready", timeout=5)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, (tmp_path / "gunicorn.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)
        assert r.status_code == 200, r.text
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
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()


def test_wsgi_refuses_to_start_without_credentials(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBICO_")}
    env["JOBICO_DATA_DIR"] = str(tmp_path)
    r = subprocess.run([sys.executable, "-c", "import jobico_api.wsgi"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "JOBICO_ADMIN_TOKEN is not set" in r.stderr and "JOBICO_SECRET_KEY is not set" in r.stderr
