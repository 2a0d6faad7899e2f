"""Guest retries (`retries:`), dead letters and the tenant's replay of them."""
from __future__ import annotations

from .helpers import example

RETRY_YAML = """
id: flaky
queues: [{id: q}]
jobs:
  - event: {id: always_fails, schema: {id: s, schemaref: any.json}, supplierqueue: q, runtime: error, retries: 2}
  - event: {id: no_retry, schema: {id: s, schemaref: any.json}, supplierqueue: q, runtime: error}
runtimes:
  - {id: error, moduleref: error.wasm}
"""


def test_guest_retries_then_dead_letter_then_tenant_retry(platform):
    p = platform
    key = p.tenant("t")
    for f in ("jobicolets/error.wasm", "schemas/any.json"):
        p.upload(key, example(f))
    p.deploy(key, RETRY_YAML)
    p.start_worker()
    retried = p.post(key, "t", "always_fails", [{}]).json()["executions"][0]
    plain = p.post(key, "t", "no_retry", [{}]).json()["executions"][0]

    e = p.wait(key, plain)
    assert (e["status"], e["attempts"], e["dead_lettered"]) == ("failed", 1, False)
    e = p.wait(key, retried, timeout=90)
    assert (e["status"], e["code"], e["attempts"], e["dead_lettered"]) == ("failed", 3, 3, True)

    # not dead-lettered: nothing to retry
    r = p.call(key, "POST", f"/api/v1/executions/{plain}/retry")
    assert r.status_code == 409 and "not dead-lettered" in r.json()["message"]
    # the tenant replays the dead letter: same id, attempts carry on, dead-lettered again
    r = p.call(key, "POST", f"/api/v1/executions/{retried}/retry")
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "queued" and r.json()["dead_lettered"] is False
    e = p.wait(key, retried, timeout=60)
    assert (e["status"], e["attempts"], e["dead_lettered"]) == ("failed", 4, True)
    # the CLI form: a refusal is exit 1 with the server's message
    import os
    import subprocess
    import sys
    from pathlib import Path
    cli = Path(sys.executable).parent / "jobico"
    env = {**os.environ, "JOBICO_API_URL": p.url, "JOBICO_TOKEN": key, "JOBICO_HOME": str(p.tmp / "home")}
    run = subprocess.run([str(cli), "executions", "retry", plain], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "not dead-lettered" in run.stderr
    run = subprocess.run([str(cli), "executions", "retry", retried, "--json"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert p.wait(key, retried, timeout=60)["attempts"] == 5
    # another tenant cannot replay it
    other = p.tenant("u")
    assert p.call(other, "POST", f"/api/v1/executions/{retried}/retry").status_code == 404
