"""MQTT topic filters of `mqtt:` triggers: checks, matching, overlap, namespaces, broker URL."""
from __future__ import annotations

import pytest

from jobico_core.mqtt import BrokerAddress, TopicError, check_filter, matches, overlaps, split_topic
from jobico_core.package import parse_package

BASE = """
id: p
queues: [{id: main}]
jobs:
  - event: {id: a, schema: {id: s, schemaref: s.json}, supplierqueue: main, runtime: r, mqtt: {topic: %s}}
  - event: {id: b, schema: {id: s, schemaref: s.json}, supplierqueue: main, runtime: r, mqtt: %s}
runtimes: [{id: r, moduleref: m.wasm}]
"""


@pytest.mark.parametrize("topic", ["a", "a/b/c", "+", "#", "a/+/c", "a/#", "+/+/#", "sensors/température",
                                   "a b/c"])
def test_valid_filters(topic):
    assert check_filter(topic) == topic


@pytest.mark.parametrize("topic, words", [
    ("", "non-empty"), ("/a", "empty level"), ("a/", "empty level"), ("a//b", "empty level"),
    ("a#", "stand alone"), ("a/b+", "stand alone"), ("#/a", "last level"), ("$SYS/x", "starts with"),
    ("a\x00b", "control"), ("a\nb", "control"), ("a/" * 17 + "a", "levels"), ("x" * 201, "longer"),
    (7, "non-empty"), (None, "non-empty"),
])
def test_invalid_filters_say_why(topic, words):
    with pytest.raises(TopicError, match=words):
        check_filter(topic)


@pytest.mark.parametrize("flt, topic, expected", [
    ("a/b", "a/b", True), ("a/b", "a/c", False), ("a/+", "a/b", True), ("a/+", "a/b/c", False),
    ("a/+", "a", False), ("a/#", "a", True), ("a/#", "a/b/c", True), ("#", "x/y", True),
    ("+/b", "a/b", True), ("a/+/c", "a/x/c", True), ("a/+/c", "a/x/d", False), ("a", "a/b", False),
])
def test_matching(flt, topic, expected):
    assert matches(flt, topic) is expected


@pytest.mark.parametrize("a, b, expected", [
    ("a/b", "a/b", True), ("a/b", "a/c", False), ("a/+", "a/b", True), ("a/+", "+/b", True),
    ("a/#", "a", True), ("a/#", "b/#", False), ("#", "anything/at/all", True), ("a/+", "a/b/c", False),
    ("a/+/c", "a/b/+", True), ("a/+/c", "a/b/d", False), ("x", "x/y", False),
])
def test_overlap_is_symmetric_and_exact(a, b, expected):
    assert overlaps(a, b) is expected and overlaps(b, a) is expected


def test_namespace_split():
    assert split_topic("jobico", "jobico/acme/sensors/1") == ("acme", "sensors/1")
    assert split_topic("jobico", "jobico/acme") is None
    assert split_topic("jobico", "other/acme/x") is None
    assert split_topic("a/b", "a/b/t/x/y") == ("t", "x/y")


def test_overlapping_topics_in_one_package_are_refused_naming_both():
    from jobico_core.errors import Invalid
    spec = parse_package(BASE % ("'s/+/t'", "'s/x/u'"))
    assert spec.events["a"].mqtt.topic == "s/+/t" and spec.events["a"].mqtt.qos == 1
    assert spec.events["b"].mqtt.topic == "s/x/u"
    with pytest.raises(Invalid) as err:
        parse_package(BASE % ("'s/#'", "{topic: s/x, qos: 0}"))
    problem = err.value.errors["package"][0]
    assert problem["path"] == "jobs[1].event.mqtt.topic" and "'s/#'" in problem["message"]


def test_published_schema_and_parser_agree_on_topics():
    import json
    from pathlib import Path

    import jsonschema
    schema = json.loads((Path(__file__).resolve().parents[2] / "docs" / "package.schema.json").read_text())
    topic_schema = jsonschema.Draft202012Validator({"$defs": schema["$defs"], "$ref": "#/$defs/mqttTopic"})
    for topic in ["a", "a/+/c", "#", "a/#", "+", "x y/z", "a/b#", "#/a", "/a", "a/", "a//b", "$SYS", "a\x01"]:
        try:
            check_filter(topic)
            ok = True
        except TopicError:
            ok = False
        assert topic_schema.is_valid(topic) is ok, topic


def test_broker_url():
    a = BrokerAddress.parse("mqtt://user:p%40ss@broker:1884")
    assert (a.host, a.port, a.tls, a.username, a.password) == ("broker", 1884, False, "user", "p@ss")
    assert a.redacted() == "mqtt://user:***@broker:1884"
    assert BrokerAddress.parse("mqtts://b").port == 8883
    for bad in ("http://b", "mqtt://", "mqtt://b:99999"):
        with pytest.raises(ValueError, match="JOBICO_MQTT_URL"):
            BrokerAddress.parse(bad)
