"""jobico_core.names: one definition per rule, for the server's check and for the OpenAPI document.

What the document publishes (``Rule.json_schema``) accepts exactly what the server accepts
(``Rule.problem``), for any text.
"""
from __future__ import annotations

import re

import jsonschema
from hypothesis import example, given, settings
from hypothesis import strategies as st

from jobico_core.names import FILE, HEADER, NAME, PACKAGE


def documented(rule, value: str) -> bool:
    """What a client reading the OpenAPI document concludes. Its patterns are ECMA-262, where ``$``
    is the end of the input; Python's ``re.search`` (jsonschema's) also lets it match before a final
    newline, so the check reads it as ``\\Z``."""
    schema = rule.json_schema()
    schema["pattern"] = re.sub(r"\$$", r"\\Z", schema["pattern"])
    return jsonschema.Draft7Validator(schema).is_valid(value)


NAMEISH = st.text(st.sampled_from("aZ09_.-/ \n\x00é"), max_size=140) | st.text(max_size=140)


@settings(max_examples=400, deadline=None)
@given(NAMEISH)
@example("archive")
@example("a..b")
@example("x\n")
@example("a" * 64)
@example("a" * 65)
@example("a" * 129)
def test_the_document_and_the_server_agree(value):
    for rule in (NAME, PACKAGE, FILE, HEADER):
        assert documented(rule, value) == (rule.problem(value, "it") is None), (rule, value)


def test_messages_name_the_rule():
    assert NAME.pattern in NAME.problem("-x", "tenant")
    assert "no directories" in FILE.problem("a/b", "file name")
    assert "reserved" in PACKAGE.problem("archive", "id") and PACKAGE.problem("archive.v2", "id") is None
    assert NAME.problem(3, "tenant") == f"tenant must be a string matching {NAME.pattern}"
    assert re.fullmatch(HEADER.optional_pattern(), "") and not re.fullmatch(HEADER.pattern, "")
