"""Python jobicolets end to end on real services: the CLI and the API deploy them, the webhook
queues events, Celery workers run them in the sealed CPython, PostgreSQL records the outcome."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from jobico_core.db import upgrade_schema
from jobico_core.settings import Settings
from tests.e2e.helpers import Platform, platform_env, serve_app
from tests.guest_examples import documented_cases

# the first test's setup may compile the interpreter (minutes, once per machine: conftest.py)
pytestmark = pytest.mark.timeout(1200)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "python"
JOBICO = Path(sys.executable).parent / "jobico"

OUTCOMES_YAML = """
id: pyoutcomes
queues: [{id: q}]
jobs:
  - event: {id: boom, schema: {id: s, schemaref: echo.json}, supplierqueue: q, runtime: boom}
  - event: {id: spin, schema: {id: s, schemaref: echo.json}, supplierqueue: q, runtime: spin}
  - event: {id: sleepy, schema: {id: s, schemaref: echo.json}, supplierqueue: q, runtime: sleepy}
  - event: {id: hog, schema: {id: s, schemaref: echo.json}, supplierqueue: q, runtime: hog}
  - event: {id: count, schema: {id: s, schemaref: echo.json}, supplierqueue: q, runtime: count}
    result:
      ok: {id: counted, schema: {id: s, schemaref: echo.json}, supplierqueue: q, runtime: echo}
  - event: {id: zcount, schema: {id: s, schemaref: echo.json}, supplierqueue: q, runtime: zcount}
runtimes:
  - {id: boom, moduleref: boom.py, type: 1}
  - {id: spin, moduleref: spin.py, type: 1, limits: {timeout_ms: 300, fuel: 10000000000}}  # the wall clock first
  - {id: sleepy, moduleref: sleepy.py, type: 1, limits: {timeout_ms: 500}}
  - {id: hog, moduleref: hog.py, type: 1, limits: {memory_mb: 64}}
  - {id: count, moduleref: count.py, language: python}
  - {id: echo, moduleref: echo.py, type: 1}
  - {id: zcount, moduleref: zcount.zip, type: 1}
