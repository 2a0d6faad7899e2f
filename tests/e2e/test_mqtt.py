"""MQTT triggers end to end: a real broker (amqtt, its own process), the real bridge process
(`jobico mqtt-bridge`), real workers, Redis, PostgreSQL and S3."""
from __future__ import annotations

import json
import signal
import uuid

import pytest
from sqlalchemy import func, select

from jobico_core.db import Execution
from tests.waiting import holds_for, wait_until

from .helpers import example

PACKAGE = """
id: doors
queues: [{id: main}]
jobs:
  - event:
      id: ring
      schema: {id: s, schemaref: hello.json}
      supplierqueue: main
      runtime: greeter
      mqtt: {topic: "doorbell/+", qos: 1}
runtimes:
  - id: greeter
    moduleref: greet.wasm
"""


@pytest.fixture
def mqtt_env(mqtt_broker):
    tag = uuid.uuid4().hex[:10]
    return {"JOBICO_MQTT_URL": mqtt_broker.url, "JOBICO_MQTT_PREFIX": f"t{tag}",
            "JOBICO_MQTT_CLIENT_ID": f"bridge-{tag}", "JOBICO_MQTT_REFRESH": "60"}


def _tenant(platform, name="acme"):
    key = platform.tenant(name)
    platform.upload(key, example("jobicolets/greet.wasm"))
    platform.upload(key, example("schemas/hello.json"))
    return key


def _publish(broker, topic: str, payloads, qos: int = 1) -> None:
    pub = broker.client(f"pub-{uuid.uuid4().hex[:8]}")
    try:
        for p in payloads:
            pub.publish(topic, p, qos=qos).wait_for_publish(10)
    finally:
        pub.disconnect()
        pub.loop_stop()


def _until(check, timeout=30.0, what="condition"):
    return wait_until(check, timeout, what=what, interval=0.1)


def test_messages_become_executions_invalid_ones_are_recorded_and_deploys_are_followed(
        platform, mqtt_broker, mqtt_env):
    platform.env.update(mqtt_env)
    prefix = mqtt_env["JOBICO_MQTT_PREFIX"]
    key = _tenant(platform)
    other = _tenant(platform, "other")
    worker, bridge = platform.start_worker(wait=False), platform.start_bridge(wait=False)
    platform.ready(worker, bridge)
    mark = bridge.log_size()
    platform.deploy(key, PACKAGE)  # deployed after the bridge started: it follows without a restart
    bridge.wait_log(f"subscribed {prefix}/acme/doorbell/+ (qos 1)", after=mark)

    _publish(mqtt_broker, f"{prefix}/acme/doorbell/front", [json.dumps({"name": "mqtt", "lang": "fr"})])
    items = _until(lambda: platform.call(key, "GET", "/api/v1/executions",
                                         params={"submitter": "mqtt:doorbell/front"}).json()["items"],
                   what="an execution of the MQTT message")
    assert len(items) == 1 and items[0]["trigger"] == "mqtt" and items[0]["event"] == "ring"
    done = platform.wait(key, items[0]["id"])
    assert done["status"] == "succeeded" and done["result"] == "Bonjour, mqtt!", done

    # invalid messages: recorded, with the webhook's words, never silently dropped
    _publish(mqtt_broker, f"{prefix}/acme/doorbell/back", [b"not json", json.dumps({"nom": "x"}), b"\xff\xfe"])
    rejected = _until(lambda: (lambda r: r if len(r) == 3 else None)(
        platform.call(key, "GET", "/api/v1/rejections").json()["items"]), what="three rejections")
    by_reason = sorted((r["reason"], r["payload"][:8]) for r in rejected)
    assert by_reason == [("bad_request", "not json"), ("bad_request", "\ufffd\ufffd"), ("invalid", '{"nom": ')]
    invalid = next(r for r in rejected if r["reason"] == "invalid")
    assert invalid["event"] == "ring" and invalid["source"] == "doorbell/back" and invalid["trigger"] == "mqtt"
    assert "hello.json" in invalid["message"] and invalid["errors"]["data"]["0"][0]["path"] == "$"
    r = platform.call(key, "GET", "/api/v1/rejections", params={"reason": "invalid"})
    assert [x["id"] for x in r.json()["items"]] == [invalid["id"]]

    # tenants are namespaced: another tenant's namespace reaches nobody, and sees nothing of acme's
    _publish(mqtt_broker, f"{prefix}/other/doorbell/front", [json.dumps({"name": "intruder"})])
    assert platform.call(other, "GET", "/api/v1/rejections").json()["items"] == []
    assert platform.call(other, "GET", "/api/v1/executions").json()["items"] == []

    # delete: the bridge unsubscribes without a restart, so later messages reach no event
    mark = bridge.log_size()
    assert platform.call(key, "DELETE", "/api/v1/packages/doors").status_code == 204
    bridge.wait_log(f"unsubscribed {prefix}/acme/doorbell/+", after=mark)
    _publish(mqtt_broker, f"{prefix}/acme/doorbell/front", [json.dumps({"name": "late"})])
    holds_for(lambda: len(platform.call(key, "GET", "/api/v1/executions").json()["items"]) == 1, 1.0,
              what="no execution of a message after the delete")
    names = [json.loads(e["payload"])["name"] for e in (
        platform.call(key, "GET", f"/api/v1/executions/{i['id']}").json()
        for i in platform.call(key, "GET", "/api/v1/executions").json()["items"])]
    assert names == ["mqtt"]
    assert len(platform.call(key, "GET", "/api/v1/rejections").json()["items"]) == 3
    assert b"intruder" not in bridge.log_path.read_bytes()


