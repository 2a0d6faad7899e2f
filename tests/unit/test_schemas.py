"""Tenant JSON Schemas are untrusted: refs stay local, patterns run in linear time."""
from __future__ import annotations

import json

import pytest

from jobico_core.errors import Invalid
from jobico_core.schemas import check_schema_bytes, compile_validator


@pytest.mark.timeout(20)
def test_catastrophic_pattern_runs_in_linear_time():
    # With Python's backtracking `re` this search takes ~2^60 steps: the test would time out.
    schema = {"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a+)+$"}},
              "patternProperties": {"^(x+)+$": {"type": "integer"}}}
    check_schema_bytes(json.dumps(schema).encode())
    v = compile_validator(schema)
    errors = list(v.iter_errors({"s": "a" * 60 + "b", "x" * 60 + "y": "not checked"}))
    assert [e.validator for e in errors] == ["pattern"]
    assert not list(v.iter_errors({"s": "aaaa", "xxx": 3}))
    assert [e.validator for e in v.iter_errors({"xxx": "3"})] == ["type"]  # patternProperties applied


@pytest.mark.parametrize("pattern", [r"(a)\1", r"foo(?=bar)", r"(?<!x)y"])
def test_patterns_re2_cannot_run_are_refused_at_upload_with_their_path(pattern):
    schema = {"properties": {"code": {"type": "string", "pattern": pattern}}}
    with pytest.raises(Invalid) as exc:
        check_schema_bytes(json.dumps(schema).encode())
    assert exc.value.status == 422
    assert exc.value.errors["file"][0]["path"] == "properties/code/pattern"
    assert "linear time" in exc.value.message


def test_common_patterns_still_work():
    v = compile_validator({"type": "string", "pattern": r"^[A-Z]{2}\d{3}(-[a-z]+)?$"})
    assert not list(v.iter_errors("AB123-xy")) and list(v.iter_errors("ab123"))
