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


def test_priorities_are_parsed_and_the_header_is_bounded_by_the_package():
    from jobico_core.flow import request_priority
    spec = parse_package(_with("priority: 9").replace("tenant: acme", "tenant: acme\nmax_priority: 5"))
    assert (spec.events["hello"].priority, spec.max_priority) == (9, 5)
    back = PackageSpec.from_dict(spec.to_dict())
    assert (back.events["hello"].priority, back.max_priority) == (9, 5)
    assert parse_package(DOC_EXAMPLE).events["hello"].priority is None
    for bad in ("priority: 0", "priority: 11", "priority: high", "priority: true"):
        assert any(p["path"] == "jobs[0].event.priority" and "from 1 (lowest) to 10" in p["message"]
                   for p in _problems(_with(bad))), bad
    assert any(p["path"] == "max_priority" for p in _problems(DOC_EXAMPLE.replace("tenant: acme",
                                                                                  "max_priority: 0")))
    assert request_priority(None, 9, 5) == 9 and request_priority(" 4 ", 9, 5) == 4
    assert request_priority(None, None, 10) is None
    for bad in ("6", "0", "-1", "x", ""):
        with pytest.raises(ValueError, match="X-Jobico-Priority must be an integer from 1 to 5"):
            request_priority(bad, 9, 5)


def test_a_priority_step_is_worth_age_seconds_of_waiting():
    from jobico_core.ids import uuid7
    from jobico_core.priority import score
    now = uuid7()
    ms = int(now.replace("-", "")[:12], 16)
    older = f"{ms - 30_000:012x}" + now.replace("-", "")[12:]
    older = f"{older[:8]}-{older[8:12]}-{older[12:16]}-{older[16:20]}-{older[20:]}"
    assert score(older, 1, 10) < score(now, 3, 10)     # waited 30 s: worth 3 steps, passes a newer +2
    assert score(now, 5, 10) < score(older, 1, 10)     # but not a newer +4
    assert score(now, 2, 10) < score(now, 1, 10)


def test_a_schedules_payload_must_have_the_keys_path():
    src = _with("concurrency: {key: $.region, limit: 1}\nschedule: {cron: '0 * * * *', payload: {zone: eu}}")
    assert any(p["path"] == "jobs[0].event.schedule.payload" and "$.region" in p["message"]
               for p in _problems(src))
    ok = src.replace("payload: {zone: eu}", "payload: {region: eu}")
    assert parse_package(ok).events["hello"].flow["concurrency"]["limit"] == 1
