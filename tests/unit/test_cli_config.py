"""CLI configuration: precedence flag > env > config file > default, and the config file itself."""
import os
import stat
import tomllib

import pytest
from typer.testing import CliRunner

from jobico_cli import config as cfg
from jobico_cli.main import app


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("JOBICO_HOME", str(tmp_path / "jh"))
    monkeypatch.delenv("JOBICO_API_URL", raising=False)
    monkeypatch.delenv("JOBICO_TOKEN", raising=False)
    return tmp_path / "jh"


def test_default_when_nothing_is_configured(home):
    c = cfg.resolve()
    assert (c.api_url, c.token, c.tenant) == ("http://127.0.0.1:8080", None, None)
    assert c.api_url_source == "default" and c.token_source is None
    assert c.path == home / "config.toml"


def test_default_path_without_jobico_home(monkeypatch, tmp_path):
    monkeypatch.delenv("JOBICO_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cfg.config_path() == tmp_path / ".config" / "jobico" / "config.toml"


def test_file_then_env_then_flag(home, monkeypatch):
    cfg.write_config(home / "config.toml", "http://file:1", "file-token", tenant="acme")
    c = cfg.resolve()
    assert (c.api_url, c.token, c.tenant) == ("http://file:1", "file-token", "acme")
    assert (c.api_url_source, c.token_source) == ("file", "file")

    monkeypatch.setenv("JOBICO_API_URL", "http://env:2/")
    c = cfg.resolve()
    assert (c.api_url, c.token) == ("http://env:2", "file-token")  # per key, trailing / dropped
    assert c.tenant == "acme"

    monkeypatch.setenv("JOBICO_TOKEN", "env-token")
    c = cfg.resolve()
    assert (c.api_url, c.token, c.token_source) == ("http://env:2", "env-token", "env")
    assert c.tenant is None  # the file's tenant describes the file's token only

    c = cfg.resolve("http://flag:3", "flag-token")
    assert (c.api_url, c.token, c.api_url_source, c.token_source) == ("http://flag:3", "flag-token", "flag", "flag")
    c = cfg.resolve(None, "flag-token")
    assert c.api_url == "http://env:2"


def test_write_config_is_private_valid_toml_and_roundtrips(tmp_path):
    path = tmp_path / "new" / "dir" / "config.toml"
    token = 'we"ird\\tok\nen\x7f\x01é'
    assert cfg.write_config(path, "http://h:1", token, tenant="t_1") == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    data = tomllib.loads(path.read_text())
    assert data == {"api_url": "http://h:1", "token": token, "tenant": "t_1"}
    assert cfg.read_config(path) == data
    # rewriting replaces the file (no tenant any more) and keeps 0600
    os.chmod(path, 0o644)
    cfg.write_config(path, "http://h:2", "t2")
    assert cfg.read_config(path) == {"api_url": "http://h:2", "token": "t2"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["config.toml"]  # no temp file left


def test_broken_config_file_is_a_usage_error_not_a_traceback(home):
    home.mkdir(parents=True)
    (home / "config.toml").write_text('api_url = "unterminated\n')
    result = CliRunner().invoke(app, ["packages"])
    assert result.exit_code == 2, result.output
    assert "not valid TOML" in result.output and str(home / "config.toml") in result.output
    (home / "config.toml").write_text("token = 5\n")
    result = CliRunner().invoke(app, ["packages"])
    assert result.exit_code == 2 and "token must be a string" in result.output


def test_flags_work_before_and_after_the_command(home, closed_port):
    # both placements reach the URL given (a closed port: the message names it)
    url = f"http://127.0.0.1:{closed_port}"
    for args in (["--api-url", url, "packages"], ["packages", "--api-url", url],
                 ["executions", "--api-url", url], ["executions", "show", "x", "--api-url", url]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 3, (args, result.output)
        assert url in result.output


def test_env_url_used_by_commands(home, closed_port, monkeypatch):
    url = f"http://127.0.0.1:{closed_port}"
    monkeypatch.setenv("JOBICO_API_URL", url)
    result = CliRunner().invoke(app, ["files"])
    assert result.exit_code == 3 and url in result.output
    cfg.write_config(home / "config.toml", "http://127.0.0.1:1", "tok")
    result = CliRunner().invoke(app, ["files"])  # env still beats the file
    assert result.exit_code == 3 and url in result.output
