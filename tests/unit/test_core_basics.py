"""Canonical JSON, UUIDv7 ids, names and settings."""
from __future__ import annotations

import uuid

import pytest

from jobico_core import canonical
from jobico_core.ids import uuid7, uuid7s
from jobico_core.names import file_name_problem, name_problem, queue_name
from jobico_core.settings import ConfigError, Settings


def test_canonical_json_is_compact_sorted_utf8():
    assert canonical.dumps({"b": 1, "a": {"d": [1, 2.5], "c": "é<>&"}}) == '{"a":{"c":"é<>&","d":[1,2.5]},"b":1}'
    big = 12345678901234567890123
    assert canonical.dumps(canonical.loads(f'{{"n": {big}}}')) == f'{{"n":{big}}}'


@pytest.mark.parametrize("text", [
    '{"b": 1, "a": {"d": [1, 2.5e300, -0.0, 1e-7], "c": "é<>&\\u2028\\n\\"\\\\", "e": {}}}', '"x"', "1", "null",
    "true", "[]", "12345678901234567890123", '"\\ud83d\\ude00 ✓"', "[" * 200 + "]" * 200,
    '{"z": [{"y": null, "x": false}], "A": 0, "a": -1}'])
def test_dumps_parsed_is_dumps_of_parsed_json(text):
    value = canonical.loads(text)
    assert canonical.dumps_parsed(value) == canonical.dumps(value)


@pytest.mark.parametrize("text", ['{"a": NaN}', '[Infinity]', '{"a": -Infinity}'])
def test_non_json_constants_refused(text):
    with pytest.raises(ValueError):
        canonical.loads(text)


def test_invalid_utf8_refused():
    with pytest.raises(UnicodeDecodeError):
        canonical.loads(b'{"a": "\xff"}')


def test_uuid7_is_version_7_and_time_ordered():
    ids = [uuid7() for _ in range(5000)]
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_uuid7s_draws_many_in_order_past_the_millisecond_counter():
    # 5,000 ids in one draw overflow the 12-bit counter: they borrow following milliseconds
    ids = [uuid7(), *uuid7s(5000), *uuid7s(1), uuid7()]
    parsed = [uuid.UUID(i) for i in ids]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 and str(u) == i for u, i in zip(parsed, ids))
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert len({i[:13] for i in ids}) >= 2  # more than one millisecond stamp
    assert len({i[-12:] for i in ids}) == len(ids)  # the random tail differs between ids drawn together
    assert uuid7s(0) == []


def test_names():
    assert name_problem("tenant_1") is None and name_problem("event_id_1_ok") is None
    assert name_problem("a" * 64) is None
    for bad in ("", "a" * 65, "_x", "a b", "a/b", "ü", ".."):
        assert name_problem(bad) is not None, bad
    assert file_name_problem("../x.wasm") and file_name_problem("a/b.wasm") and not file_name_problem("echo.wasm")
    assert queue_name("t", "p", "q") == "jobico.t.p.q"


def test_settings_refuse_production_without_secrets():
    with pytest.raises(ConfigError, match="JOBICO_ADMIN_TOKEN is not set.*JOBICO_SECRET_KEY is not set"):
        Settings.from_env({}).check()
    Settings.from_env({"JOBICO_EMBEDDED": "1"}).check()
    ok = Settings.from_env({"JOBICO_ADMIN_TOKEN": "x" * 20, "JOBICO_SECRET_KEY": "y" * 20}).check()
    assert ok.api_port == 8080 and ok.database_url.startswith("sqlite:///")


def test_settings_bad_values_are_named():
    with pytest.raises(ConfigError, match="JOBICO_API_PORT='eighty'"):
        Settings.from_env({"JOBICO_API_PORT": "eighty"})
    with pytest.raises(ConfigError, match="JOBICO_MAX_ELEMENT_KB"):
        Settings.from_env({"JOBICO_EMBEDDED": "1", "JOBICO_MAX_ELEMENT_KB": "100000"}).check()


