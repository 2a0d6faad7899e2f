"""Shared harness of the service benchmarks (ingest, execute, latency, scaling).

Starts REAL servers the way the test suite does (``jobico_ops.embedded.RedisServer``,
``tests.services.PostgresServer`` / ``S3Server``), sets a tenant up through the
domain services, runs the API under gunicorn with ``jobico_api/gunicorn_conf.py``
(the worker class and count we ship) and Celery workers with the flags
``jobico run`` uses. Load comes from ``wrk`` (Debian package) when installed,
else from a Python client (processes x threads, http.client keep-alive).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PY = sys.executable
EXAMPLES = ROOT / "examples"
ADMIN = "admin-token-for-bench-0123456789"

# one event id per package; any.json accepts every payload; echo.wasm returns it unchanged
ECHO_YAML = """
id: {pkg}
queues: [{{id: q}}]
jobs:
  - event: {{id: {event}, schema: {{id: s, schemaref: any.json}}, supplierqueue: q, runtime: echo}}
runtimes:
  # echo returns its input: the result limit must hold the largest payload benched (100 KB)
  - {{id: echo, moduleref: {module}, limits: {{result_kb: 256}}}}
"""


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def table(rows: list[tuple], header: tuple) -> None:
    """Print a left-aligned first column and right-aligned others (bench_runtime style)."""
    rows = [tuple(str(c) for c in r) for r in rows]
    header = tuple(str(c) for c in header)
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r))  # noqa: E731
    print(fmt(header))
    print("-" * (sum(widths) + 2 * (len(widths) - 1)))
    for r in rows:
        print(fmt(r))
    sys.stdout.flush()


def log(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# services
# ---------------------------------------------------------------------------
@dataclass
class Services:
    redis: object = None
    pg: object = None
    s3: object = None
    bucket: str = ""
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="jobico-bench-")))
    _dbs: int = 0

    def start(self, s3: bool = True) -> Services:
        from jobico_ops.embedded import RedisServer
        from tests.services import PostgresServer, S3Server
        self.redis = RedisServer(extra_args=["--databases", "64"]).start()
        self.pg = PostgresServer(max_connections=300).start()
        if s3:
            self.s3 = S3Server().start()
            self.bucket = self.s3.create_bucket("bench")
        log(f"services up: redis {self.redis.url}, postgres :{self.pg.port}"
            + (f", s3 {self.s3.endpoint}" if self.s3 else ""))
        return self

    def stop(self) -> None:
        for srv in (self.s3, self.pg, self.redis):
            if srv is not None:
                with contextlib.suppress(Exception):
                    srv.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def env(self, name: str, **extra: str) -> dict[str, str]:
        """JOBICO_* for a fresh database + Redis DB number (one 'platform' per scenario)."""
        self._dbs += 1
        db_url = self.pg.create_database(f"bench_{name}_{self._dbs}".replace("-", "_"))
        rdb = self._dbs % 63 + 1
        self.redis.client(rdb).flushdb()
        env = {
            "JOBICO_EMBEDDED": "0",
            "JOBICO_DATABASE_URL": db_url,
            "JOBICO_REDIS_URL": self.redis.url_for(rdb),
            "JOBICO_ADMIN_TOKEN": ADMIN,
            "JOBICO_SECRET_KEY": "secret-key-for-bench-0123456789",
            "JOBICO_DATA_DIR": str(self.tmp / name / "data"),
            "JOBICO_CACHE_DIR": str(self.tmp / name / "cache"),
            # the bench measures throughput, not admission control: lift the per-tenant
            # rate limit (default 1000 events/s) and the queue cap
            "JOBICO_RATE_LIMIT": "100000000",
            "JOBICO_RATE_BURST": "100000000",
            "JOBICO_MAX_QUEUED": "100000000",
            # the workers run WASM (echo): no Python interpreter compile on a core beside them (a fresh
            # cache dir per env would start one in every worker; bench_python_compile measures it)
            "JOBICO_PYTHON_PREPARE": "0",
        }
        if self.s3 is not None:
            env.update({
                "JOBICO_STORAGE_URL": f"s3://{self.bucket}/{name}{self._dbs}",
                "JOBICO_S3_ENDPOINT": self.s3.endpoint,
                "JOBICO_S3_ACCESS_KEY": self.s3.access_key,
                "JOBICO_S3_SECRET_KEY": self.s3.secret_key,
            })
        env.update(extra)
        return env


def context(env: dict[str, str]):
    from jobico_core.db import upgrade_schema
    from jobico_core.services.context import Context
    from jobico_core.settings import Settings
    settings = Settings.from_env(env)
    upgrade_schema(settings.database_url)
    return Context(settings)


def setup_tenant(ctx, tenant: str, packages: int = 1, module: bytes | None = None,
                 module_name: str = "echo.wasm") -> str:
    """Create ``tenant`` with ``packages`` echo packages (events e0..eN-1); returns its key."""
    from jobico_core.services import files, tenants
    from jobico_core.services import packages as pk
    _, key = tenants.create_tenant(ctx, tenant)
    files.upload(ctx, tenant, "any.json", (EXAMPLES / "schemas/any.json").read_bytes())
    files.upload(ctx, tenant, module_name, module or (EXAMPLES / "jobicolets/echo.wasm").read_bytes())
    for i in range(packages):
        pk.deploy(ctx, tenant, ECHO_YAML.format(pkg=f"p{i}", event=f"e{i}", module=module_name))
    return key


def queue_of(tenant: str, i: int = 0) -> str:
    return f"jobico.{tenant}.p{i}.q"


def preload(ctx, tenant: str, n: int, payload: str = '{"age":50,"firstName":"john"}', package: int = 0,
            batch: int = 100) -> None:
    """Enqueue ``n`` executions the way the webhook does (rows committed, then tasks)."""
    from jobico_core.services.executions import enqueue, new_execution
    from jobico_core.services.packages import route
    info = route(ctx, tenant, f"e{package}")
    for start in range(0, n, batch):
        rows = [new_execution(info, f"e{package}", payload, submitter="bench", trigger="webhook")
                for _ in range(min(batch, n - start))]
        enqueue(ctx, rows)


# ---------------------------------------------------------------------------
# processes: gunicorn, celery worker
# ---------------------------------------------------------------------------
class Proc:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], logdir: Path):
        logdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **env}, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def tail(self, n: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        return ""

    def wait_for(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}) waiting for {what}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: no {what} after {timeout}s:\n{self.tail()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()


def gunicorn(name: str, app: str, env: dict[str, str], logdir: Path) -> tuple[Proc, str]:
    """gunicorn with the shipped config (gthread, 2 x cores + 1 workers, 8 threads)."""
    from jobico_ops.embedded import free_port
    port = free_port()
    env = {**env, "JOBICO_API_HOST": "127.0.0.1", "JOBICO_API_PORT": str(port)}
    p = Proc(name, [PY, "-m", "gunicorn", "-c", str(ROOT / "jobico_api" / "gunicorn_conf.py"), app], env, logdir)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        import http.client
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/health")
            c.getresponse().read()
            return True
        except OSError:
            return False
    p.wait_for(ready, 60, "HTTP listener")
    time.sleep(1.0)  # let every worker of the pool finish booting
    return p, url


def worker(name: str, env: dict[str, str], logdir: Path, concurrency: int = 1,
           app: str = "jobico_worker.app", queues: str | None = None) -> Proc:
    """A Celery worker with ``jobico run``'s flags (prefork, -l INFO, no gossip/mingle)."""
    argv = [PY, "-m", "celery", "-A", app, "worker", "-l", "INFO", "-P", "prefork", "-c", str(concurrency),
            "-n", f"{name}@%h", "--without-gossip", "--without-mingle"]
    if queues:
        argv += ["-Q", queues]
    p = Proc(name, argv, env, logdir)
    p.wait_for(lambda: b" ready." in p.log_path.read_bytes(), 90, "'ready.'")
    return p


