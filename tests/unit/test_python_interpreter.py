"""The Python runtime's host side without running the interpreter (that is tests/python)."""
from __future__ import annotations

import pytest

from jobico_core.abi import InvalidModule
from jobico_core.errors import Unavailable
from jobico_core.services.files import kind_from_name
from jobico_worker.runtime import Runtime, Status, interpreter
from jobico_worker.runtime.python import PythonModule, load_python


def test_the_wheels_artifacts_are_found_with_their_sums():
    a = interpreter.artifacts()
    assert a.snapshot.is_file() and a.stdlib_zip.is_file()
    assert len(a.snapshot_sha256) == 64 and a.python_version.startswith("3.15")
    assert a.zip_name == "python315.zip"


def test_cache_names_carry_the_interpreter_wasmtime_and_engine_config(tmp_path):
    from jobico_worker.runtime import WASMTIME_VERSION
    from jobico_worker.runtime._runtime import ENGINE_CONFIG_HASH
    p = interpreter.module_path(tmp_path)
    assert p.parent == tmp_path and p.name.endswith(f"-wasmtime{WASMTIME_VERSION}-{ENGINE_CONFIG_HASH}.cwasm")
    assert interpreter.artifacts().snapshot_sha256[:16] in p.name
    assert not interpreter.is_ready(tmp_path)


def test_an_event_before_the_interpreter_is_compiled_is_unavailable_not_a_failure(tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr(interpreter, "start_preparing", lambda d: started.append(d))
    rt = Runtime(python_cache_dir=tmp_path / "empty")
    m = load_python(b"def event(data):\n    return 0, ''\n", "x.py")
    with pytest.raises(interpreter.InterpreterNotReady) as info:
        rt.run(m, b"{}")
    assert isinstance(info.value, Unavailable) and info.value.status == 503
    assert info.value.headers["Retry-After"] == "30"
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
