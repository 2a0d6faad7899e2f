"""The wheel stands on its own: built from the repository and installed into a fresh virtual
environment outside the checkout, `jobico run` brings the platform up with its demo from an empty
directory and `jobico migrate` upgrades a PostgreSQL database. Nothing of the checkout is on the
path: the code, the migrations and the demo's files come from the wheel.

For speed the fresh environment borrows the third-party dependencies of the repository's .venv (a
`.pth` line naming its site-packages; the editable install there is not activated by it) and the
wheel is installed without dependencies.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from jobico_ops.embedded import free_port
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
PIP = [sys.executable, "-m", "pip"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([*PIP, "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)], check=True, timeout=300,
                   capture_output=True)
    (found,) = out.glob("jobico-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    env_dir = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "borrowed-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([*PIP, "--python", str(python), "install", "--no-deps", "-q", str(wheel)], check=True,
                   timeout=300, capture_output=True)
    return env_dir


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JOBICO_", "FLOWER_", "PROMETHEUS_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(JOBICO_HOME=str(tmp / "home"), JOBICO_PYTHON_PREPARE="0", HOME=str(tmp / "user"), **extra)
    (tmp / "user").mkdir(exist_ok=True)
    return env


def test_the_wheel_carries_the_migrations_and_the_demo(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "jobico_core/migrations/env.py" in names
    assert any(n.startswith("jobico_core/migrations/versions/0001") for n in names), sorted(names)
    for demo in ("packages/hello.yaml", "jobicolets/greet.wasm", "schemas/hello.json"):
        assert f"jobico_ops/examples/{demo}" in names, demo
    assert not any(n.split("/")[0] in ("celeryconfig.py", "migrations", "examples") for n in names)


def test_the_installed_code_is_the_wheels_not_the_checkouts(venv, tmp_path):
    out = subprocess.run([str(venv / "bin" / "python"), "-c",
                          "import jobico_ops, jobico_core, jobico_runtime; "
                          "print(jobico_ops.__file__, jobico_core.__file__, jobico_runtime.__file__)"],
                         cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, check=True).stdout
    for path in out.split():
        assert Path(path).is_relative_to(venv), path


def test_jobico_run_from_an_empty_directory_comes_up_with_its_demo(venv, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    port = free_port()
    env = _env(tmp_path)
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(venv / "bin" / "jobico"), "run", "--port", str(port), "--no-flower",
                                 "--no-beat", "--concurrency", "1"],
                                cwd=empty, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: b"Ctrl-C stops everything" in log.read_bytes() or proc.poll() is not None,
                   timeout=180, what="the banner of `jobico run`")
        assert proc.poll() is None, log.read_text(errors="replace")[-4000:]
        cli = subprocess.run([str(venv / "bin" / "jobico"), "packages"], cwd=empty, env=env,
                             capture_output=True, text=True, timeout=60)
        assert cli.returncode == 0, cli.stderr
        assert "hello" in cli.stdout, cli.stdout
        health = requests.get(f"http://127.0.0.1:{port}/ready", timeout=10)
        assert health.status_code == 200, health.text
        assert (empty / ".jobico").is_dir()   # the data directory, where it was started
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text(errors="replace")[-4000:]


def test_jobico_migrate_from_an_empty_directory_upgrades_postgresql(venv, tmp_path, pg_url):
    r = subprocess.run([str(venv / "bin" / "jobico"), "migrate"], cwd=tmp_path,
                       env=_env(tmp_path, JOBICO_DATABASE_URL=pg_url), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
            tables = set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()
    heads = sorted(p.name.split("_")[0] for p in (ROOT / "jobico_core" / "migrations" / "versions").glob("0*.py"))
    assert version.startswith(heads[-1]), (version, heads)
    assert {"executions", "packages", "tenants"} <= tables, tables
