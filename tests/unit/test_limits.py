"""jobico_core.limits: defaults, validation, merging and maxima."""
import dataclasses

import pytest

from jobico_core.limits import DEFAULT_LIMITS, MAX_LIMITS, Limits, limits_from_mapping, resolve


def test_keys_match_fields_and_job_definition():
    assert Limits.KEYS == ("timeout_ms", "fuel", "memory_mb", "stack_kb", "input_kb",
                           "result_kb", "log_records", "log_kb", "stdout_kb")
    assert tuple(f.name for f in dataclasses.fields(Limits)) == Limits.KEYS


def test_defaults_are_within_maxima_and_strict():
    for key in Limits.KEYS:
        assert 0 < getattr(DEFAULT_LIMITS, key) <= getattr(MAX_LIMITS, key), key
    assert Limits() == DEFAULT_LIMITS
    assert DEFAULT_LIMITS.input_kb == 128 and DEFAULT_LIMITS.memory_mb <= 128


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Limits().fuel = 1  # type: ignore[misc]


def test_byte_properties():
    lim = Limits(memory_mb=2, input_kb=3, result_kb=4, log_kb=5, stdout_kb=6, stack_kb=7)
    assert (lim.memory_bytes, lim.input_bytes, lim.result_bytes, lim.log_bytes, lim.stdout_bytes, lim.stack_bytes) == \
        (2 << 20, 3 << 10, 4 << 10, 5 << 10, 6 << 10, 7 << 10)


def test_from_mapping_overrides_only_given_keys():
    lim = Limits.from_mapping({"timeout_ms": 250, "memory_mb": 16})
    assert lim.timeout_ms == 250 and lim.memory_mb == 16
    assert lim.fuel == DEFAULT_LIMITS.fuel
    assert limits_from_mapping(None) == DEFAULT_LIMITS
    assert Limits.from_mapping({}, base=Limits(fuel=5)).fuel == 5


@pytest.mark.parametrize("mapping, words", [
    ({"timeout": 5}, ["unknown limit", "'timeout'", "timeout_ms"]),
    ({"fuel": 0}, ["'fuel'", "positive"]),
    ({"memory_mb": -1}, ["'memory_mb'", "positive"]),
    ({"stack_kb": 1.5}, ["'stack_kb'", "integer"]),
    ({"input_kb": "128"}, ["'input_kb'", "integer"]),
    ({"log_records": True}, ["'log_records'", "integer"]),
    ({"stdout_kb": None}, ["'stdout_kb'"]),
])
def test_from_mapping_refuses_bad_values_naming_the_key(mapping, words):
    with pytest.raises(ValueError) as exc:
        Limits.from_mapping(mapping)
    for w in words:
        assert w in str(exc.value)


def test_from_mapping_refuses_non_mapping():
    with pytest.raises(ValueError, match="mapping"):
        Limits.from_mapping([("fuel", 1)])  # type: ignore[arg-type]


def test_constructor_validates_too():
    with pytest.raises(ValueError, match="'fuel'"):
        Limits(fuel=0)


def test_resolve_merges_runtime_then_event():
    lim = resolve(None, None, {"timeout_ms": 2000, "fuel": 10}, {"timeout_ms": 3000}, None)
    assert lim.timeout_ms == 3000 and lim.fuel == 10
    assert lim.memory_mb == DEFAULT_LIMITS.memory_mb
    assert Limits.resolve(Limits(fuel=7), MAX_LIMITS) == Limits(fuel=7)


def test_resolve_refuses_above_maximum_naming_key_value_and_maximum():
    maxima = Limits(timeout_ms=5000, memory_mb=32)
    with pytest.raises(ValueError) as exc:
        resolve(DEFAULT_LIMITS, maxima, {"memory_mb": 64})
    msg = str(exc.value)
    assert "'memory_mb'" in msg and "64" in msg and "32" in msg
    with pytest.raises(ValueError, match="timeout_ms"):
        resolve(None, {"timeout_ms": 5000}, {"fuel": 1}, {"timeout_ms": 5001})
    with pytest.raises(ValueError, match="unknown limit"):
        resolve(None, None, {"bogus": 1})


def test_resolve_clamps_defaults_to_lowered_maxima():
    lim = resolve(Limits(memory_mb=64), Limits(memory_mb=16))
    assert lim.memory_mb == 16


def test_as_dict_roundtrip():
    lim = Limits(fuel=123)
    assert Limits.from_mapping(lim.as_dict()) == lim
