"""Flow control per key (concurrency, rate_limit, debounce): the package syntax, its precise
errors, and the key each payload gets."""
from __future__ import annotations

import json

import pytest

from jobico_core.errors import Invalid
from jobico_core.flow import flow_record, key_value, leases, missing_keys, resolve
from jobico_core.package import PackageSpec, parse_package

from .test_package import DOC_EXAMPLE


def _with(lines: str) -> str:
    return DOC_EXAMPLE.replace("      datatype: 0\n", "      datatype: 0\n" + "".join(
        f"      {line}\n" for line in lines.splitlines()), 1)


def _problems(src: str) -> list[dict]:
    with pytest.raises(Invalid) as e:
        parse_package(src)
    return e.value.errors["package"]


def test_declarations_are_parsed_normalised_and_kept():
    spec = parse_package(_with("concurrency: {key: $.customer.id, limit: 2}\n"
                               "rate_limit: {key: all, per_second: 2.5}\n"
                               "debounce: {key: '$.items[0].sku', seconds: 5}"))
    flow = spec.events["hello"].flow
    assert flow == {"concurrency": {"key": "$.customer.id", "limit": 2},
                    "rate_limit": {"key": "all", "per_second": 2.5, "burst": 1},
                    "debounce": {"key": "$.items[0].sku", "seconds": 5}}
    assert PackageSpec.from_dict(spec.to_dict()).events["hello"].flow == flow
    assert parse_package(DOC_EXAMPLE).events["hello"].flow == {}
    # the camel-case dialect takes them too
    camel = parse_package({"package": {"ID": "p", "queues": [{"ID": "q"}],
                                       "runtimes": [{"ID": "r", "moduleRef": "m.wasm"}],
                                       "jobs": [{"event": {"ID": "e", "schema": {"ID": "s", "schemaRef": "s.json"},
                                                           "supplierQueue": "q", "runtime": "r",
                                                           "concurrency": {"key": "k", "limit": 1}}}]}})
    assert camel.events["e"].flow == {"concurrency": {"key": "k", "limit": 1}}


@pytest.mark.parametrize("lines, where, message", [
    ("concurrency: 3", "concurrency", "must be a mapping"),
    ("concurrency: {key: k}", "concurrency.limit", "'limit' is required"),
    ("concurrency: {key: k, limit: 0}", "concurrency.limit", "from 1 to 1000"),
    ("concurrency: {key: k, limit: true}", "concurrency.limit", "an integer"),
    ("concurrency: {limit: 2}", "concurrency.key", "JSONPath into the payload"),
    ("concurrency: {key: '$.a[*]', limit: 2}", "concurrency.key", "not a supported JSONPath"),
    ("concurrency: {key: '$..a', limit: 2}", "concurrency.key", "not a supported JSONPath"),
    ("concurrency: {key: '$', limit: 2}", "concurrency.key", "not a supported JSONPath"),
    ("concurrency: {key: k, limit: 2, max: 3}", "concurrency.max", "unknown key 'max'"),
    ("rate_limit: {key: k, per_second: 0}", "rate_limit.per_second", "from 0.001 to 10000"),
    ("rate_limit: {key: k, per_second: 1, burst: 0}", "rate_limit.burst", "from 1 to 10000"),
    ("debounce: {key: k, seconds: 99999}", "debounce.seconds", "from 0.1 to 3600"),
    ("debounce: {key: k}", "debounce.seconds", "'seconds' is required"),
    ("priority: 5", "priority", "reserved for event priorities"),
    ("concurency: {key: k, limit: 1}", "concurency", "did you mean 'concurrency'"),
])
def test_each_mistake_is_named_with_its_path(lines, where, message):
    found = _problems(_with(lines))
    assert any(p["path"] == f"jobs[0].event.{where}" and message in p["message"] for p in found), found


def test_keys_from_the_payload():
    el = {"customer": {"id": "c-1", "n": 7}, "items": [{"sku": "A"}], "flag": True}
    assert key_value("$.customer.id", el) == "c-1"
    assert key_value("$.customer.n", el) == "7"                 # other JSON values as canonical JSON
    assert key_value("$.items[0].sku", el) == "A"
    assert key_value("$.customer", el) == '{"id":"c-1","n":7}'
    assert key_value("fixed", el) == "fixed"
    assert key_value("$.items[1].sku", el) is None and key_value("$.nope", el) is None
    assert key_value("$.customer.id.x", el) is None
    assert key_value("$.k", {"k": "x" * 500}).startswith("sha256:")  # long keys are hashed
    flow = {"concurrency": {"key": "$.customer.id", "limit": 2}, "debounce": {"key": "$.missing", "seconds": 1}}
    assert missing_keys(flow, el) == ["$.missing"]
    column = resolve(flow, el)
    assert json.loads(column) == {"c": ["c-1", 2], "d": ["", 1]}   # a chained event lacking the path: key ""
    assert flow_record(column) == {"concurrency": {"key": "c-1", "limit": 2}, "debounce": {"key": "", "seconds": 1}}
    assert resolve({}, el) is None and flow_record(None) is None


def test_the_concurrency_key_is_a_counted_lease_beside_the_named_locks():
    assert leases("p", "e", ("db",), None) == (("db",), {})
    column = resolve({"concurrency": {"key": "$.c", "limit": 3}}, {"c": "x"})
    assert leases("p", "e", ("db",), column) == (("db", "concurrency/p/e/x"), {"concurrency/p/e/x": 3})
