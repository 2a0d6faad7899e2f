"""Rollback semantics with a real worker, and several live streams on a real gunicorn."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import requests

from tests.waiting import wait_until

from .streamkit import PACKAGE, SSEReader, post_ids, setup_tenant

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_rollback_new_events_go_to_the_active_version_in_flight_keep_theirs(platform):
    p = platform
    key = setup_tenant(p, "tenant_v")  # v1: `ok` runs echo.wasm
    v2 = PACKAGE.format(pkg="tools", tenant="tenant_v", prefix="").replace(
        "{id: echo, moduleref: echo.wasm}", "{id: echo, moduleref: error.wasm}")
    assert p.deploy(key, v2, redeploy_id="tools")["active_version"] == 2  # v2: `ok` runs error.wasm
    queued_on_v2 = post_ids(p, key, "tenant_v", "ok", [{"n": 1}])  # no worker yet: stays queued on v2
    r = p.call(key, "POST", "/api/v1/packages/tools/rollback", json={"version": 1})
    assert r.status_code == 200, r.text
    assert r.json()["active_version"] == 1
    after_rollback = post_ids(p, key, "tenant_v", "ok", [{"n": 2}])
    p.start_worker()
    old = p.wait(key, queued_on_v2[0])
    new = p.wait(key, after_rollback[0])
    assert (old["version"], old["status"], old["code"]) == (2, "failed", 3)  # finished on the version it started on
    assert (new["version"], new["status"], new["result"]) == (1, "succeeded", '{"n":2}')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_concurrent_streams_on_gunicorn_do_not_starve_the_api(platform):
    p = platform
    key = setup_tenant(p, "tenant_g")
    port = _free_port()
    env = {**os.environ, **p.env, "JOBICO_API_PORT": str(port), "JOBICO_API_WORKERS": "1",
           "JOBICO_API_THREADS": "12"}
    log = open(p.tmp / "gunicorn.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "jobico_api/gunicorn_conf.py",
                             "--graceful-timeout", "2", "jobico_api.wsgi:app"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    readers = []
    try:
        wait_until(lambda: proc.poll() is not None or requests.get(url + "/health", timeout=1).status_code == 200,
                   30, what="gunicorn answering /health", interval=0.2, ignore=(requests.RequestException,))
        assert proc.poll() is None, (p.tmp / "gunicorn.log").read_text()
        readers = [SSEReader(url, key, {"package": "tools"}) for _ in range(6)]
        # with 6 streams open, ordinary requests still answer promptly
        for path in ("/health", "/api/v1/packages", "/api/v1/executions", "/api/v1/files"):
            t0 = time.monotonic()
            r = requests.get(url + path, headers={"Authorization": f"Bearer {key}"}, timeout=5)
            assert r.status_code == 200 and time.monotonic() - t0 < 1.0, (path, r.status_code)
        p.start_worker()
        ids = post_ids(p, key, "tenant_g", "ok", [{"i": i} for i in range(3)])
        for reader in readers:
            reader.wait_for(ids, timeout=30)
            assert sorted(reader.ids()) == sorted(ids)
    finally:
        for reader in readers:
            reader.close()
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def test_tenant_webhook_cli(platform):
    import json

    from typer.testing import CliRunner

    from jobico_cli.main import app

    from .helpers import ADMIN

    def cli(*args, code=0):
        env = {"JOBICO_API_URL": platform.url, "JOBICO_TOKEN": ADMIN, "JOBICO_HOME": str(platform.tmp / "h"),
               "COLUMNS": "200"}
        result = CliRunner().invoke(app, list(args), env=env)
        assert result.exit_code == code, result.output
        return result

    platform.tenant("hooks")
    doc = json.loads(cli("tenant", "webhook", "hooks", "--auth", "hmac", "--json").stdout)
    assert doc["webhook_auth"] == "hmac" and doc["signing_secret"]
    rotated = json.loads(cli("tenant", "webhook", "hooks", "--auth", "hmac", "--rotate-secret", "--json").stdout)
    assert rotated["signing_secret"] != doc["signing_secret"]
    assert "none" in cli("tenant", "webhook", "hooks", "--auth", "none").output
    assert platform.admin("GET", "/api/v1/tenants/hooks").json()["webhook_auth"] == "none"
    cli("tenant", "webhook", "hooks", "--auth", "key", "--rotate-secret", code=2)
    cli("tenant", "webhook", "nobody", "--auth", "key", code=1)
    cli("tenant", "webhook", "hooks", "--auth", "bogus", code=2)
