"""The Python runtime's host side without running the interpreter (that is tests/python)."""
from __future__ import annotations

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
