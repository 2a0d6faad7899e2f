"""Property-based tests (hypothesis) of the three hostile-input surfaces.

(a) the webhook: arbitrary bytes, arbitrary JSON documents and arbitrary ids in the
    URL never produce a 5xx nor a non-JSON body, and the status is one the contract names;
(b) ``parse_package``: arbitrary YAML-ish text and arbitrary nested dicts either parse
    or raise ``Invalid``, never another exception;
(c) canonical JSON: round trip, idempotence, sorted keys, UTF-8, strictness.
"""
from __future__ import annotations

import json
import math
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from jobico_core import canonical
from jobico_core.errors import Invalid
from jobico_core.package import PackageSpec, parse_package

from .helpers import CONTRACT_STATUSES, PACKAGE, assert_error

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies ---------------------------------------------------------------------------
scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
           | st.text(max_size=20))
json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=8), c,
                                                                                        max_size=5),
                           max_leaves=25)
person_like = st.fixed_dictionaries({"name": st.text(max_size=10) | st.integers()},
                                    optional={"age": st.integers() | st.floats(allow_nan=False) | st.none()})
documents = st.one_of(
    json_values,
    st.fixed_dictionaries({"data": json_values}),
    st.fixed_dictionaries({"data": st.lists(json_values | person_like, max_size=25)}),
)


def _mutate(text: str, data) -> str:
    """Delete, duplicate or insert a few characters of a valid text."""
    for _ in range(data.draw(st.integers(0, 4))):
        i = data.draw(st.integers(0, max(len(text) - 1, 0)))
        op = data.draw(st.sampled_from(["del", "dup", "ins"]))
        if op == "del":
            text = text[:i] + text[i + 1:]
        elif op == "dup":
            text = text[:i] + text[i:i + 8] + text[i:]
        else:
            text = text[:i] + data.draw(st.sampled_from(list('[]{}":,\\0e-.\x00\udc80 \t\n'))) + text[i:]
    return text


def _check_webhook_answer(r, n_elements: int | None = None) -> None:
    assert r.status_code in CONTRACT_STATUSES, (r.status_code, r.get_data()[:300])
    assert r.status_code < 500 or r.status_code == 503, r.get_data()[:300]
    assert r.mimetype == "application/json", r.get_data()[:300]
    body = json.loads(r.get_data())
    if r.status_code == 200:
        assert isinstance(body["executions"], list)
        if n_elements is not None:
            assert len(body["executions"]) == n_elements
    else:
        assert_error(r, r.status_code)


# -- (a) the webhook ------------------------------------------------------------------------
@pytest.mark.services
@SETTINGS
@given(body=st.binary(max_size=3000))
@example(body=b"[" * 50_000)
@example(body=b'{"data": [1e999]}')
@example(body=b'{"data": ["\\udfff"]}')
def test_webhook_arbitrary_bytes(world, body):
    _check_webhook_answer(world.post(body))


@pytest.mark.services
@SETTINGS
@given(doc=documents)
def test_webhook_arbitrary_json_documents(world, doc):
    r = world.post(json.dumps(doc))
    n = len(doc["data"]) if isinstance(doc, dict) and isinstance(doc.get("data"), list) else None
    _check_webhook_answer(r, n)
    if r.status_code == 200:
        assert all(isinstance(el, dict) and isinstance(el.get("name"), str) and el["name"] for el in doc["data"])


@pytest.mark.services
@SETTINGS
@given(data=st.data())
def test_webhook_mutated_json_text(world, data):
    text = _mutate(json.dumps({"data": [{"name": "Ada", "age": 3}, {"name": "Bob"}]}), data)
    _check_webhook_answer(world.post(text.encode("utf-8", "surrogatepass")))


@pytest.mark.services
@SETTINGS
@given(tenant=st.text(min_size=1, max_size=80), event=st.text(min_size=1, max_size=80))
@example(tenant="acme", event="..")
@example(tenant="\x00", event="x")
def test_webhook_arbitrary_ids_in_the_url(world, tenant, event):
    url = f"/events/{quote(tenant, safe='')}/{quote(event, safe='')}"
    r = world.client.post(url, data=json.dumps({"data": [{"name": "Ada"}]}),
                          headers={**world.acme.headers, "Content-Type": "application/json"})
    _check_webhook_answer(r)
    if (tenant, event) != ("acme", "person_added"):
        assert r.status_code in (401, 403, 404, 405), r.get_data()[:300]


