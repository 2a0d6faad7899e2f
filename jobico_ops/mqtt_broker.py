"""A local MQTT broker: amqtt's ``Broker`` on 127.0.0.1:<port>.

    python -m jobico_ops.mqtt_broker PORT

What ``jobico run --mqtt`` starts for the MQTT tour (no Docker, no system broker) and what
the tests use (``jobico_ops.embedded.MqttBroker`` runs it as its own process, so a test
can kill and restart it like any other server). Prints ``ready`` once it listens. Not for
production: give the bridge a real broker (mosquitto, EMQX, HiveMQ...).

Two settings matter for persistent sessions (what the bridge relies on):

* amqtt forgets the session of an *anonymous* client when it disconnects, and with
  ``allow_anonymous: true`` every client counts as anonymous. So anonymous access is
  off; a client connecting with any username is accepted (no password file).
* amqtt 0.12.1 breaks MQTT 3.1.1 section 4.4 (MQTT-4.4.0-1, "resend unacknowledged
  PUBLISH packets on reconnect with CleanSession=0"): its QoS 1 sender
  (``ProtocolHandler._handle_qos1_message_flow``) drops an outgoing message from the
  session's ``inflight_out`` in a ``finally`` when the subscriber's connection closes or
  no PUBACK came within 5 s, so a subscriber that died before acknowledging never gets
  it again. ``_keep_unacknowledged`` below drops the message only once its PUBACK
  arrived, which is what mosquitto, EMQX or HiveMQ do; amqtt's own ``_retry_deliveries``
  then resends it (DUP set) when the session reconnects. Nothing else is changed.
"""
from __future__ import annotations

import asyncio
import logging
import sys


def _keep_unacknowledged() -> None:
    from amqtt.mqtt.protocol import handler as h

    original = h.ProtocolHandler._handle_qos1_message_flow

    async def qos1_flow(self, app_message):
        if app_message.direction != h.OUTGOING or app_message.puback_packet:
            return await original(self, app_message)
        self.session.inflight_out[app_message.packet_id] = app_message
        dup = app_message.publish_packet is not None
        packet = app_message.build_publish_packet(dup=True) if dup else app_message.build_publish_packet()
        await self._send_packet(packet)
        app_message.publish_packet = packet
        waiter: asyncio.Future = asyncio.Future()
        self._puback_waiters[app_message.packet_id] = waiter
        try:
            app_message.puback_packet = await waiter  # no timeout: kept until acknowledged or resent
            self.session.inflight_out.pop(app_message.packet_id, None)
        finally:
            self._puback_waiters.pop(app_message.packet_id, None)

    h.ProtocolHandler._handle_qos1_message_flow = qos1_flow


async def serve(port: int) -> None:
    from amqtt.broker import Broker
    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": False}},
    }
    broker = Broker(config, loop=asyncio.get_running_loop())
    await broker.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if "--unpatched" not in sys.argv:
        _keep_unacknowledged()
    asyncio.run(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
