"""Every CLI form of the contract answers --help (the live ones are tested in tests/e2e)."""
from __future__ import annotations

from typer.testing import CliRunner

from jobico_cli.main import app

CONTRACT_FORMS = [
    ["tenant", "create"], ["upload-wasm"], ["upload-schema"], ["upload"], ["deploy"], ["redeploy"], ["rollback"],
    ["delete"], ["show"], ["executions"], ["executions", "show"], ["stream-from-recorder"], ["dashboard"],
    ["tenant", "webhook"],
]


def test_every_contract_form_exists():
    for form in CONTRACT_FORMS:
        result = CliRunner().invoke(app, [*form, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (form, result.output)
    for name in ("stream", "stream-from-recorder"):  # the obvious name, and the original's
        help_text = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "200"}).output
        for option in ("--logs", "--follow", "--json"):
            assert option in help_text
        json_help = next(line for line in help_text.splitlines() if "--json" in line)
        assert "JSON Lines" in json_help, json_help