def test_settings_of_ports_and_mqtt_are_checked():
    emb = {"JOBICO_EMBEDDED": "1"}
    s = Settings.from_env({**emb, "JOBICO_GATEWAY_PORT": "8081", "JOBICO_API_HOST": "0.0.0.0"}).check()
    assert (s.gateway_port, s.gateway_host, s.mqtt_url, s.mqtt_prefix) == (8081, "0.0.0.0", "", "jobico")
    assert Settings.from_env(emb).gateway_port is None
    with pytest.raises(ConfigError, match="JOBICO_GATEWAY_PORT \\(8080\\) must differ"):
        Settings.from_env({**emb, "JOBICO_GATEWAY_PORT": "8080"}).check()
    with pytest.raises(ConfigError, match="JOBICO_GATEWAY_PORT='x'"):
        Settings.from_env({**emb, "JOBICO_GATEWAY_PORT": "x"})
    with pytest.raises(ConfigError, match="JOBICO_MQTT_URL must start with mqtt://"):
        Settings.from_env({**emb, "JOBICO_MQTT_URL": "http://broker"}).check()
    with pytest.raises(ConfigError, match="JOBICO_MQTT_PREFIX must be a topic without wildcards"):
        Settings.from_env({**emb, "JOBICO_MQTT_PREFIX": "a/#"}).check()
    s = Settings.from_env({**emb, "JOBICO_MQTT_URL": "mqtts://u:p@b", "JOBICO_MQTT_PREFIX": "org/devices"}).check()
    assert s.mqtt_prefix == "org/devices" and s.mqtt_client_id == "jobico-bridge" and s.mqtt_refresh == 5


def test_limit_overrides_from_env():
    s = Settings.from_env({"JOBICO_EMBEDDED": "1", "JOBICO_LIMIT_TIMEOUT_MS": "250", "JOBICO_MAX_FUEL": "1000"})
    assert s.default_limits.timeout_ms == 250
    assert s.max_limits.fuel == 1000


def test_python_limits_and_cache_from_env(tmp_path):
    from jobico_core.limits import DEFAULT_LIMITS, MAX_LIMITS, PYTHON_DEFAULT_LIMITS, defaults_for
    assert defaults_for("python") is PYTHON_DEFAULT_LIMITS and defaults_for("wasm") is DEFAULT_LIMITS
    for key in PYTHON_DEFAULT_LIMITS.KEYS:  # the Python defaults fit the shared maxima
        assert getattr(PYTHON_DEFAULT_LIMITS, key) <= getattr(MAX_LIMITS, key), key
    assert PYTHON_DEFAULT_LIMITS.memory_mb > DEFAULT_LIMITS.memory_mb
    s = Settings.from_env({"JOBICO_EMBEDDED": "1", "JOBICO_CACHE_DIR": str(tmp_path / "c"),
                           "JOBICO_PYTHON_LIMIT_MEMORY_MB": "300", "JOBICO_LIMIT_MEMORY_MB": "32"})
    assert s.default_limits_for("python").memory_mb == 300
    assert s.default_limits_for("python").timeout_ms == PYTHON_DEFAULT_LIMITS.timeout_ms
    assert s.default_limits_for("wasm").memory_mb == 32
    assert s.python_cache_dir == tmp_path / "c" / "compiled" and s.python_prepare
    s = Settings.from_env({"JOBICO_EMBEDDED": "1", "JOBICO_PYTHON_CACHE_DIR": str(tmp_path / "py"),
                           "JOBICO_PYTHON_PREPARE": "0"})
    assert s.python_cache_dir == tmp_path / "py" and not s.python_prepare
    with pytest.raises(ConfigError, match="JOBICO_PYTHON_LIMIT_"):
        Settings.from_env({"JOBICO_EMBEDDED": "1", "JOBICO_PYTHON_LIMIT_NOPE": "1"}).check()