# ---------------------------------------------------------------------------
# load generation
# ---------------------------------------------------------------------------
WRK_LUA = """
local bodies = {}
local paths = {}
local keys = {}
for line in io.lines("%(spec)s") do
  local path, key, file = line:match("([^\\t]+)\\t([^\\t]+)\\t([^\\t]+)")
  local f = io.open(file, "rb"); local body = f:read("*a"); f:close()
  table.insert(paths, path); table.insert(keys, key); table.insert(bodies, body)
end
local n = #paths
local i = 0
request = function()
  i = (i %% n) + 1
  return wrk.format("POST", paths[i], {["Content-Type"] = "application/json",
                                      ["Authorization"] = "Bearer " .. keys[i]}, bodies[i])
end
local non2xx = 0
response = function(status, headers, body)
  if status ~= 200 then non2xx = non2xx + 1 end
end
"""


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


@dataclass
class Load:
    requests_per_s: float
    non_2xx: int
    errors: int
    tool: str


def load(url: str, targets: list[tuple[str, str, bytes]], seconds: float, connections: int = 32,
         threads: int = 2, workdir: Path | None = None) -> Load:
    """POST the (path, key, body) targets round robin for ``seconds``."""
    workdir = Path(tempfile.mkdtemp(prefix="jobico-load-", dir=workdir))
    try:
        if have_wrk():
            return _wrk(url, targets, seconds, connections, threads, workdir)
        return _pyload(url, targets, seconds, connections)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _wrk(url, targets, seconds, connections, threads, workdir: Path) -> Load:
    spec = workdir / "targets.tsv"
    lines = []
    for i, (path, key, body) in enumerate(targets):
        f = workdir / f"b{i}.json"
        f.write_bytes(body)
        lines.append(f"{path}\t{key}\t{f}")
    spec.write_text("\n".join(lines) + "\n")
    script = workdir / "post.lua"
    script.write_text(WRK_LUA % {"spec": spec} + """
done = function(summary, latency, requests)
  io.write(string.format("JOBICO non2xx=%d\\n", non2xx))
end
""")
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
                          "--timeout", "10s", "-s", str(script), url], capture_output=True, text=True)
    text = out.stdout + out.stderr
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not m:
        raise RuntimeError(f"wrk failed:\n{text}")
    non2xx = sum(int(x) for x in re.findall(r"Non-2xx or 3xx responses:\s+(\d+)", text))
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    nerr = sum(int(x) for x in errs.groups()) if errs else 0
    return Load(float(m.group(1)), non2xx, nerr, "wrk")


