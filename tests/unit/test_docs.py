"""Docs stay true to the code: every JOBICO_* variable the settings read is in
the README's configuration table, and every variable the code reads is declared."""
from __future__ import annotations

import re
from pathlib import Path

from jobico_core.settings import VARIABLES

ROOT = Path(__file__).resolve().parents[2]


def test_readme_documents_every_variable():
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in VARIABLES if f"`{name}`" not in readme]
    assert not missing, f"README.md lacks {missing}: regenerate with `python -m jobico_core.settings`"


def test_every_variable_read_by_the_code_is_declared():
    declared = set(VARIABLES)
    prefixes = ("JOBICO_LIMIT_", "JOBICO_MAX_", "JOBICO_PYTHON_LIMIT_")
    found = set()
    for path in ROOT.glob("jobico_*/**/*.py"):
        found |= set(re.findall(r"JOBICO_[A-Z0-9_]+", path.read_text()))
    undeclared = sorted(v for v in found - declared
                        if not v.startswith(prefixes) and not v.endswith("_") and v not in {
                            "JOBICO_API_URL", "JOBICO_TOKEN", "JOBICO_HOME", "JOBICO_DEBUG",
                            # the CLI's own variables, documented in --help
                            "JOBICO_SIGNING_SECRET", "JOBICO_GATEWAY_URL"})
    assert not undeclared, f"read by the code but not in jobico_core.settings.VARIABLES: {undeclared}"
