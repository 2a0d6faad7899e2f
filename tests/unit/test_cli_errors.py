"""CLI exit codes without a server: 3 unreachable, 2 usage errors; never a traceback."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jobico_cli.client import error_lines, refusal_message
from jobico_cli.main import app

ROOT = Path(__file__).resolve().parents[2]
JOBICO = ROOT / ".venv" / "bin" / "jobico"


@pytest.fixture
def env(tmp_path, monkeypatch, closed_port):
    monkeypatch.setenv("JOBICO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("JOBICO_API_URL", f"http://127.0.0.1:{closed_port}")
    monkeypatch.setenv("JOBICO_TOKEN", "some-token")
    return {"url": f"http://127.0.0.1:{closed_port}", "tmp": tmp_path}


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(app, list(args), input=input)


def no_traceback(result) -> None:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


@pytest.mark.parametrize("args", [
    ["packages"], ["files"], ["whoami"], ["tenant", "list"], ["executions"], ["executions", "show", "0190"],
    ["show", "p"], ["rollback", "p", "--version", "1"], ["delete", "p", "--yes"], ["send", "e", "-t", "t", "-d", "{}"],
    ["login", "--token", "x"],
])
def test_refused_connection_exits_3_naming_the_url(env, args):
    result = run(*args)
    assert result.exit_code == 3, result.output
    assert env["url"] in result.output and "connection refused" in result.output
    no_traceback(result)


def test_unresolvable_host_exits_3():
    result = run("packages", "--api-url", "http://no-such-host.invalid:8080", "--token", "t")
    assert result.exit_code == 3
    assert "no-such-host.invalid" in result.output and "could not be resolved" in result.output


def test_subprocess_exit_3_without_traceback(env):
    proc = subprocess.run([str(JOBICO), "packages", "--json"], capture_output=True, text=True, timeout=60,
                          env={**os.environ})
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == ""  # --json: nothing on stdout when failing
    assert env["url"] in proc.stderr and "Traceback" not in proc.stderr


def test_invalid_url_is_a_usage_error(env):
    result = run("packages", "--api-url", "not a url")
    assert result.exit_code == 2 and "invalid API URL" in result.output


def _yaml(tmp: Path, pkg_id: str, name: str = "p.yaml") -> Path:
    path = tmp / name
    path.write_text(f"id: {pkg_id}\nqueues: [{{id: main}}]\n")
    return path


def test_deploy_id_mismatch_is_exit_2_before_any_upload(env):
    yaml_file = _yaml(env["tmp"], "other")
    wasm = env["tmp"] / "m.wasm"
    wasm.write_bytes(b"\0asm\1\0\0\0")
    # the API URL points at a closed port: reaching the network would give exit 3
    for cmd in ("deploy", "redeploy"):
        result = run(cmd, "greet", "--config", str(yaml_file), "--wasm", str(wasm))
        assert result.exit_code == 2, result.output
        assert "'greet'" in result.output and "'other'" in result.output
        no_traceback(result)


def test_deploy_id_of_the_camel_case_dialect(env):
    path = env["tmp"] / "camel.yaml"
    path.write_text("package:\n  ID: camel\n")
    result = run("deploy", "nope", "--config", str(path))
    assert result.exit_code == 2 and "'camel'" in result.output
    # matching id: passes the local check and goes to the (closed) server
    assert run("deploy", "camel", "--config", str(path)).exit_code == 3


@pytest.mark.parametrize("content,needle", [("id: [unclosed\n", "not valid YAML"), ("name: x\n", "no package id")])
def test_deploy_unreadable_yaml_with_config_is_exit_2(env, content, needle):
    path = env["tmp"] / "bad.yaml"
    path.write_text(content)
    result = run("deploy", "x", "--config", str(path))
    assert result.exit_code == 2 and needle in result.output


@pytest.mark.parametrize("args,needle", [
    (["no-such-command"], "No such command"),
    (["deploy"], "Missing argument"),
    (["deploy", "missing.yaml"], "is not a file"),
    (["deploy", "p", "--config", "missing.yaml"], "does not exist"),
    (["upload-wasm", "missing.wasm"], "does not exist"),
    (["rollback", "p"], "Missing option"),
    (["rollback", "p", "--version", "zero"], "valid integer"),
    (["executions", "--status", "bogus"], "bogus"),
    (["executions", "--limit", "0"], "greater than or equal to"),
    (["tenant", "create", "t", "--webhook-auth", "sometimes"], "sometimes"),
    (["send", "e", "-t", "t"], "exactly one of --data"),
    (["send", "e", "-t", "t", "--data", "{nope"], "not valid JSON"),
    (["send", "e", "-t", "t", "--data", "[]"], "empty"),
    (["send", "e", "-t", "t", "--data", "1", "--file", "x.json"], "exactly one of"),
    (["delete", "p"], "--yes"),  # not a terminal and no --yes: refuse rather than hang
])
def test_usage_errors_exit_2(env, args, needle):
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert needle in result.output, result.output
    no_traceback(result)


def test_upload_kind_from_extension(env):
    for name in ("notes.txt", "noext"):
        path = env["tmp"] / name
        path.write_text("x")
        result = run("upload", str(path))
        assert result.exit_code == 2 and "extension" in result.output
    ok = env["tmp"] / "m.WASM"
    ok.write_bytes(b"\0asm")
    assert run("upload", str(ok)).exit_code == 3  # kind known: it goes on to the (closed) server


def test_main_maps_usage_error_to_2_in_a_subprocess(env):
    proc = subprocess.run([str(JOBICO), "deploy"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Missing argument" in proc.stderr and "Traceback" not in proc.stderr


def test_error_lines_flatten_every_shape():
    assert error_lines({"package": [{"path": "jobs[0].event.runtime", "message": "unknown runtime 'x'"}]}) == \
        ["package: jobs[0].event.runtime: unknown runtime 'x'"]
    assert error_lines({"data": {"1": [{"path": "$.age", "rule": "type", "message": "'x' is not an integer"}]}}) \
        == ["data[1]: $.age: 'x' is not an integer"]
    assert error_lines({"json": {"version": ["Missing data for required field."]}}) == \
        ["json.version: Missing data for required field."]
    assert error_lines({"status": ["bogus"]}) == ["status: bogus"]
    assert error_lines({"package": [{"path": "", "message": "bad", "line": 3}]}) == ["package: bad (line 3)"]
    assert error_lines({}) == [] and error_lines(None) == []


def test_refusal_message_lists_details_on_their_own_lines():
    body = {"code": 422, "status": "Unprocessable Entity", "message": "2 problems",
            "errors": {"package": [{"path": "id", "message": "missing"}, {"path": "jobs", "message": "empty"}]}}
    assert refusal_message(422, "UNPROCESSABLE", body, "http://x") == \
        "2 problems\n  package: id: missing\n  package: jobs: empty"
    assert refusal_message(502, "Bad Gateway", None, "http://x/api") == "HTTP 502 Bad Gateway from http://x/api"


def test_python_m_entry_point_runs(env):
    proc = subprocess.run([sys.executable, "-m", "jobico_cli.main", "--help"], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert proc.returncode == 0 and "Usage" in proc.stdout