"""

SOURCES = {
    "boom.py": "import jobico\n\ndef event(data):\n    jobico.error('about to fail')\n    return 0, data['nope']\n",
    "spin.py": "def event(data):\n    while True:\n        pass\n",
    "sleepy.py": "import time\n\ndef event(data):\n    time.sleep(3600)\n    return 0, 'woke'\n",
    "hog.py": "def event(data):\n    return 0, len(bytearray(256 * 1024 * 1024))\n",
    "count.py": "calls = 0\n\ndef event(data):\n    global calls\n    calls += 1\n    return 0, {'calls': calls}\n",
}
# a package zip keeping its count in a module of a subpackage (and a helper module)
ZCOUNT = {
    "main.py": "import helpers\nfrom state.inner import counter\n\n"
               "def event(data):\n    return 0, {'calls': counter.bump(), 'helper': helpers.NAME}\n",
    "helpers.py": "NAME = __name__\n",
    "state/__init__.py": "",
    "state/inner/__init__.py": "",
    "state/inner/counter.py": "calls = 0\n\ndef bump():\n    global calls\n    calls += 1\n    return calls\n",
}


def zipped(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return buf.getvalue()


@pytest.fixture
def py_platform(python_cache, pg_url, redis_url, s3_server, s3_bucket, tmp_path):
    """The e2e platform (API in a thread, Celery worker processes) on the shared interpreter cache."""
    env = platform_env(pg_url, redis_url, s3_server, s3_bucket, tmp_path,
                       JOBICO_PYTHON_CACHE_DIR=str(python_cache), JOBICO_PYTHON_PREPARE="0")
    settings = Settings.from_env(env)
    upgrade_schema(pg_url)
    from jobico_api import create_app
    app = create_app(settings)
    server, url = serve_app(app)
    p = Platform(env, settings, app.extensions["jobico"], tmp_path, url)
    try:
        yield p
    finally:
        for w in p.workers:
            w.stop()
        server.shutdown()


def _put(p: Platform, key: str, name: str, data: bytes):
    return p.call(key, "PUT", f"/api/v1/files/{name}", data=data)


def test_the_examples_deploy_and_run_from_the_webhook(py_platform):
    p = py_platform
    key = p.tenant("pyt")
    jobicolets = [f for f in sorted(EXAMPLES.glob("*.py")) if f.name != "build_zip.py"]
    for f in jobicolets + sorted(EXAMPLES.glob("*.zip")) + sorted(EXAMPLES.glob("*.json")):
        p.upload(key, f)
    files = {f["name"]: f["kind"] for f in p.call(key, "GET", "/api/v1/files").json()["items"]}
    assert files["echo.py"] == "python" and files["echo.json"] == "schema" and files["pricing.zip"] == "python"
    assert p.call(key, "GET", "/api/v1/files/echo.py/content").headers["Content-Type"].startswith("text/x-python")
    r = p.call(key, "GET", "/api/v1/files/pricing.zip/content")
    assert r.headers["Content-Type"] == "application/zip" and r.content == (EXAMPLES / "pricing.zip").read_bytes()
    p.deploy(key, (EXAMPLES / "package.yaml").read_text())
    p.start_worker()
    echo = p.post(key, "pyt", "py-echo", [{"b": [1, 2], "a": "é"}]).json()["executions"][0]
    good = p.post(key, "pyt", "py-orders", [{"id": "A-1", "items": [{"sku": "pen", "qty": 2, "price": 0.5}]}])
    empty = p.post(key, "pyt", "py-orders", [{"id": "B-2", "items": []}]).json()["executions"][0]
    stats = p.post(key, "pyt", "py-stats", [{"values": [10, 11, 12, 10, 11, 12, 10, 100]}]).json()["executions"][0]
    # the package zip: main.py imports money.py and the rules package (rules/__init__.py, coupons, volume)
    priced, coupon, negative = p.post(key, "pyt", "py-pricing", [
        {"items": [{"sku": "pen", "qty": 12, "unit_cents": 150}], "coupon": "SPRING10"},
        {"items": [{"sku": "ink", "qty": 1, "unit_cents": 99}], "coupon": "NOPE"},
        {"items": [{"sku": "pen", "qty": 1, "unit_cents": -5}]}]).json()["executions"]
    cases = documented_cases()   # docs/jobicolets.md's worked example, in Python
    greets = p.post(key, "pyt", "py-greet", [json.loads(c.event) for c in cases]).json()["executions"]

    e = p.wait(key, echo)
    assert e["status"] == "succeeded" and e["code"] == 0 and e["result"] == '{"a":"é","b":[1,2]}'
    assert e["logs"] == [{"level": 1, "message": "echo received dict"}]
    e = p.wait(key, good.json()["executions"][0])
    assert e["status"] == "succeeded"
    assert json.loads(e["result"]) == {"id": "A-1", "currency": "EUR", "count": 2, "total": 1.0,
                                       "lines": [{"sku": "pen", "total": 1.0}]}
    e = p.wait(key, empty)
    assert e["status"] == "failed" and e["code"] == 1 and "no items" in e["result"]
    e = p.wait(key, stats)
    assert e["status"] == "succeeded" and json.loads(e["result"])["outliers"] == [100.0]
    assert e["logs"][0]["level"] == 2
    e = p.wait(key, priced)
    assert e["status"] == "succeeded" and json.loads(e["result"])["total"] == "15.39", e
    assert e["logs"] == [{"level": 1, "message": "priced 1 lines: 15.39"}]
    e = p.wait(key, coupon)
    assert (e["status"], e["code"], e["result"]) == ("failed", 2, '{"error":"unknown coupon \'NOPE\'"}'), e
    e = p.wait(key, negative)   # raised in a helper module: its file and line, in the message and the traceback
    assert e["status"] == "trapped" and e["message"].startswith(
        "uncaught Python exception: pricing.zip/money.py, line 7: ValueError: an amount must be"), e
    assert 'File "pricing.zip/main.py", line 21, in event' in e["stdout"], e["stdout"]
    assert 'File "pricing.zip/money.py", line 7, in cents' in e["stdout"], e["stdout"]
    for case, eid in zip(cases, greets):
        e = p.wait(key, eid)
        assert (e["status"], e["code"], e["result"]) == (case.status, case.code, case.result), e
        assert [(r["level"], r["message"]) for r in e["logs"]] == list(case.logs), e


def test_exception_timeout_memory_outcomes_and_no_state_between_events(py_platform):
    p = py_platform
    key = p.tenant("pyo")
    for name, source in SOURCES.items():
        r = _put(p, key, name, source.encode())
        assert r.status_code in (200, 201), r.text
    assert _put(p, key, "zcount.zip", zipped(ZCOUNT)).status_code in (200, 201)
    p.upload(key, EXAMPLES / "echo.py")
    p.upload(key, EXAMPLES / "echo.json")
    p.deploy(key, OUTCOMES_YAML)
    p.start_worker()
    ids = {ev: p.post(key, "pyo", ev, [{}]).json()["executions"][0] for ev in ("boom", "spin", "sleepy", "hog")}
    counts = p.post(key, "pyo", "count", [{}, {}, {}]).json()["executions"]
    zcounts = p.post(key, "pyo", "zcount", [{}, {}]).json()["executions"]

    e = p.wait(key, ids["boom"])
    assert e["status"] == "trapped"
    assert e["message"] == "uncaught Python exception: boom.py, line 5: KeyError: 'nope'"
    assert 'File "boom.py", line 5, in event' in e["stdout"] and "KeyError: 'nope'" in e["stdout"]
    assert e["logs"] == [{"level": 3, "message": "about to fail"}]
    for ev in ("spin", "sleepy"):
        e = p.wait(key, ids[ev])
        assert (e["status"], e["limit"]) == ("timed_out", "wall"), e
        assert e["duration_ms"] < 5000
    e = p.wait(key, ids["hog"])
    assert (e["status"], e["limit"]) == ("limit_exceeded", "memory"), e
    assert "64 MiB" in e["message"]
    for eid in counts:  # each event has a fresh interpreter: no global survives
        e = p.wait(key, eid)
        assert e["status"] == "succeeded" and json.loads(e["result"]) == {"calls": 1}, e
        child = p.wait(key, e["chain"][0])  # the ok chain runs a Python jobicolet too
        assert child["status"] == "succeeded" and json.loads(child["result"])["result"] == '{"calls":1}'
    for eid in zcounts:  # nor does a package's module (the same worker runs both, one after the other)
        e = p.wait(key, eid)
        assert e["status"] == "succeeded" and json.loads(e["result"]) == {"calls": 1, "helper": "helpers"}, e


def test_bad_sources_are_refused_at_upload_and_deploy_with_the_line(py_platform):
    p = py_platform
    key = p.tenant("pyb")
    r = _put(p, key, "bad.py", b"def event(data):\n    return 0, (\n")
    assert r.status_code == 422, r.text
    assert "bad.py, line 2: SyntaxError: '(' was never closed" in r.json()["message"]
    r = _put(p, key, "latin1.py", b"x = '\xe9'\n")
    assert r.status_code == 422 and "not UTF-8 (line 1" in r.json()["message"], r.text
    # 3.15 syntax is fine (the guest's CPython judges, not the host's)
    r = _put(p, key, "new.py", b"type Pair = tuple[int, int]\ndef event[T](data: T):\n    return 0, data\n")
    assert r.status_code in (200, 201), r.text
    assert _put(p, key, "nofunc.py", b"def handler(data):\n    return 0, ''\n").status_code in (200, 201)
    assert _put(p, key, "crash.py", b"import jobico\nraise ValueError('at import')\n").status_code in (200, 201)
    p.upload(key, EXAMPLES / "echo.json")
    base = ("id: pb\nqueues: [{id: q}]\njobs:\n  - event: {id: e1, schema: {id: s, schemaref: echo.json}, "
            "supplierqueue: q, runtime: r}\nruntimes:\n  - {id: r, moduleref: %s}\n")
    r = p.call(key, "POST", "/api/v1/packages", data=(base % "nofunc.py, type: 1").encode(),
               headers={"Content-Type": "application/yaml"})
    assert r.status_code == 422 and "defines no function event(data)" in r.text, r.text
    r = p.call(key, "POST", "/api/v1/packages", data=(base % "crash.py, type: 1").encode(),
               headers={"Content-Type": "application/yaml"})
    assert r.status_code == 422 and "crash.py, line 2: ValueError: at import" in r.text, r.text
    r = p.call(key, "POST", "/api/v1/packages", data=(base % "new.py").encode(),  # a .py under a WASM runtime
               headers={"Content-Type": "application/yaml"})
    assert r.status_code == 422 and "type: 1" in r.text, r.text
    r = p.call(key, "POST", "/api/v1/packages", data=(base % "nofunc.py, type: 1, mainfuncname: handler").encode(),
               headers={"Content-Type": "application/yaml"})
    assert r.status_code == 201, r.text
    # a package zip: the guest compiles each file at upload (the file inside the zip and its line) ...
    good = {"main.py": "from pkg import util\n\ndef event(data):\n    return 0, util.f()\n",
            "pkg/__init__.py": "", "pkg/util.py": "def f():\n    return 'ok'\n"}
    r = _put(p, key, "bad.zip", zipped({**good, "pkg/util.py": "def f():\n    return [1,\n"}))
    assert r.status_code == 422, r.text
    assert r.json()["message"] == "not a valid Python jobicolet: bad.zip/pkg/util.py, line 2: SyntaxError: " \
                                  "'[' was never closed", r.text
    r = _put(p, key, "shadow.zip", zipped({**good, "random.py": "x = 1\n"}))
    assert r.status_code == 422 and "shadow.zip/random.py: JobicoletError: the module random has the name of a " \
                                    "standard-library module: rename it" in r.json()["message"], r.text
    # ... and runs main.py's top level, with its imports, at deploy
    r = _put(p, key, "late.zip", zipped({**good, "pkg/util.py": "import jobico\nraise KeyError('at import')\n"}))
    assert r.status_code in (200, 201), r.text
    zbase = base.replace("id: pb", "id: pz").replace("id: e1", "id: e2")
    r = p.call(key, "POST", "/api/v1/packages", data=(zbase % "late.zip, type: 1").encode(),
               headers={"Content-Type": "application/yaml"})
    assert r.status_code == 422 and "late.zip/pkg/util.py, line 2: KeyError: 'at import'" in r.text, r.text
    r = p.call(key, "POST", "/api/v1/packages", data=(zbase % "late.zip").encode(),  # under a WASM runtime
               headers={"Content-Type": "application/yaml"})
    assert r.status_code == 422 and "type: 1" in r.text, r.text


def test_a_newcomer_scaffolds_deploys_and_runs_one_with_the_cli(py_platform, tmp_path):
    p = py_platform
    key = p.tenant("newbie")
    env = {**os.environ, "JOBICO_API_URL": p.url, "JOBICO_TOKEN": key, "JOBICO_HOME": str(tmp_path / "home")}

    def jobico(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(JOBICO), *args], capture_output=True, text=True, env=env, cwd=tmp_path,
                              timeout=120)

    r = jobico("new", "python", "greeter")
    assert r.returncode == 0, r.stderr
    r = jobico("deploy", "greeter/package.yaml", "--python", "greeter/greeter.py", "--schema", "greeter/greeter.json")
    assert r.returncode == 0, r.stdout + r.stderr
    p.start_worker()
    r = jobico("send", "greeter", "--tenant", "newbie", "--data", '{"name": "Ada"}', "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    [eid] = json.loads(r.stdout)["executions"]
    e = p.wait(key, eid)
    assert e["status"] == "succeeded" and json.loads(e["result"]) == {"greeting": "hello, Ada"}, e
    r = jobico("executions", "show", eid)
    assert r.returncode == 0 and "succeeded" in r.stdout, r.stdout + r.stderr
    # a syntax error is refused by the CLI with the line and a non-zero exit
    (tmp_path / "greeter" / "greeter.py").write_text("def event(data):\n    return 0,, 1\n")
    r = jobico("upload", "greeter/greeter.py")
    assert r.returncode == 1 and "greeter.py, line 2" in r.stderr, r.stdout + r.stderr
    # a package: the CLI packs the directory into a zip (main.py imports a helper module)
    r = jobico("new", "python", "zgreeter", "--package")
    assert r.returncode == 0, r.stderr
    r = jobico("deploy", "zgreeter/package.yaml", "--python", "zgreeter/zgreeter", "--schema",
               "zgreeter/zgreeter.json")
    assert r.returncode == 0 and "Uploaded zgreeter.zip (python" in r.stderr, r.stdout + r.stderr
    r = jobico("send", "zgreeter", "--tenant", "newbie", "--data", '{"name": "Bo"}', "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    e = p.wait(key, json.loads(r.stdout)["executions"][0])
    assert e["status"] == "succeeded" and json.loads(e["result"]) == {"greeting": "hello, Bo"}, e
    (tmp_path / "zgreeter" / "zgreeter" / "greetings.py").write_text("def greet(name):\n    return f'{name\n")
    r = jobico("upload", "zgreeter/zgreeter")
    assert r.returncode == 1 and "zgreeter.zip/greetings.py, line 2" in r.stderr, r.stdout + r.stderr


def test_a_refused_deploy_python_leaves_the_previous_file_in_the_repository(py_platform, tmp_path):
    p = py_platform
    key = p.tenant("keeper")
    env = {**os.environ, "JOBICO_API_URL": p.url, "JOBICO_TOKEN": key, "JOBICO_HOME": str(tmp_path / "home")}

    def jobico(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(JOBICO), *args], capture_output=True, text=True, env=env, cwd=tmp_path,
                              timeout=120)

    assert jobico("new", "python", "greeter").returncode == 0
    r = jobico("deploy", "greeter/package.yaml", "--python", "greeter/greeter.py", "--schema", "greeter/greeter.json")
    assert r.returncode == 0, r.stdout + r.stderr
    v1 = (tmp_path / "greeter" / "greeter.py").read_bytes()
    # compiles (the upload accepts it) but its top level fails: the deploy check refuses it
    (tmp_path / "greeter" / "greeter.py").write_text("import jobico\nraise RuntimeError('not ready')\n"
                                                   "def event(data):\n    return 0, 'v2'\n")
    r = jobico("redeploy", "greeter", "--config", "greeter/package.yaml", "--python", "greeter/greeter.py")
    assert r.returncode == 1 and "not ready" in r.stderr, r.stdout + r.stderr
    assert "Uploaded greeter.py" in r.stderr and "Restored greeter.py to its previous content" in r.stderr
    got = p.call(key, "GET", "/api/v1/files/greeter.py/content")
    assert got.status_code == 200 and got.content == v1
    assert p.call(key, "GET", "/api/v1/packages/greeter").json()["active_version"] == 1


def test_an_event_waits_on_its_queue_while_the_worker_has_no_interpreter(py_platform, tmp_path, monkeypatch):
    """Before a host has compiled its interpreter, a Python event is put back on its queue with a
    note (never failed, never compiled on its path), and runs once the interpreter is there."""
    from jobico_runtime import Runtime, interpreter
    from jobico_worker.executor import run_execution

    p = py_platform
    key = p.tenant("pyw")
    p.upload(key, EXAMPLES / "echo.py")
    p.upload(key, EXAMPLES / "echo.json")
    p.deploy(key, "id: w\nqueues: [{id: q}]\njobs:\n  - event: {id: e, schema: {id: s, schemaref: echo.json}, "
                  "supplierqueue: q, runtime: r}\nruntimes:\n  - {id: r, moduleref: echo.py, type: 1}\n")
    [eid] = p.post(key, "pyw", "e", [{"a": 1}]).json()["executions"]  # no worker: it stays queued
    asked = []
    monkeypatch.setattr(interpreter, "start_preparing", lambda d: asked.append(d))  # no real compile here
    cold = Runtime(python_cache_dir=tmp_path / "no-interpreter-yet")
    res = run_execution(p.ctx, cold, eid, '{"a":1}', worker="cold")
    assert res["status"] == "queued" and asked == [tmp_path / "no-interpreter-yet"]
    e = p.call(key, "GET", f"/api/v1/executions/{eid}").json()
    assert e["status"] == "queued" and "waiting for this worker's runtime" in e["message"], e
    warm = Runtime(python_cache_dir=p.env["JOBICO_PYTHON_CACHE_DIR"])
    res = run_execution(p.ctx, warm, eid, '{"a":1}', worker="warm")
    assert res["status"] == "succeeded" and res["result"] == '{"a":1}', res


def test_a_secret_reaches_os_environ_and_is_redacted_from_result_logs_stdout_and_traceback(py_platform):
    p = py_platform
    key = p.tenant("pyenv")
    secret = "py-s3cret-value-4b1d9e"
    source = ("import os, jobico\n\ndef event(data):\n    token = os.environ['API_TOKEN']\n"
              "    jobico.info('token is', token)\n    print('printed', token)\n"
              "    if data.get('fail'):\n        raise ValueError('bad token ' + token)\n"
              "    return 0, {'token': token, 'mode': os.environ.get('MODE')}\n")
    assert _put(p, key, "leak.py", source.encode()).status_code in (200, 201)
    p.upload(key, EXAMPLES / "echo.json")
    r = p.call(key, "PUT", "/api/v1/environment/api-token", json={"value": secret, "secret": True})
    assert r.status_code == 200, r.text
    p.deploy(key, """
id: pyenv
environment: {API_TOKEN: {secret: api-token}, MODE: test}
queues: [{id: q}]
jobs:
  - event: {id: leak, schema: {id: s, schemaref: echo.json}, supplierqueue: q, runtime: leak}
runtimes:
  - {id: leak, moduleref: leak.py, type: 1}
""")
    p.start_worker()
    ok, bad = p.post(key, "pyenv", "leak", [{}, {"fail": True}]).json()["executions"]
    e = p.wait(key, ok)
    assert e["status"] == "succeeded" and json.loads(e["result"]) == {"token": "***", "mode": "test"}, e
    assert e["logs"] == [{"level": 1, "message": "token is ***"}] and e["stdout"] == "printed ***\n", e
    e = p.wait(key, bad)
    assert e["status"] == "trapped" and "bad token ***" in e["message"] and "bad token ***" in e["stdout"], e
    for w in p.workers:
        w.stop()
    assert secret not in json.dumps(p.call(key, "GET", "/api/v1/executions").json())
    assert all(secret not in w.log_path.read_text(errors="replace") for w in p.workers)
