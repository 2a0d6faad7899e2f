"""The Python runtime's host side without running the interpreter (that is tests/python)."""
from __future__ import annotations

import contextlib

import pytest

from jobico_core.abi import InvalidModule
from jobico_core.errors import Unavailable
from jobico_core.services.files import kind_from_name
from jobico_runtime import Runtime, Status, interpreter
from jobico_runtime.python import PythonModule, load_python


def test_the_wheels_artifacts_are_found_with_their_sums():
    a = interpreter.artifacts()
    assert a.snapshot.is_file() and a.stdlib_zip.is_file()
    assert len(a.snapshot_sha256) == 64 and a.python_version.startswith("3.15")
    assert a.zip_name == "python315.zip"


def test_cache_names_carry_the_interpreter_wasmtime_and_engine_config(tmp_path):
    from jobico_runtime import WASMTIME_VERSION
    from jobico_runtime.sandbox import ENGINE_CONFIG_HASH
    p = interpreter.module_path(tmp_path)
    assert p.parent == tmp_path and p.name.endswith(f"-wasmtime{WASMTIME_VERSION}-{ENGINE_CONFIG_HASH}.cwasm")
    assert interpreter.artifacts().snapshot_sha256[:16] in p.name
    assert not interpreter.is_ready(tmp_path)


def test_the_quick_and_optimized_artifacts_never_share_a_name_and_the_best_one_wins(tmp_path):
    from jobico_runtime.sandbox import engine_config_hash
    quick, best = interpreter.module_path(tmp_path, "quick"), interpreter.module_path(tmp_path, "optimized")
    assert quick != best and quick.name.endswith(f"-{engine_config_hash('winch')}.cwasm")
    (interpreter.stdlib_dir(tmp_path)).mkdir()
    (interpreter.stdlib_dir(tmp_path) / "python315.zip").write_bytes(b"")
    assert interpreter.ready_tier(tmp_path) is None
    quick.write_bytes(b"q")
    assert interpreter.ready_tier(tmp_path) == "quick" and not interpreter.is_ready(tmp_path, "optimized")
    best.write_bytes(b"o")
    assert interpreter.ready_tier(tmp_path) == "optimized" and interpreter.ready_tier(tmp_path, "quick") == "quick"
    with pytest.raises(ValueError, match="unknown tier 'fast'"):
        interpreter.prepare(tmp_path, "fast")


