"""The per-event shortcuts of a many-event webhook request give what the plain way gives.

Each test compares a fast path with the reference it replaces, on generated input:
``canonical.dumps_parsed_each`` with ``dumps`` of each event, ``schemas.elements_errors`` with
``schema_errors`` of each event (so the 422 body is the same), ``new_executions``' rows with the
dataclass's constructor, ``new_columns`` with each row's attributes, and ``task_messages`` read
from the columns with ``task_messages`` looking at each row.
"""
from __future__ import annotations

import base64
import dataclasses
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from jobico_core import canonical
from jobico_core.broker import task_envelope
from jobico_core.package import parse_package
from jobico_core.schemas import accepts_everything, compile_validator, elements_errors, schema_errors
from jobico_core.services.executions import NewExecution, new_columns, new_executions, task_messages
from jobico_core.services.packages import VersionInfo

from .test_package import DOC_EXAMPLE

SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(10 ** 30), max_value=10 ** 30)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=12)
# events a schema below says something about (keys it names, values of several types)
EVENTS = JSON | st.fixed_dictionaries({}, optional={
    "age": st.integers(-5, 200) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=3) | st.none(),
    "name": st.text(st.sampled_from("ab1@. "), max_size=6) | st.integers(),
    "tags": st.lists(st.text(max_size=3) | st.integers(), max_size=4),
    "nested": JSON})

SCHEMAS = [
    True, False, {}, {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "any JSON value"},
    {"type": "object", "properties": {"age": {"type": "integer", "minimum": 0}, "name": {"type": "string"}},
     "required": ["age"]},
    {"type": "object", "additionalProperties": False, "properties": {"age": {}, "name": {"maxLength": 3}}},
    {"properties": {"name": {"pattern": "^[ab]+$", "format": "email"}, "tags": {"items": {"type": "string"},
                                                                             "uniqueItems": True}}},
    {"anyOf": [{"type": "array"}, {"type": "object", "required": ["name", "age"]}], "not": {"const": []}},
    {"$defs": {"n": {"anyOf": [{"type": "integer"}, {"type": "array", "items": {"$ref": "#/$defs/n"}}]}},
     "properties": {"nested": {"$ref": "#/$defs/n"}}},
    {"$schema": "http://json-schema.org/draft-07/schema#", "enum": [None, 1, "a", {"age": 1}], "title": "t"},
    {"$schema": "http://json-schema.org/draft-04/schema#", "type": "object", "properties": {
        "age": {"type": "number", "maximum": 100, "exclusiveMaximum": True}}},
]
ANNOTATIONS_ONLY = [
    True, {}, {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "any JSON value"},
    {"$schema": "http://json-schema.org/draft-07/schema#", "$id": "http://x/y.json", "description": "d",
     "definitions": {"never": False}, "examples": [1], "default": {}, "$comment": "c"},
    {"$schema": "https://json-schema.org/draft/2019-09/schema", "$defs": {"no": False}, "deprecated": True,
     "readOnly": True, "writeOnly": False, "$anchor": "here"},
]


@settings(max_examples=300, deadline=None)
@given(st.lists(JSON, max_size=6))
def test_dumps_parsed_each_is_dumps_of_each(values):
    parsed = canonical.loads(json.dumps(values))  # as the webhook has them: parsed from JSON
    assert canonical.dumps_parsed_each(parsed) == [canonical.dumps(v) for v in parsed]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SCHEMAS), st.lists(EVENTS, max_size=5))
def test_elements_errors_are_schema_errors_of_each_element(schema, elements):
    validator = compile_validator(schema)
    expected = {str(i): errs for i, el in enumerate(elements) if (errs := schema_errors(validator, el))}
    assert elements_errors(validator, elements) == expected


def test_a_too_deep_element_is_reported_as_schema_errors_reports_it():
    recursive = {"anyOf": [{"type": "integer"}, {"type": "array", "items": {"$ref": "#"}}]}
    deep = 1
    for _ in range(5000):
        deep = [deep]
    validator = compile_validator(recursive)
    assert elements_errors(validator, [1, deep]) == {"1": schema_errors(validator, deep)} == {
        "1": [{"path": "$", "rule": "depth", "message": "the event is nested too deeply to be validated"}]}


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(ANNOTATIONS_ONLY), EVENTS)
def test_a_schema_of_annotations_only_accepts_everything(schema, element):
    assert accepts_everything(schema)
    assert schema_errors(compile_validator(schema), element) == []


def test_a_schema_with_any_assertion_does_not_accept_everything():
    for schema in [*SCHEMAS[4:], False, {"title": "t", "format": "email"}, {"$ref": "#/$defs/x", "$defs": {"x": {}}},
                   {"$schema": "http://json-schema.org/draft-04/schema#", "id": "x", "not": {}}]:
        assert not accepts_everything(schema), schema


