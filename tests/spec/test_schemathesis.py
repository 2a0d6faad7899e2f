"""The OpenAPI document is the truth: schemathesis checks it against a running API (``make test-spec``).

The API runs on real PostgreSQL, Redis and S3 (the integration fixtures), served over HTTP; schemathesis's
CLI runs every phase (examples, coverage, fuzzing, stateful) with ``--checks all``, once with the admin
token and once with a tenant key that has a deployed package. Any failure fails the test, with
schemathesis's report in the output. Bounded: ``SPEC_MAX_EXAMPLES`` test cases per operation (default 50)
and a fixed seed (``SPEC_SEED``), so one run of both credentials takes a few minutes on 2 cores.
"""
from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.e2e.helpers import served_api
from tests.integration.helpers import ADMIN_TOKEN, PERSON_SCHEMA, package_yaml, wasm

HERE = Path(__file__).resolve().parent
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
MAX_EXAMPLES = os.environ.get("SPEC_MAX_EXAMPLES", "50")
SEED = os.environ.get("SPEC_SEED", "18")
PHASES = os.environ.get("SPEC_PHASES", "examples,coverage,fuzzing,stateful")
RUN_TIMEOUT_S = 600


@pytest.fixture
def live_api(api_settings, monkeypatch):
    """The API over real HTTP on 127.0.0.1:<free port> (werkzeug, threaded); yields its base URL.
    A live stream ends after a second (schemathesis reads every answer to its end)."""
    from jobico_api.blueprints import stream

    monkeypatch.setattr(stream, "MAX_STREAM_SECONDS", 1.0)
    access_log = logging.getLogger("werkzeug")  # thousands of requests: no access log
    level = access_log.level
    access_log.setLevel(logging.WARNING)
    try:
        with served_api(api_settings) as (_ctx, url):
            yield url
    finally:
        access_log.setLevel(level)


def tenant_key(base: str) -> str:
    """A tenant with a module, a schema and a package deployed, so reads find something; its key."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    r = requests.post(f"{base}/api/v1/tenants", json={"id": "spec"}, headers=admin, timeout=30)
    assert r.status_code == 201, r.text
    key = r.json()["key"]
    auth = {"Authorization": f"Bearer {key}"}
    for name, data in (("echo.wasm", wasm("echo")), ("person.json", json.dumps(PERSON_SCHEMA).encode())):
        r = requests.put(f"{base}/api/v1/files/{name}", data=data, timeout=30,
                         headers={**auth, "Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text
    r = requests.post(f"{base}/api/v1/packages", data=package_yaml(), timeout=30,
                      headers={**auth, "Content-Type": "application/yaml"})
    assert r.status_code == 201, r.text
    return key


def an_execution(base: str, key: str) -> str:
    """An execution of the tenant (queued: no worker runs here); its id."""
    r = requests.post(f"{base}/events/spec/person_added", json={"data": [{"name": "Ada"}]}, timeout=30,
                      headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    return r.json()["executions"][0]


def config_file(report_dir: Path, execution_id: str | None) -> Path:
    """tests/spec/schemathesis.toml, plus (tenant run) a known execution id for the operations on one
    (random ids are all 404s): they then answer with records, checked against their schemas."""
    text = (HERE / "schemathesis.toml").read_text()
    if execution_id:
        text += ('\n[[operations]]\ninclude-path-regex = "^/api/v1/executions/\\\\{execution_id\\\\}"\n'
                 f'parameters = {{ "path.execution_id" = "{execution_id}" }}\n')
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / "schemathesis.toml"
    path.write_text(text)
    return path


def run_schemathesis(base: str, token: str, report_dir: Path, config: Path) -> subprocess.CompletedProcess:
    cmd = [str(SCHEMATHESIS), "--no-color", "--config-file", str(config), "run",
           f"{base}/api/v1/openapi.json", "--checks", "all", "--phases", PHASES,
           "--max-examples", MAX_EXAMPLES, "--seed", SEED, "--workers", "1", "--request-timeout", "20",
           "--suppress-health-check", "too_slow,filter_too_much",
           "-H", f"Authorization: Bearer {token}",
           "--report", "junit", "--report-dir", str(report_dir)]
    env = {k: v for k, v in os.environ.items() if k != "SCHEMATHESIS_HOOKS"}  # no hooks of the caller's
    # in the report directory: schemathesis keeps its caches (.schemathesis, .hypothesis) in the cwd
    return subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=env, cwd=report_dir)


# what the test prints of schemathesis's report when it passes: its warnings and totals
SUMMARY = re.compile(r"^=+ (?:WARNINGS|SUMMARY) =+$.*", re.M | re.S)


@pytest.mark.timeout(RUN_TIMEOUT_S + 120)
@pytest.mark.parametrize("who", ["admin", "tenant"])
def test_the_spec_says_what_the_server_does(live_api, who, tmp_path):
    token = ADMIN_TOKEN if who == "admin" else tenant_key(live_api)
    execution_id = an_execution(live_api, token) if who == "tenant" else None
    report = tmp_path / "report"
    res = run_schemathesis(live_api, token, report, config_file(report, execution_id))
    out = res.stdout + res.stderr
    print(f"--- schemathesis as {who} ---")
    summary = SUMMARY.search(out)
    print(summary.group(0).strip() if summary else out[-3000:])
    assert res.returncode == 0, f"schemathesis ({who}) found disagreements:\n{out[-20000:]}"
