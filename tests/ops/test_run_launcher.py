"""`jobico run` as operators and tenants first meet it: busy ports stop it before it starts
anything, Flower's HTTP API answers with the credentials the banner prints, `/metrics` adds up
every gunicorn worker, `/docs` needs no outside host, `--mqtt` runs the MQTT tour without Docker,
and gunicorn's control socket is private to the run.

One real `jobico run` (embedded defaults, 2 gunicorn workers, a local amqtt broker) serves the
tests of this module; the busy-port tests start none.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import stat
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import requests

from jobico_ops.embedded import free_port
from tests.e2e.helpers import metric
from tests.waiting import wait_until

JOBICO = Path(sys.executable).parent / "jobico"
API_WORKERS = 2


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBICO_", "FLOWER_", "PROMETHEUS_"))}
    env.update(JOBICO_HOME=str(tmp / "home"), JOBICO_DATA_DIR=str(tmp / "data"), JOBICO_PYTHON_PREPARE="0",
               JOBICO_API_WORKERS=str(API_WORKERS), HOME=str(tmp / "user"), XDG_RUNTIME_DIR=str(tmp / "xdg"),
               TMPDIR=str(tmp / "tmp"))
    for d in ("user", "xdg", "tmp"):
        (tmp / d).mkdir(parents=True, exist_ok=True)
    return env


def _poll(fn, timeout: float, what: str):
    return wait_until(fn, timeout, what=what, interval=0.5,
                      ignore=(requests.RequestException, ValueError, subprocess.SubprocessError))


# -- a busy port: a clear message, exit 2, nothing started --------------------------------------

def _listener() -> tuple[socket.socket, int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s, s.getsockname()[1]


@pytest.mark.parametrize("which", ["api", "flower", "gateway"])
def test_a_busy_port_stops_the_run_before_it_starts_anything(tmp_path, which):
    busy, taken = _listener()
    try:
        port, flower = free_port(), free_port()
        env = _env(tmp_path)
        args = [str(JOBICO), "run", "--port", str(port), "--flower-port", str(flower)]
        if which == "api":
            args[3] = str(taken)
        elif which == "flower":
            args[5] = str(taken)
        else:
            env["JOBICO_GATEWAY_PORT"] = str(taken)
        r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    finally:
        busy.close()
    assert r.returncode == 2, (r.stdout, r.stderr)
    hint = {"api": "--port PORT", "flower": "--flower-port PORT", "gateway": "JOBICO_GATEWAY_PORT"}[which]
    assert f"port {taken} (" in r.stderr and "already in use" in r.stderr and hint in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "token" not in r.stderr
    assert not (tmp_path / "data").exists()  # nothing was started, not even Redis


def test_one_port_asked_for_twice_is_refused(tmp_path):
    port = free_port()
    r = subprocess.run([str(JOBICO), "run", "--port", str(port), "--flower-port", str(port)], env=_env(tmp_path),
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2 and f"port {port} is asked for twice" in r.stderr and "--flower-port" in r.stderr


def test_run_help_names_every_port_option():
    r = subprocess.run([str(JOBICO), "run", "--help"], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0
    for needle in ("--port", "--flower-port", "JOBICO_GATEWAY_PORT", "JOBICO_WORKER_METRICS_PORT",
                   "JOBICO_MQTT_METRICS_PORT", "--mqtt", "busy port"):
        assert needle in r.stdout, needle


# -- one real run --------------------------------------------------------------------------------

class Run:
    def __init__(self, tmp: Path):
        self.tmp, self.env = tmp, _env(tmp)
        self.port, self.flower = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.out, self.err = open(tmp / "out.log", "wb"), open(tmp / "err.log", "wb")
        self.proc = subprocess.Popen(
            [str(JOBICO), "run", "--port", str(self.port), "--flower-port", str(self.flower), "--mqtt",
             "--no-beat", "--concurrency", "1"],
            cwd=tmp, env=self.env, stdout=self.out, stderr=self.err, start_new_session=True)
        wait_until(lambda: b"Ctrl-C stops everything" in (tmp / "out.log").read_bytes() or self.proc.poll() is not None,
                   180, what="the banner", interval=0.5)
        assert self.proc.poll() is None, self.log()
        self.banner = (tmp / "out.log").read_text()

    def log(self) -> str:
        return (self.tmp / "err.log").read_text(errors="replace")[-4000:]

    def runtime_dir(self) -> Path:
        dirs = list((self.tmp / "tmp").glob("jobico-run-*"))
        assert len(dirs) == 1, dirs
        return dirs[0]

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=60)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        finally:
            self.out.close()
            self.err.close()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    r = Run(tmp_path_factory.mktemp("run"))
    try:
        yield r
    finally:
        if r.proc.poll() is None:
            r.stop()


def test_flower_api_answers_with_the_printed_credentials_only(run):
    m = re.search(r"curl -u '([^':]+):([^']+)' (http://127\.0\.0\.1:\d+/api/workers)", run.banner)
    assert m, run.banner
    user, password, url = m.groups()
    assert url == f"http://127.0.0.1:{run.flower}/api/workers" and user == "flower"
    assert f"password {password}" in run.banner
    workers = _poll(lambda: [w for w in requests.get(url + "?refresh=1", auth=(user, password), timeout=30).json()
                             if w.startswith("local@")], 60, "Flower listing the run's worker")
    assert workers
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, auth=(user, password + "x"), timeout=10).status_code == 401
    assert requests.get(f"http://127.0.0.1:{run.flower}/", timeout=10).status_code == 401
    # the password is the run's, kept private in its data dir
    secrets = run.tmp / "data" / "secrets.json"
    assert json.loads(secrets.read_text())["flower_password"] == password
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600


def test_metrics_add_up_every_gunicorn_worker(run):
    sent = 7
    for _ in range(sent):  # new connection each: the kernel spreads them over the workers
        r = requests.post(run.url + "/events/demo/hello", json={"data": [{"name": "x"}]},
                          headers={"Authorization": "Bearer not-a-key", "Connection": "close"}, timeout=30)
        assert r.status_code == 401, r.text
    # every worker wrote its samples to the run's private multiprocess directory
    pids = {m.group(1) for f in (run.runtime_dir() / "api-metrics").iterdir()
            if (m := re.match(r"\w+_(\d+)\.db$", f.name))}
    assert len(pids) >= API_WORKERS, pids
    for _ in range(8):  # any worker answers any scrape: the same totals every time
        r = requests.get(run.url + "/metrics", headers={"Connection": "close"}, timeout=30)
        assert r.status_code == 200
        assert metric(r.text, "jobico_events_rejected_total", tenant="demo", reason="unauthorized") == sent
        assert metric(r.text, "jobico_http_requests_total", route="/events/<tenant>/<event>", method="POST",
                      status="401") == sent
        assert metric(r.text, "jobico_http_request_duration_seconds_count", route="/events/<tenant>/<event>") == sent
        assert metric(r.text, "jobico_http_requests_in_flight") == 1  # this scrape, in whichever worker
    print(r.text)  # the report's sample scrape (pytest -s)


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.refs += [v for k, v in attrs if k in ("src", "href") and v]


def test_docs_page_and_every_asset_come_from_the_app(run):
    page = requests.get(run.url + "/docs", timeout=30)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    parser = _Refs()
    parser.feed(page.text)
    spec = re.search(r'url: "([^"]+)"', page.text).group(1)
    refs = parser.refs + [spec]
    assert {"/docs/assets/swagger-ui.css", "/docs/assets/swagger-ui-bundle.js",
            "/docs/assets/swagger-ui-standalone-preset.js"} <= set(refs), refs
    # no outside host anywhere in the page: not in a reference, not in the script
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", page.text, re.I), page.text
    assert '"validatorUrl": null' in page.text  # Swagger UI's one outside call (the validator badge) is off
    for ref in refs:
        url = urljoin(run.url + "/docs", ref)
        assert urlsplit(url).netloc == f"127.0.0.1:{run.port}", ref
        r = requests.get(url, timeout=30)
        assert r.status_code == 200 and len(r.content) > 1000, (ref, r.status_code)
    assert requests.get(urljoin(run.url, spec), timeout=30).json()["info"]["title"] == "Jobico"
    assert "SwaggerUIBundle" in requests.get(run.url + "/docs/assets/swagger-ui-bundle.js", timeout=30).text
    assert requests.get(run.url + "/docs/assets/../../secrets.json", timeout=30).status_code == 404


def test_mqtt_tour_without_docker(run):
    """The README's MQTT tour as the banner prints it: deploy, publish to the local broker, an execution."""
    deploy = re.search(r"(\S+ deploy \S+mqtt\.yaml)", run.banner).group(1)
    deployed = run.cli(*shlex.split(deploy))
    assert deployed.returncode == 0, deployed.stderr
    publish = re.search(r"(\S+ mqtt-publish --url mqtt://\S+ \S+ '.*')", run.banner).group(1)
    assert "jobico/demo/doorbell/front" in publish

    def executed():  # the bridge subscribes within a second of the deploy: publish until it is taken
        pub = run.cli(*shlex.split(publish))
        assert pub.returncode == 0, pub.stderr
        listed = run.cli(str(JOBICO), "executions", "--submitter", "mqtt:doorbell/front", "--json")
        assert listed.returncode == 0, listed.stderr
        return [e for e in json.loads(listed.stdout)["items"] if e["status"] == "succeeded"]
    rang = _poll(executed, 90, "an execution of the published message")
    assert rang[0]["result"] == "Hello, visitor!" and rang[0]["trigger"] == "mqtt", rang


def test_gunicorn_control_socket_is_private_to_the_run_and_everything_stops(run):
    runtime = run.runtime_dir()
    assert stat.S_IMODE(runtime.stat().st_mode) == 0o700
    assert stat.S_ISSOCK((runtime / "gunicorn.ctl").stat().st_mode)
    # not gunicorn's shared default, which a second run on the machine would take over and delete
    assert not (run.tmp / "xdg" / "gunicorn.ctl").exists()
    assert not (run.tmp / "user" / ".gunicorn" / "gunicorn.ctl").exists()
    broker_port = int(re.search(r"MQTT broker +mqtt://jobico@127\.0\.0\.1:(\d+)", run.banner).group(1))
    assert run.stop() == 0, run.log()
    assert not runtime.exists()
    for port in (run.port, run.flower, broker_port):
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
