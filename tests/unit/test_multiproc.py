"""jobico_core.multiproc: the life of PROMETHEUS_MULTIPROC_DIR (gunicorn's hooks call it)."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from jobico_core import multiproc

ROOT = Path(__file__).resolve().parents[2]


def test_reset_empties_only_the_sample_files(tmp_path, monkeypatch):
    d = tmp_path / "metrics"
    d.mkdir()
    (d / "counter_123.db").write_bytes(b"x")
    (d / "gauge_livesum_123.db").write_bytes(b"x")
    (d / "notes.txt").write_text("kept")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(d))
    multiproc.reset()
    assert sorted(p.name for p in d.iterdir()) == ["notes.txt"]
    fresh = tmp_path / "fresh"
    multiproc.reset(fresh)
    assert fresh.is_dir() and stat.S_IMODE(fresh.stat().st_mode) == 0o700


def test_without_a_directory_nothing_is_touched(tmp_path, monkeypatch):
    """gunicorn runs its hooks in its working directory: no variable must never mean "here"."""
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("prometheus_multiproc_dir", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "counter_1.db").write_bytes(b"x")
    (tmp_path / "Makefile").write_text("kept")
    multiproc.reset()
    multiproc.process_exited(os.getpid())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Makefile", "counter_1.db"]


def test_gunicorn_hooks_empty_the_directory_and_drop_dead_workers_gauges(tmp_path):
    d = tmp_path / "metrics"
    d.mkdir()
    (d / "counter_1.db").write_bytes(b"stale")
    code = f"""
import runpy
from prometheus_client import Gauge
conf = runpy.run_path({str(ROOT / 'jobico_api' / 'gunicorn_conf.py')!r})
conf["on_starting"](None)
assert not (__import__("pathlib").Path({str(d)!r}) / "counter_1.db").exists()
Gauge("g", "g", multiprocess_mode="livesum").set(1)
import os
class W: pid = os.getpid()
conf["child_exit"](None, W)
"""
    r = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(d)},
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not list(d.glob("gauge_livesum_*.db"))  # mark_process_dead removed the dead worker's live gauge
