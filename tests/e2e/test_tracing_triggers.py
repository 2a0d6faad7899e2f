"""Traces that start outside the API: a cron fire in a real beat process and an MQTT message in a
real bridge process each start the trace (their ``jobico.submit`` span, sent over OTLP/HTTP)
that the real worker's ``jobico.execute`` of the execution continues."""
from __future__ import annotations

import json
import uuid

from tests.waiting import wait_until

from .helpers import example
from .test_cron import _clock
from .test_mqtt import PACKAGE, _publish, _tenant
from .test_tracing import Collector

OTEL = {"OTEL_BSP_SCHEDULE_DELAY": "100"}


def _continued(collector: Collector, execution_id: str, service: str):
    """The execution's jobico.execute span and the jobico.submit span of ``service`` it hangs under."""
    def found():
        spans = list(collector.spans)
        execute = next((s for s in spans if s[0] == "jobico.execute"
                        and s[4].get("jobico.execution_id") == execution_id), None)
        if execute is None:
            return None
        in_trace = {s[2]: s for s in spans if s[1] == execute[1]}
        submit = next((s for s in in_trace.values() if s[0] == "jobico.submit"), None)
        return (execute, submit, in_trace) if submit is not None else None

    execute, submit, in_trace = wait_until(found, 40, what=f"the trace of {execution_id} from {service}",
                                           interval=0.2)
    assert collector.services[submit[2]] == service
    assert collector.services[execute[2]] == "jobico-worker"
    parent = in_trace.get(execute[3])   # jobico.admit under jobico.submit (or submit itself)
    assert parent is not None and (parent is submit or parent[3] == submit[2]), (execute, parent, submit)
    return execute


def test_a_cron_fire_starts_the_trace_its_execution_continues(platform):
    p = platform
    key = p.tenant("cron")
    for f in ("jobicolets/echo.wasm", "schemas/any.json"):
        p.upload(key, example(f))
    collector = Collector()
    try:
        env = {**OTEL, "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url}
        p.ready(p.start_worker(extra_env=env, wait=False), p.start_beat(extra_env=env, wait=False))
        p.deploy(key, _clock("* * * * * *"))
        items = wait_until(lambda: p.call(key, "GET", "/api/v1/executions").json()["items"], 30,
                           what="a cron fire", interval=0.2)
        done = p.wait(key, items[-1]["id"])
        assert done["status"] == "succeeded" and done["trigger"] == "cron"
        execute = _continued(collector, done["id"], "jobico-beat")
        assert done["trace_id"] == execute[1]
    finally:
        collector.server.shutdown()


def test_an_mqtt_message_starts_the_trace_its_execution_continues(platform, mqtt_broker):
    tag = uuid.uuid4().hex[:10]
    platform.env.update({"JOBICO_MQTT_URL": mqtt_broker.url, "JOBICO_MQTT_PREFIX": f"t{tag}",
                         "JOBICO_MQTT_CLIENT_ID": f"bridge-{tag}", "JOBICO_MQTT_REFRESH": "60"})
    key = _tenant(platform)
    platform.deploy(key, PACKAGE)
    collector = Collector()
    try:
        env = {**OTEL, "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url}
        worker = platform.start_worker(extra_env=env, wait=False)
        bridge = platform.start_bridge(extra_env=env, wait=False)
        platform.ready(worker, bridge)
        bridge.wait_log(f"subscribed t{tag}/acme/doorbell/+")
        _publish(mqtt_broker, f"t{tag}/acme/doorbell/front", [json.dumps({"name": "traced"})])
        [item] = wait_until(lambda: platform.call(key, "GET", "/api/v1/executions").json()["items"], 30,
                            what="the message's execution", interval=0.2)
        done = platform.wait(key, item["id"])
        assert done["status"] == "succeeded" and done["trigger"] == "mqtt"
        execute = _continued(collector, done["id"], "jobico-mqtt-bridge")
        assert done["trace_id"] == execute[1]
    finally:
        collector.server.shutdown()