def test_an_event_before_the_interpreter_is_compiled_is_unavailable_not_a_failure(tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr(interpreter, "start_preparing", lambda d: started.append(d))
    rt = Runtime(python_cache_dir=tmp_path / "empty")
    m = load_python(b"def event(data):\n    return 0, ''\n", "x.py")
    with pytest.raises(interpreter.InterpreterNotReady) as info:
        rt.run(m, b"{}")
    assert isinstance(info.value, Unavailable) and info.value.status == 503
    assert info.value.headers["Retry-After"] == str(interpreter.RETRY_AFTER_S) == "5"
    assert started == [tmp_path / "empty"]  # it asked for the compilation, in the background


def test_load_dispatches_on_language_and_python_modules_are_recognised():
    rt = Runtime()
    m = rt.load(b"x = 1\n", language="python", name="a.py")
    assert isinstance(m, PythonModule) and m.name == "a.py" and len(m.sha256) == 64
    with pytest.raises(InvalidModule, match="unknown jobicolet language 'ruby'"):
        rt.load(b"", language="ruby")
    assert kind_from_name("job.py") == "python"


def test_input_limit_is_checked_before_the_interpreter_is_needed(tmp_path):
    from jobico_core.limits import Limits
    rt = Runtime(python_cache_dir=tmp_path)
    out = rt.run(load_python(b"x = 1\n"), b"x" * 2048, limits=Limits(input_kb=1))
    assert (out.status, out.limit) == (Status.LIMIT_EXCEEDED, "input")


def test_a_cache_others_can_write_is_refused(tmp_path):
    import os
    d = tmp_path / "shared"
    d.mkdir()
    os.chmod(d, 0o777)
    with pytest.raises(interpreter.InterpreterMissing, match="not private"):
        interpreter.check_private(d)
    os.chmod(d, 0o700)
    interpreter.check_private(d)


def test_a_damaged_compiled_interpreter_is_discarded_and_compiled_anew(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(interpreter, "start_preparing", lambda d: asked.append(d))
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    interpreter.module_path(cache).write_bytes(b"not native code")
    (interpreter.stdlib_dir(cache)).mkdir(mode=0o700)
    (interpreter.stdlib_dir(cache) / "python315.zip").write_bytes(b"")
    assert interpreter.is_ready(cache)
    rt = Runtime(python_cache_dir=cache)
    with pytest.raises(interpreter.InterpreterNotReady):
        rt.run(load_python(b"x = 1\n"), b"{}")
    assert not interpreter.module_path(cache).exists() and asked == [cache]


def test_a_package_zip_is_read_in_memory_with_its_paths():
    import io
    import zipfile
    from pathlib import Path

    from jobico_runtime.python import MAX_PACKAGE_ZIP_BYTES
    examples = Path(__file__).resolve().parents[2] / "examples" / "python"
    data = (examples / "pricing.zip").read_bytes()
    m = Runtime().load(data, language="python", name="pricing.zip")
    assert m.is_package and m.filename == "pricing.zip/main.py" and kind_from_name("pricing.zip") == "python"
    import hashlib
    assert m.sha256 == hashlib.sha256(data).hexdigest()   # of the zip's bytes
    # the committed zip holds exactly the committed sources (make examples-python rebuilds it)
    sources = {p.relative_to(examples / "pricing").as_posix(): p.read_text()
               for p in (examples / "pricing").rglob("*.py") if "__pycache__" not in p.parts}
    assert {"main.py": m.source, **dict(m.files)} == sources
    assert [p for p, _ in m.files] == ["money.py", "rules/__init__.py", "rules/coupons.py", "rules/volume.py"]
    assert m.files_frame.split(b"\0")[0::2] == [b"money.py", b"rules/__init__.py", b"rules/coupons.py",
                                                b"rules/volume.py"]
    # directory entries are dropped, "./" is normalised, a BOM is dropped as for a single file
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("./main.py", "\ufeffdef event(data):\n    return 0, ''\n")
        zf.writestr("pkg/", "")
        zf.writestr("pkg/util.py", "X = 1\n")
    m = load_python(buf.getvalue(), "t.zip")
    assert m.source.startswith("def event") and m.files == (("pkg/util.py", "X = 1\n"),)
    with pytest.raises(InvalidModule, match=f"big.zip is {MAX_PACKAGE_ZIP_BYTES + 1} bytes; a Python package zip "
                                            "is at most 2048 KiB"):
        load_python(b"PK\x03\x04" + bytes(MAX_PACKAGE_ZIP_BYTES - 3), "big.zip")


def test_a_failed_quick_compile_does_not_keep_the_optimized_one_from_being_compiled(tmp_path, monkeypatch, caplog):
    """Winch may lack something on some CPU: the background preparation still compiles the
    optimized artifact (each tier is tried and reported alone)."""
    tried = []

    def prepare(cache_dir, tier="optimized", **_kw):
        tried.append(tier)
        if tier == "quick":
            raise interpreter.InterpreterMissing("compiling the Python interpreter failed (exit 1): winch")
        return interpreter.module_path(cache_dir, tier)

    monkeypatch.setattr(interpreter, "prepare", prepare)
    t = interpreter.start_preparing(tmp_path / "host")
    assert t is not None
    t.join(30)
    assert not t.is_alive() and tried == ["quick", "optimized"]
    assert "preparing the Python interpreter (quick) failed" in caplog.text and "winch" in caplog.text


# --------------------------------------------------------------------------
# pruning stale artifacts (real files on disk with chosen mtimes; nothing is compiled)

DAY = 86400


def _cache_with_artifacts(tmp_path):
    """A cache holding the current tiers (old and unused: still kept), artifacts of other versions and
    configurations, compile leftovers and files that are not interpreter artifacts; name -> age in s."""
    import os
    import time
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    sha = interpreter.artifacts().snapshot_sha256[:16]
    ages = {
        interpreter.module_path(cache, "quick").name: 30 * DAY,          # current: kept however old
        interpreter.module_path(cache, "optimized").name: 30 * DAY,
        f"python-{sha}-wasmtime48.0.0-9544c4566628d1cb.cwasm": 8 * DAY,   # previous wasmtime: stale
        f"python-{sha}-wasmtime49.0.0-0123456789abcdef.cwasm": 30 * DAY,  # old engine config: stale
        "python-00000000deadbeef-wasmtime49.0.0-3f8dda05bed80b6e.cwasm": 6 * DAY,  # previous release: in grace
        "python-00000000deadbeef-wasmtime48.0.0-3f8dda05bed80b6e.cwasm": 1 * DAY,
        ".python-k2j_x9ab.cwasm": 2 * 3600,               # a crashed compile's temporary file: removed
        ".python-fresh123.cwasm": 60,                     # a compile writing right now: kept
        "python-compile-optimized.lock": 30 * DAY,        # locks, the WASM modules' artifacts, anything else
        "python-compile-quick.lock": 30 * DAY,
        "ab" * 32 + "-wasmtime49.0.0-3f8dda05bed80b6e.cwasm": 30 * DAY,
        "python-notes.cwasm": 30 * DAY,
        "python-00000000deadbeef-wasmtime49.0.0-3f8dda05bed80b6e.cwasm.bak": 30 * DAY,
        "python-00000000DEADBEEF-wasmtime49.0.0-3f8dda05bed80b6e.cwasm": 30 * DAY,
    }
    now = time.time()
    for name, age in ages.items():
        p = cache / name
        p.write_bytes(b"x" * 1000)
        os.utime(p, (now - age, now - age))
    stdlib = interpreter.stdlib_dir(cache)
    stdlib.mkdir(mode=0o700)
    (stdlib / "python315.zip").write_bytes(b"")
    old_stdlib = cache / "python-stdlib-0000000000000000"
    old_stdlib.mkdir()
    os.utime(old_stdlib, (now - 30 * DAY, now - 30 * DAY))
    return cache


_STALE = {"python-{sha}-wasmtime48.0.0-9544c4566628d1cb.cwasm", "python-{sha}-wasmtime49.0.0-0123456789abcdef.cwasm",
         ".python-k2j_x9ab.cwasm"}


def _stale_names():
    """The names in ``_cache_with_artifacts`` that ``prune_stale`` removes (with its defaults)."""
    sha = interpreter.artifacts().snapshot_sha256[:16]
    return {n.format(sha=sha) for n in _STALE}


def test_only_unused_artifacts_of_other_versions_and_old_compile_leftovers_are_pruned(tmp_path, caplog):
    import logging
    cache = _cache_with_artifacts(tmp_path)
    before = {p.name for p in cache.iterdir()}
    assert {p.name for p, _ in interpreter.stale_artifacts(cache)} == _stale_names()
    with caplog.at_level(logging.INFO, logger="jobico.python"):
        freed = interpreter.prune_stale(cache)
    assert freed == 3000
    assert {p.name for p in cache.iterdir()} == before - _stale_names()
    for tier in interpreter.TIERS:          # the current tiers, 30 days unused, are there
        assert interpreter.module_path(cache, tier).is_file()
    assert interpreter.is_ready(cache, "optimized") and (cache / "python-stdlib-0000000000000000").is_dir()
    for name in _stale_names():
        assert f"removed the stale Python interpreter {name}" in caplog.text
    assert f"pruned 3 stale Python interpreter file(s) from {cache}: 0 MB freed" in caplog.text
    assert interpreter.prune_stale(cache) == 0     # nothing left to prune


def test_the_grace_period_is_the_last_use(tmp_path):
    cache = _cache_with_artifacts(tmp_path)
    assert len(interpreter.stale_artifacts(cache, keep_s=5 * DAY)) == 4       # the 6-day-old one too
    assert {p.name for p, _ in interpreter.stale_artifacts(cache, keep_s=60 * DAY, temp_s=60 * DAY)} == set()
    old = next(p for p, _ in interpreter.stale_artifacts(cache) if p.name.startswith("python-"))
    interpreter.mark_used(old)             # loaded by a process of that version: kept a grace period more
    assert old not in {p for p, _ in interpreter.stale_artifacts(cache)}


def test_pruning_never_follows_or_removes_symlinks(tmp_path):
    import os
    import time
    cache = _cache_with_artifacts(tmp_path)
    outside = tmp_path / "elsewhere.cwasm"
    outside.write_bytes(b"keep me")
    os.utime(outside, (time.time() - 30 * DAY,) * 2)
    link = cache / "python-1111111111111111-wasmtime40.0.0-2222222222222222.cwasm"
    link.symlink_to(outside)
    os.utime(link, (time.time() - 30 * DAY,) * 2, follow_symlinks=False)
    (cache / "python-3333333333333333-wasmtime40.0.0-4444444444444444.cwasm").mkdir()  # a directory: not ours
    interpreter.prune_stale(cache)
    assert link.is_symlink() and outside.read_bytes() == b"keep me"
    assert (cache / "python-3333333333333333-wasmtime40.0.0-4444444444444444.cwasm").is_dir()


@contextlib.contextmanager
def _read_only(path):
    """``path`` cannot be changed for the duration: mode 0500 (0400 for a file), or, for root whom
    modes do not stop, the immutable attribute (chattr +i)."""
    import os
    import shutil
    import subprocess
    mode = path.stat().st_mode & 0o777
    os.chmod(path, 0o500 if path.is_dir() else 0o400)
    immutable = False
    try:
        if os.geteuid() == 0:
            chattr = shutil.which("chattr")
            if chattr is None or subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode:
                pytest.skip("running as root without chattr +i here: cannot make a file read-only")
            immutable = True
        yield
    finally:
        if immutable:
            subprocess.run([shutil.which("chattr") or "chattr", "-i", str(path)], check=True)
        os.chmod(path, mode)


def test_a_read_only_or_missing_cache_is_reported_not_an_error(tmp_path, caplog):
    cache = _cache_with_artifacts(tmp_path)
    before = {p.name for p in cache.iterdir()}
    with _read_only(cache):
        assert interpreter.prune_stale(cache) == 0
        assert {p.name for p in cache.iterdir()} == before
    assert caplog.text.count("could not remove the stale Python interpreter") == 3
    assert "pruned" not in caplog.text
    assert interpreter.prune_stale(tmp_path / "missing") == 0
    assert "could not look for stale Python interpreters" in caplog.text
    assert interpreter.prune_stale(cache) == 3000       # writable again: pruned


def test_loading_marks_an_artifact_used_once_per_process_and_never_fails(tmp_path):
    import os
    import time
    art = tmp_path / "python-5555555555555555-wasmtime49.0.0-6666666666666666.cwasm"
    art.write_bytes(b"x")
    old = time.time() - 30 * DAY
    os.utime(art, (old, old))
    interpreter.mark_used(art)
    assert time.time() - art.stat().st_mtime < 60
    os.utime(art, (old, old))
    interpreter.mark_used(art)             # once per process: the file is not touched again
    assert art.stat().st_mtime == pytest.approx(old)
    interpreter.mark_used(tmp_path / "gone.cwasm")   # a missing file: ignored
    ro = tmp_path / "python-7777777777777777-wasmtime49.0.0-6666666666666666.cwasm"
    ro.write_bytes(b"x")
    os.utime(ro, (old, old))
    with _read_only(ro):
        interpreter.mark_used(ro)          # cannot be touched: ignored (a read-only cache still loads)
        assert ro.stat().st_mtime == pytest.approx(old) or os.geteuid() != 0


def test_the_real_load_path_marks_the_artifact_used(tmp_path):
    """``load_interpreter`` refreshes the mtime of the artifact it deserializes. The artifact here is a
    real (empty) module serialized by this runtime's engine under the interpreter's name: loading it
    is real and takes milliseconds (the runner cannot be precompiled in it, which is only logged)."""
    import os
    import time

    import wasmtime

    from jobico_runtime.python import load_interpreter
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    rt = Runtime(python_cache_dir=cache)
    art = interpreter.module_path(cache)
    art.write_bytes(wasmtime.Module(rt.engine(1024, interpreter.TIERS["optimized"]), "(module)").serialize())
    interpreter.stdlib_dir(cache).mkdir(mode=0o700)
    (interpreter.stdlib_dir(cache) / "python315.zip").write_bytes(b"")
    old = time.time() - 30 * DAY
    os.utime(art, (old, old))
    assert load_interpreter(rt, 1024).tier == "optimized"
    assert time.time() - art.stat().st_mtime < 60


def test_prepare_python_prunes_even_when_nothing_is_compiled(tmp_path, monkeypatch):
    """`jobico prepare-python` on a host whose optimized artifact is there (a fake file: nothing is
    compiled) still removes the stale ones, under the compile lock."""
    from typer.testing import CliRunner

    from jobico_ops.main import app
    cache = _cache_with_artifacts(tmp_path)
    monkeypatch.setenv("JOBICO_PYTHON_CACHE_DIR", str(cache))
    result = CliRunner().invoke(app, ["prepare-python"])
    assert result.exit_code == 0, result.output
    assert f"the Python interpreter is ready: {interpreter.module_path(cache)}" in result.output
    assert "pruned 3 stale Python interpreter file(s)" in result.output
    left = {p.name for p in cache.iterdir()}
    assert not left & _stale_names() and interpreter.module_path(cache, "quick").name in left
