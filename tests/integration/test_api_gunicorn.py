"""The WSGI entry point under a real gunicorn (gthread), configured from the environment only."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from jobico_ops.embedded import free_port
from tests.waiting import wait_until

from .helpers import ADMIN_TOKEN, SECRET_KEY

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
    try:
        r = wait_until(lambda: proc.poll() is not None or requests.get(f"http://127.0.0.1:{port}/ready", timeout=5), 30,
                       what="gunicorn listening", interval=0.2, ignore=(requests.ConnectionError,))
    except AssertionError:
        r = None
    if r is None or r is True:   # not listening within the deadline, or exited
        _stop(proc)
        raise AssertionError("gunicorn did not start:\n" + log_path.read_text()[-3000:])
    assert r.status_code == 200, r.text
    return proc


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


def _raw(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` as is on a fresh connection; the answer's status, headers and body."""
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def test_what_gunicorn_refuses_is_answered_in_the_json_error_shape(api_settings, tmp_path):
    """Request line, header count, header size, malformed request lines: gunicorn's own refusals
    come back as the API's JSON error body, not HTML; `//events/...` is a JSON 404."""
    port = free_port()
    proc = _gunicorn(api_settings, tmp_path, port)
    base = f"http://127.0.0.1:{port}"
    try:
        r = requests.post(f"{base}/api/v1/tenants", json={"id": "tenant_1", "webhook_auth": "none"},
                          headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)
        assert r.status_code == 201

        def refused(data: bytes, status: int, *words: str) -> None:
            code, headers, body = _raw(port, data)
            assert code == status, (data[:80], code, body[:300])
            assert headers["content-type"] == "application/json", headers
            doc = json.loads(body)
            assert doc["code"] == status and doc["status"] and doc["errors"]["request"], doc
            assert b"<html" not in body.lower()
            for word in words:
                assert word in doc["message"], doc

        q = "x" * 8200  # the request line is longer than 8190 bytes
        refused(f"GET /api/v1/whoami?q={q} HTTP/1.1\r\nHost: a\r\n\r\n".encode(), 414, "Request Line is too large")
        # a long URL under the limit reaches the app
        r = requests.get(f"{base}/api/v1/whoami?q={'x' * 7000}", timeout=10)
        assert r.status_code == 401 and r.json()["code"] == 401
        many = "".join(f"X-H{i}: v\r\n" for i in range(101))
        refused(f"GET /health HTTP/1.1\r\nHost: a\r\n{many}\r\n".encode(), 431)
        refused(f"GET /health HTTP/1.1\r\nHost: a\r\nX-Big: {'v' * 17000}\r\n\r\n".encode(), 431)
        assert requests.get(f"{base}/health", headers={f"X-H{i}": "v" for i in range(90)},
                            timeout=10).status_code == 200
        refused(b"GARBAGE\r\n\r\n", 400, "Invalid")
        refused(b"GET /health HTTP/9.9\r\nHost: a\r\n\r\n", 400)
        refused(b"G@T /health HTTP/1.1\r\nHost: a\r\n\r\n", 400)
        refused(b"GET /health HTTP/1.1\r\nHost: a\r\nno colon here\r\n\r\n", 400)

        # `//events/...` is not the webhook: a JSON 404, and nothing is enqueued
        body = json.dumps({"data": [1]}).encode()
        code, headers, answer = _raw(port, b"POST //events/tenant_1/e HTTP/1.1\r\nHost: a\r\nContent-Type: "
                                     b"application/json\r\nContent-Length: " + str(len(body)).encode() +
                                     b"\r\nConnection: close\r\n\r\n" + body)
        doc = json.loads(answer)
        assert code == 404 and doc["code"] == 404 and "'//'" in doc["message"], doc
        r = requests.post(f"{base}/events//tenant_1/e", data=body, timeout=10)
        assert r.status_code == 404 and r.json()["code"] == 404
        r = requests.post(f"{base}/events/tenant_1/e", data=body, timeout=10)  # the real one: no such event
        assert r.status_code == 404 and "is not deployed" in r.json()["message"]
    finally:
        _stop(proc)
