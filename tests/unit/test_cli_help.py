"""Every command and group answers --help (exit 0, with its usage)."""
import pytest
import typer
from typer.testing import CliRunner

from jobico_cli.main import app

REQUIRED = [
    "login", "whoami", "tenant create", "tenant list", "tenant delete", "tenant key create", "tenant key list",
    "tenant key delete", "upload-wasm", "upload-schema", "upload", "files", "deploy", "redeploy", "rollback",
    "delete", "show", "packages", "executions", "executions show", "send",
]


def _paths(group, prefix=()):
    yield prefix
    for name, cmd in getattr(group, "commands", {}).items():
        yield from _paths(cmd, prefix + (name,))


ALL = sorted({" ".join(p) for p in _paths(typer.main.get_command(app))})


def test_every_required_command_is_registered():
    missing = [c for c in REQUIRED if c not in ALL]
    assert not missing


@pytest.mark.parametrize("path", ALL)
def test_help(path):
    args = path.split() if path else []
    result = CliRunner().invoke(app, args + ["--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    if path in REQUIRED and path not in ("tenant", "tenant key"):
        assert "--api-url" in result.output and "--token" in result.output  # connection options everywhere


@pytest.mark.parametrize("path", ["tenant list", "tenant create", "tenant key create", "tenant key list", "files",
                                  "show", "packages", "executions", "executions show", "whoami", "send", "deploy"])
def test_listing_and_showing_commands_have_json(path):
    assert "--json" in CliRunner().invoke(app, path.split() + ["--help"]).output


def test_completion_stays_enabled():
    out = CliRunner().invoke(app, ["--help"]).output
    assert "--install-completion" in out and "--show-completion" in out