def test_ttl_cache_expires_and_can_be_off():
    from jobico_core.cache import TTLCache
    now = [0.0]
    c = TTLCache(5, size=2, clock=lambda: now[0])
    c.put("a", 1)
    now[0] = 4.9
    assert c.get("a") == 1
    now[0] = 5.0
    assert c.get("a") is None
    c.put("a", 1), c.put("b", 2), c.put("c", 3)  # bounded: the oldest goes
    assert (c.get("a"), c.get("b"), c.get("c")) == (None, 2, 3)
    c.clear()
    assert c.get("b") is None
    off = TTLCache(0)
    off.put("a", 1)
    assert off.get("a") is None


def test_webhook_cache_setting():
    import pytest

    from jobico_core.settings import ConfigError, Settings
    assert Settings.from_env({}).webhook_cache_seconds == 5.0
    assert Settings.from_env({"JOBICO_WEBHOOK_CACHE_SECONDS": "0"}).webhook_cache_seconds == 0.0
    for bad in ("-1", "nan", "soon", "7200"):
        with pytest.raises(ConfigError, match="JOBICO_WEBHOOK_CACHE_SECONDS"):
            Settings.from_env({"JOBICO_WEBHOOK_CACHE_SECONDS": bad})


def test_batch_budget_fits_the_visibility_timeout():
    from jobico_core.settings import Settings
    s = Settings.from_env({})
    assert s.batch_budget_s == 1.0  # JOBICO_TASK_BATCH_MS
    s = Settings.from_env({"JOBICO_VISIBILITY_TIMEOUT": "5", "JOBICO_MAX_TIMEOUT_MS": "2000"})
    assert s.batch_budget_s == 0.5  # 5/2 - 2
    s = Settings.from_env({"JOBICO_VISIBILITY_TIMEOUT": "5", "JOBICO_MAX_TIMEOUT_MS": "2500"})
    assert s.batch_budget_s == 0.0  # one execution per batch task, then the rest goes back


def test_task_messages_group_a_request_into_bounded_batches():
    from types import SimpleNamespace as R

    from jobico_core.broker import BatchMessage, TaskMessage
    from jobico_core.services.executions import task_messages
    rows = [R(id=f"i{n}", tenant_id="t", package="p", event="e" if n < 5 else "f", queue="q", payload="{}",
              locks=None, flow=None, priority=None, trace_id=None, trace_parent=None) for n in range(7)]
    msgs = task_messages(rows, 2)
    assert [type(m) for m in msgs] == [BatchMessage, BatchMessage, TaskMessage, BatchMessage]
    assert [m.execution_ids if isinstance(m, BatchMessage) else m.execution_id for m in msgs] == \
        [("i0", "i1"), ("i2", "i3"), "i4", ("i5", "i6")]
    assert [type(m) for m in task_messages(rows[:1], 100)] == [TaskMessage]
    # executions with named locks each take them before their claim: never batched
    locked = [R(id=f"l{n}", tenant_id="t", package="p", event="g", queue="q", payload="{}", locks="a,b",
                flow=None, priority=None, trace_id=None, trace_parent=None) for n in range(3)]
    msgs = task_messages(rows[:2] + locked + rows[2:4], 100)
    assert [m.execution_ids if isinstance(m, BatchMessage) else m.execution_id for m in msgs] == \
        [("i0", "i1"), "l0", "l1", "l2", ("i2", "i3")]
    assert [m.locks for m in msgs[1:4]] == [("a", "b")] * 3
    # so do executions with flow control (jobico_worker.flow passes it before the claim)
    flowing = [R(id=f"c{n}", tenant_id="t", package="p", event="e", queue="q", payload="{}", locks=None,
                 flow='{"c":["k",2]}', priority=None, trace_id=None, trace_parent=None) for n in range(2)]
    msgs = task_messages(rows[:2] + flowing + rows[2:4], 100)
    assert [m.execution_ids if isinstance(m, BatchMessage) else m.execution_id for m in msgs] == \
        [("i0", "i1"), "c0", "c1", ("i2", "i3")]
    assert [m.flow for m in msgs[1:3]] == ['{"c":["k",2]}'] * 2
