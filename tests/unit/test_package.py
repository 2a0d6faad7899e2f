"""The package YAML: both dialects, every validation rule, safe YAML."""
from __future__ import annotations

from pathlib import Path

import pytest

from jobico_core.errors import Invalid
from jobico_core.package import PackageSpec, parse_package

ROOT = Path(__file__).resolve().parents[2]

DOC_EXAMPLE = """
name: greetings            # optional
id: greet                  # package id, unique within the tenant
tenant: acme               # tenant id
queues:
  - id: main
    name: main queue
jobs:
  - event:
      id: hello
      name: say hello
      datatype: 0
      schema:
        id: hello-schema
        name: hello schema
        schemaref: hello.json
      supplierqueue: main
      runtime: greeter
    result:
      ok:
        id: hello_ok
        schema: {id: s2, schemaref: result.json}
        supplierqueue: main
        runtime: greeter
      error:
        id: hello_err
        schema: {id: s3, schemaref: result.json}
        supplierqueue: main
        runtime: greeter
runtimes:
  - id: greeter
    name: greet.wasm
    moduleref: greet.wasm
    mainfuncname: event
    type: 0
"""


def problems(source) -> list[dict]:
    with pytest.raises(Invalid) as exc:
        parse_package(source)
    assert exc.value.status == 422
    return exc.value.errors["package"]


def test_the_documented_example_parses():
    spec = parse_package(DOC_EXAMPLE)
    assert spec.id == "greet" and spec.tenant == "acme"
    assert set(spec.events) == {"hello", "hello_ok", "hello_err"}
    assert spec.events["hello"].ok == "hello_ok" and spec.events["hello"].error == "hello_err"
    assert spec.runtimes["greeter"].moduleref == "greet.wasm"
    assert spec.runtimes["greeter"].language == "wasm"
    assert spec.schema_files() == {"hello.json", "result.json"}
    assert PackageSpec.from_dict(spec.to_dict()) == spec


def test_camel_case_dialect():
    spec = parse_package("""
package:
  ID: p1
  Name: camel
  Queues: [{ID: q}]
  Jobs:
    - Event: {ID: e1, DataType: 0, Schema: {ID: s, SchemaRef: s.json}, SupplierQueue: q, Runtime: r}
  Runtimes: [{ID: r, ModuleRef: m.wasm, MainFuncName: handle, Type: 0}]
""")
    assert spec.id == "p1" and spec.events["e1"].supplierqueue == "q"
    assert spec.runtimes["r"].mainfuncname == "handle"


def test_examples_in_repo_parse():
    paths = sorted((ROOT / "examples" / "packages").glob("*.yaml"))
    assert len(paths) >= 5, paths   # hello, cron, locks, mqtt, secrets
    for path in paths:
        assert parse_package(path.read_text()).events, path


def test_unknown_key_names_path_and_closest_key():
    items = problems(DOC_EXAMPLE.replace("supplierqueue: main\n      runtime: greeter\n    result",
                                         "supplierqeue: main\n      runtime: greeter\n    result"))
    assert items[0]["path"] == "jobs[0].event.supplierqeue"
    assert "did you mean 'supplierqueue'" in items[0]["message"]


def test_undefined_runtime_and_queue_are_named():
    source = DOC_EXAMPLE.replace("runtime: greeter\n    result", "runtime: greetr\n    result")
    items = problems(source.replace("supplierqueue: main\n      runtime: greetr",
                                    "supplierqueue: mian\n      runtime: greetr"))
    messages = " | ".join(i["message"] for i in items)
    assert "runtime 'greetr' is not defined" in messages and "did you mean 'greeter'" in messages
    assert "queue 'mian' is not defined" in messages


@pytest.mark.parametrize("bad_id", ["has space", "-lead", "", "x" * 65, "a/b", "../etc"])
def test_bad_ids_cite_the_rule(bad_id):
    items = problems(DOC_EXAMPLE.replace("id: greet ", f"id: {bad_id!r} "))
    assert any("A-Za-z0-9" in i["message"] for i in items)


def test_yaml_aliases_are_refused():
    bomb = "a: &a [x, x, x]\nb: &b [*a, *a, *a]\nc: [*b, *b, *b]\n"
    items = problems(bomb)
    assert "alias" in items[0]["message"]


def test_duplicate_keys_and_multiple_documents_are_refused():
    assert "duplicate key" in problems("id: a\nid: b\n")[0]["message"]
    with pytest.raises(Invalid, match="exactly one YAML document"):
        parse_package("id: a\n---\nid: b\n")


def test_not_yaml_reports_line():
    with pytest.raises(Invalid, match=r"not valid YAML \(line 3, column 1\)"):
        parse_package("id: a\nqueues: [\n")