def _info(locks: str = "", priority: str = "") -> VersionInfo:
    lines = "".join(f"      {x}\n" for x in (locks, priority) if x)
    spec = parse_package(DOC_EXAMPLE.replace("      datatype: 0\n", "      datatype: 0\n" + lines, 1))
    return VersionInfo(7, "acme", "greet", 3, spec, {"hello.json": "h", "result.json": "r"})


INFOS = [_info(), _info(locks="locks: [a, b]"), _info(priority="priority: 4")]


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(INFOS), st.lists(st.text(max_size=5), min_size=1, max_size=5), st.sampled_from([None, 2]))
def test_new_executions_rows_are_what_the_constructor_makes(info, payloads, priority):
    rows = new_executions(info, "hello", payloads, submitter="k", trigger="webhook", priority=priority)
    expected = [NewExecution(r.id, "acme", "greet", 3, 7, "hello", info.queue_for("hello"), p, "k", "webhook",
                             locks=info.locks_for("hello"),
                             priority=priority or info.spec.events["hello"].priority)
                for r, p in zip(rows, payloads)]
    assert rows == expected
    fields = [f.name for f in dataclasses.fields(NewExecution)]
    assert all(list(r.__dict__) == fields for r in rows)  # new_columns reads them in this order
    assert [r.id for r in rows] == sorted({r.id for r in rows})
    rows[0].trace_id = "t"  # each row its own values
    assert [r.trace_id for r in rows[1:]] == [None] * (len(rows) - 1)


ROW_CHANGES = st.sampled_from([None, ("locks", "a"), ("flow", '{"c":["k",2]}'), ("priority", 3),
                               ("tenant_id", "other"), ("queue", "jobico.acme.greet.other"), ("event", "x"),
                               ("trace_id", "ab" * 16), ("submitter", None)])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4), ROW_CHANGES), min_size=1, max_size=4), st.integers(1, 5))
def test_columns_and_tasks_read_from_them_are_the_rows(requests, batch):
    """Rows of several requests together (as the group commit hands them to ``enqueue``), some
    changed after their creation: their columns are each row's values, and the tasks read from
    the columns are the tasks found looking at each row, byte for byte."""
    rows: list = []
    for n, change in requests:
        made = new_executions(INFOS[0], "hello", [f'{{"n":{i}}}' for i in range(n)], submitter="k",
                              trigger="webhook")
        if change is not None:
            setattr(made[-1], *change)
        rows += made
    columns = new_columns(rows)
    assert columns == [tuple(getattr(r, f.name) for r in rows) for f in dataclasses.fields(NewExecution)]
    fast, reference = task_messages(rows, batch, columns), task_messages(rows, batch)
    assert fast == reference
    assert [task_envelope(m).split('"delivery_tag"')[0] for m in fast] == \
        [task_envelope(m).split('"delivery_tag"')[0] for m in reference]


def test_rows_that_are_not_all_new_executions_have_no_columns():
    rows = new_executions(INFOS[0], "hello", ["1", "2"], submitter="k", trigger="webhook")
    other = dataclasses.replace(rows[0])
    assert new_columns(rows) is not None and new_columns([*rows, object()]) is None
    assert new_columns([other, *rows]) is not None


IDS = st.uuids().map(str) | st.text(max_size=6) | st.sampled_from(["a'b", 'a"b', "a\\b", "é", "\x7f", "\n"])


@settings(max_examples=300, deadline=None)
@given(st.lists(IDS, min_size=1, max_size=40), st.text(max_size=8), st.integers(0, 3), st.booleans())
def test_a_task_envelope_is_the_text_json_dumps_makes_of_it(ids, payload, retries, batch):
    """``task_envelope`` joins parts of its text itself (a batch's ids, the base64 body): the text
    is still, byte for byte, what ``json.dumps`` writes for the message (and its body), and
    ``argsrepr`` the repr of the arguments cut at 1024 characters."""
    from jobico_core.broker import BatchMessage, TaskMessage
    m = BatchMessage(tuple(ids), "t", "p", "e", "q") if batch else TaskMessage(ids[0], payload, "t", "p", "e", "q")
    args = (list(ids),) if batch else (ids[0], payload)
    text = task_envelope(m, retries)
    envelope = json.loads(text)
    assert json.dumps(envelope) == text
    body = base64.b64decode(envelope["body"]).decode()
    assert json.dumps(json.loads(body)) == body
    assert json.loads(body) == [list(args), {"tenant": "t", "package": "p", "event": "e"},
                                {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    argsrepr = repr(args)
    assert envelope["headers"]["argsrepr"] == (argsrepr if len(argsrepr) <= 1024 else argsrepr[:1021] + "...")
    assert envelope["headers"]["retries"] == retries and envelope["properties"]["delivery_info"]["routing_key"] == "q"