def test_bridge_killed_mid_stream_loses_no_qos1_message_and_records_none_twice(platform, mqtt_broker, mqtt_env):
    """SIGKILL the bridge while a stream of QoS 1 messages is being taken; the restarted bridge
    (same client id: the broker kept the session) gets what was not acknowledged. Every message is
    exactly one execution: no loss, no duplicate."""
    platform.env.update(mqtt_env)
    prefix = mqtt_env["JOBICO_MQTT_PREFIX"]
    key = _tenant(platform)
    platform.deploy(key, PACKAGE)
    bridge = platform.start_bridge()
    bridge.wait_log(f"subscribed {prefix}/acme/doorbell/+")
    n = 300

    def count() -> int:
        with platform.ctx.db.session() as s:
            return s.scalar(select(func.count()).select_from(Execution).where(Execution.tenant_id == "acme"))

    _publish(mqtt_broker, f"{prefix}/acme/doorbell/front", [json.dumps({"name": f"m{i}"}) for i in range(n)])
    _until(lambda: count() >= 20, what="20 executions")
    bridge.stop(signal.SIGKILL)
    at_kill = count()
    assert at_kill < n, "the bridge took every message before it was killed: nothing was in flight"

    bridge2 = platform.start_bridge("bridge2")
    _until(lambda: count() >= n, timeout=60, what=f"{n} executions")
    holds_for(lambda: count() == n, 1.0, what="no duplicate after the restart")
    with platform.ctx.db.session() as s:
        payloads = list(s.scalars(select(Execution.payload).where(Execution.tenant_id == "acme")))
    names = sorted(json.loads(p)["name"] for p in payloads)
    assert names == sorted(f"m{i}" for i in range(n)), f"{len(names)} executions for {n} messages"
    assert platform.call(key, "GET", "/api/v1/rejections").json()["items"] == []
    log = bridge2.log_path.read_bytes()
    assert b"session present: True" in log
    print(f"killed with {at_kill}/{n} recorded; redelivered ones already recorded: "
          f"{log.count(b'was already recorded')}")


def test_bridge_resubscribes_after_the_broker_lost_its_session_and_a_new_bridge_drops_stale_filters(
        platform, tmp_path):
    """A broker restarted without its sessions: the bridge reconnects and subscribes again. A bridge
    started after a delete unsubscribes what its predecessor left in the (persistent) session."""
    from tests.services import MqttBroker
    tag = uuid.uuid4().hex[:8]
    with MqttBroker(tmp_path / "broker") as broker:
        platform.env.update({"JOBICO_MQTT_URL": broker.url, "JOBICO_MQTT_PREFIX": f"r{tag}",
                             "JOBICO_MQTT_CLIENT_ID": f"bridge-{tag}"})
        key = _tenant(platform)
        platform.deploy(key, PACKAGE)
        bridge = platform.start_bridge()
        bridge.wait_log(f"subscribed r{tag}/acme/doorbell/+")
        mark = bridge.log_size()
        broker.restart()
        bridge.wait_log("session present: False", after=mark, timeout=40)
        bridge.wait_log(f"subscribed r{tag}/acme/doorbell/+", after=mark)
        _publish(broker, f"r{tag}/acme/doorbell/side", [json.dumps({"name": "after-restart"})])
        _until(lambda: platform.call(key, "GET", "/api/v1/executions",
                                     params={"submitter": "mqtt:doorbell/side"}).json()["items"],
               what="an execution after the broker restart")

        bridge.stop()  # a clean stop; the session (and its subscription) stays at the broker
        assert platform.call(key, "DELETE", "/api/v1/packages/doors").status_code == 204
        bridge2 = platform.start_bridge("bridge2")
        bridge2.wait_log(f"unsubscribed r{tag}/acme/doorbell/+")
        assert b"session present: True" in bridge2.log_path.read_bytes()