# -- (b) parse_package ----------------------------------------------------------------------
YAMLISH = st.lists(st.sampled_from(list("abcdeijnqrstu_0123456789:-[]{}&*!|>'\"#%@`,?. \n\t\\") +
                                           ["id", "jobs", "event", "queues", "runtimes", "  ", "- ", ": ",
                                            "!!python/object:os.system", "!!int", "!!timestamp", "2001-13-45",
                                            "&a", "*a", "\u00e9", "\x00", "\ufeff", "---\n", "9" * 5000]),
                   max_size=80).map("".join)
KNOWN_KEYS = st.sampled_from(["id", "name", "tenant", "queues", "jobs", "runtimes", "event", "result", "ok",
                              "error", "schema", "schemaref", "supplierqueue", "runtime", "moduleref",
                              "mainfuncname", "type", "language", "limits", "retries", "datatype", "timeout_ms",
                              "fuel", "package", "ID", "schemaRef", "environment"])
nested = st.recursive(
    scalars | st.sampled_from(["main", "rt", "echo.wasm", "person.json", "e", 0, 1, -1, 10**30]),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(KNOWN_KEYS | st.text(max_size=5), c, max_size=6),
    max_leaves=20)


def _parse_or_invalid(source) -> None:
    try:
        spec = parse_package(source)
    except Invalid as exc:
        assert exc.message and isinstance(exc.errors, dict)
        json.dumps(exc.errors, default=str)  # the API can render it
        return
    assert isinstance(spec, PackageSpec)
    assert PackageSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


@SETTINGS
@given(text=YAMLISH)
@example(text="a: &a [x]\nb: [*a, *a]")
@example(text="id: " + "[" * 5000)
@example(text="runtimes:\n  - id: r\n    type: []\n")
def test_parse_package_yamlish_text(text):
    _parse_or_invalid(text)


@SETTINGS
@given(data=st.data())
def test_parse_package_mutated_valid_package(data):
    _parse_or_invalid(_mutate(PACKAGE, data))


@settings(SETTINGS, max_examples=100)
@given(raw=st.dictionaries(KNOWN_KEYS | st.text(max_size=5), nested, max_size=6))
@example(raw={"id": "p", "runtimes": [{"id": "r", "moduleref": "m.wasm", "type": []}]})
@example(raw={"id": "p", "runtimes": [{"id": "r", "moduleref": "m.wasm", "type": {}}]})
def test_parse_package_nested_dicts(raw):
    _parse_or_invalid(raw)


@SETTINGS
@given(raw=st.fixed_dictionaries({"id": st.just("p"), "queues": st.just([{"id": "main"}]),
                                  "runtimes": st.lists(nested, max_size=2), "jobs": st.lists(nested, max_size=2)}))
def test_parse_package_nested_dicts_in_known_places(raw):
    _parse_or_invalid(raw)


# -- (c) canonical JSON ----------------------------------------------------------------------
@SETTINGS
@given(value=json_values)
def test_canonical_round_trip(value):
    text = canonical.dumps(value)
    assert canonical.loads(text) == value
    assert canonical.loads(text.encode("utf-8")) == value
    assert canonical.dumps(canonical.loads(text)) == text       # idempotent
    assert canonical.dumpb(value) == text.encode("utf-8")


@SETTINGS
@given(value=json_values)
def test_canonical_form_is_compact_sorted_and_utf8(value):
    text = canonical.dumps(value)
    assert text == json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)

    def check_sorted(pairs):
        keys = [k for k, _ in pairs]
        assert keys == sorted(keys)
        return dict(pairs)
    json.loads(text, object_pairs_hook=check_sorted)
    for s in _strings(value):  # non-ASCII is written as itself, never as \u escapes
        if s and all(ord(ch) >= 0x80 for ch in s):
            assert s in text


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)


@SETTINGS
@given(value=json_values, token=st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e999",
                                                 '"\\ud800"', '"\\udfff"']))
def test_canonical_loads_refuses_what_dumps_cannot_write(value, token):
    text = "[" + canonical.dumps(value) + "," + token + "]"
    with pytest.raises(ValueError):
        canonical.loads(text)


@SETTINGS
@given(value=st.floats(allow_nan=False, allow_infinity=False) | st.integers(min_value=-10**300,
                                                                              max_value=10**300))
def test_canonical_numbers_keep_their_value(value):
    back = canonical.loads(canonical.dumps(value))
    assert back == value and type(back) is type(value)
    if isinstance(value, float):
        assert math.copysign(1, back) == math.copysign(1, value)


def test_zz_world_intact(world):
    world.assert_intact()