def _py_client(url, targets, deadline, out, idx):
    import http.client
    from urllib.parse import urlsplit
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    n = bad = err = 0
    i = idx
    while time.monotonic() < deadline:
        path, key, body = targets[i % len(targets)]
        i += 1
        try:
            conn.request("POST", path, body, {"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
            r = conn.getresponse()
            r.read()
            n += 1
            bad += r.status != 200
        except (OSError, http.client.HTTPException):
            err += 1
            conn.close()
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    out.append((n, bad, err))


def _py_proc(url, targets, seconds, nthreads, q):
    out: list = []
    deadline = time.monotonic() + seconds
    ths = [threading.Thread(target=_py_client, args=(url, targets, deadline, out, i)) for i in range(nthreads)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    q.put(tuple(map(sum, zip(*out))))


def _pyload(url, targets, seconds, connections) -> Load:
    import multiprocessing as mp
    q = mp.get_context("fork").Queue()
    nproc = 2
    ps = [mp.get_context("fork").Process(target=_py_proc, args=(url, targets, seconds, connections // nproc, q))
          for _ in range(nproc)]
    t0 = time.monotonic()
    for p in ps:
        p.start()
    res = [q.get() for _ in ps]
    for p in ps:
        p.join()
    elapsed = time.monotonic() - t0
    n, bad, err = map(sum, zip(*res))
    return Load(n / elapsed, bad, err, "python (http.client keep-alive, 2 processes x threads)")


def body(events: list) -> bytes:
    return json.dumps({"data": events}, separators=(",", ":")).encode()


def sized_event(size: int) -> dict:
    """A JSON object whose canonical text is about ``size`` bytes."""
    base = {"firstName": "john", "age": 50, "pad": ""}
    over = len(json.dumps(base, separators=(",", ":")))
    base["pad"] = "x" * max(0, size - over)
    return base