def test_event_defined_twice():
    twice = DOC_EXAMPLE.replace("id: hello_ok", "id: hello")
    assert any("defined twice" in i["message"] for i in problems(twice))


def _with_locks(value: str) -> str:
    return DOC_EXAMPLE.replace("      datatype: 0\n", f"      datatype: 0\n      locks: {value}\n", 1)


def test_locks_are_parsed_sorted_and_checked():
    spec = parse_package(_with_locks("[prod-db, deploy.env]"))
    assert spec.events["hello"].locks == ["deploy.env", "prod-db"]  # the order every worker takes them in
    assert parse_package(_with_locks("single")).events["hello"].locks == ["single"]
    assert PackageSpec.from_dict(spec.to_dict()).events["hello"].locks == ["deploy.env", "prod-db"]
    assert parse_package(DOC_EXAMPLE).events["hello"].locks == []
    for bad, where, message in (("[]", "locks", "non-empty list"), ("[a, a]", "locks[1]", "named twice"),
                                ("['a b']", "locks[0]", "is not valid"), ("{a: 1}", "locks", "non-empty list"),
                                (str([f"l{i}" for i in range(9)]), "locks", "at most 8")):
        found = problems(_with_locks(bad))
        assert any(i["path"].endswith(where) and message in i["message"] for i in found), (bad, found)


def test_limits_within_platform_maxima():
    ok = DOC_EXAMPLE.replace("    type: 0\n", "    type: 0\n    limits: {timeout_ms: 500, memory_mb: 16}\n")
    assert parse_package(ok).runtimes["greeter"].limits == {"timeout_ms": 500, "memory_mb": 16}
    too_much = DOC_EXAMPLE.replace("    type: 0\n", "    type: 0\n    limits: {memory_mb: 999999}\n")
    assert any("exceeds the platform maximum" in i["message"] for i in problems(too_much))
    typo = DOC_EXAMPLE.replace("    type: 0\n", "    type: 0\n    limits: {timeout: 5}\n")
    assert any("did you mean 'timeout_ms'" in i["message"] for i in problems(typo))


def test_chained_reference_to_a_job_event():
    src = """
id: p
queues: [{id: q}]
jobs:
  - event: {id: a, schema: {id: s, schemaref: s.json}, supplierqueue: q, runtime: r}
    result: {ok: {id: b}}
  - event: {id: b, schema: {id: s, schemaref: s.json}, supplierqueue: q, runtime: r}
runtimes: [{id: r, moduleref: m.wasm}]
"""
    spec = parse_package(src)
    assert spec.events["a"].ok == "b"
    assert any("'zz' is not defined" in i["message"] for i in problems(src.replace("{ok: {id: b}}", "{ok: {id: zz}}")))


def test_runtime_type_and_language_select_python_or_are_refused():
    assert parse_package(DOC_EXAMPLE.replace(" type: 0", " type: 1")).runtimes["greeter"].language == "python"
    assert parse_package(DOC_EXAMPLE.replace(" type: 0", " language: python")).runtimes["greeter"].language == "python"
    assert parse_package(DOC_EXAMPLE.replace(" type: 0", " type: 1\n    language: python")
                         ).runtimes["greeter"].language == "python"
    assert parse_package(DOC_EXAMPLE).runtimes["greeter"].language == "wasm"
    assert any("contradicts" in i["message"]
               for i in problems(DOC_EXAMPLE.replace(" type: 0", " type: 0\n    language: python")))
    assert any("not known" in i["message"] for i in problems(DOC_EXAMPLE.replace(" type: 0", " type: 7")))
    assert any("'ruby' is not known" in i["message"]
               for i in problems(DOC_EXAMPLE.replace(" type: 0", " language: ruby")))


def test_published_json_schema_agrees_with_the_parser():
    import json

    import jsonschema
    import yaml

    schema = json.loads((ROOT / "docs" / "package.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    examples = [p for d in ("packages", "python") for p in (ROOT / "examples" / d).glob("*.yaml")]
    for source in [DOC_EXAMPLE, *(p.read_text() for p in examples)]:
        doc = yaml.safe_load(source)
        parse_package(source)
        assert not list(validator.iter_errors(doc)), source
    for bad in (DOC_EXAMPLE.replace("supplierqueue: main\n      runtime: greeter\n    result",
                                    "supplierqeue: main\n      runtime: greeter\n    result"),
                DOC_EXAMPLE.replace("id: greet ", "id: 'bad id' ")):
        with pytest.raises(Invalid):
            parse_package(bad)
        assert list(validator.iter_errors(yaml.safe_load(bad)))
