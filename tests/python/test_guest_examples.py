"""examples/python/greet.py, the Python version of docs/jobicolets.md's worked example, on the
real interpreter: it gives the results of the document's table, like the compiled versions
(tests/unit/test_guest_examples.py)."""
from __future__ import annotations

import pytest

from jobico_runtime.python import load_python
from tests.guest_examples import PYTHON_EXAMPLES, documented_cases

# the first test's setup may compile the interpreter (minutes, once per machine: conftest.py)
pytestmark = pytest.mark.timeout(1200)

CASES = documented_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.event for c in CASES])
def test_greet_py_gives_the_documented_result(runtime, case):
    module = load_python((PYTHON_EXAMPLES / "greet.py").read_bytes(), "greet.py")
    out = runtime.run(module, case.event)
    assert (out.status.value, out.code, out.result) == (case.status, case.code, case.result), out.to_dict()
    assert tuple((r.level, r.message) for r in out.logs) == case.logs
