"""The MQTT bridge (``jobico mqtt-bridge``): broker messages -> events of the tenants.

One process holds one MQTT connection (paho-mqtt, MQTT 3.1.1) with a
persistent session (``clean_session=False``, client id JOBICO_MQTT_CLIENT_ID)
and subscribes to ``<prefix>/<tenant>/<topic>`` for every ``mqtt:`` trigger of
every package's active version. It follows deploys, redeploys, rollbacks and
deletes without a restart: the change counter beat also watches (checked at
most every CHECK_EVERY seconds) and a full re-read every JOBICO_MQTT_REFRESH
seconds. The filters subscribed are remembered in Redis, so a bridge started
after a delete also unsubscribes what its predecessor left in the session.

Delivery. paho's network thread puts each message on a bounded in-memory
queue (a full queue holds the network thread, so the broker holds the rest);
the main thread hands them one at a time, in order, to
``jobico_core.services.mqtt.receive`` (validate, record, enqueue) and only then
acknowledges a QoS 1 message (``manual_ack``). A bridge that dies before the
acknowledgement gets the message again from the broker when it reconnects
(the session persists), and ``receive`` recognises a message already recorded.
While the queue cap or rate limit refuses (429) or the database or Redis is
down, the same message is retried (after Retry-After, or a backoff up to 30 s)
and nothing after it is acknowledged. QoS 0 messages are at most once: those
waiting in the queue when the bridge dies are lost.
"""
from __future__ import annotations

import logging
import queue
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from jobico_core import tracing
from jobico_core.errors import TooManyRequests
from jobico_core.mqtt import BrokerAddress
from jobico_core.services import rejections
from jobico_core.services.context import Context
from jobico_core.services.mqtt import Subscription, deployed_topics, generation, receive
from jobico_core.settings import Settings

log = logging.getLogger("jobico.mqtt")

INBOX_SIZE = 1000      # messages received and not yet handled
CHECK_EVERY = 0.5      # seconds between looks at the change counter
TRIM_EVERY = 600.0     # seconds between deletions of old rejections
MAX_BACKOFF = 30.0     # longest wait before retrying a message the platform could not take
KEEPALIVE = 30         # MQTT keepalive, seconds
FILTERS_KEY = "jobico:mqtt:filters:{client_id}"  # what the session may be subscribed to
ALIVE_FILE = Path(tempfile.gettempdir()) / "jobico-mqtt-bridge.alive"  # touched by the main loop


@dataclass(frozen=True)
class _Message:
    topic: str
    payload: bytes
    qos: int
    mid: int
    dup: bool
    epoch: int  # which connection delivered it


class Bridge:
    def __init__(self, settings: Settings, ctx: Context | None = None):
        if not settings.mqtt_url:
            raise ValueError("JOBICO_MQTT_URL is not set: the bridge has no broker to connect to")
        self.settings = settings
        self.ctx = ctx or Context(settings)
        self.address = BrokerAddress.parse(settings.mqtt_url)
        self.inbox: queue.Queue[_Message] = queue.Queue(INBOX_SIZE)
        self.stopping = threading.Event()
        self.connected = threading.Event()
        self.epoch = 0
        self.subscriptions: list[Subscription] = []
        self.wanted: dict[str, int] = {}     # filter -> qos, from the deployed packages
        self.subscribed: dict[str, int] | None = None  # what the session holds (None: not read yet)
        self._lock = threading.Lock()
        self.loaded = False  # the deployed topics were read once: until then nothing is changed or taken
        self._resubscribe = False  # a (re)connect happened: subscribe every wanted filter again
        self._seen_generation: int | None = None
        self._loaded_at = float("-inf")
        self._checked_at = float("-inf")
        self._trimmed_at = time.monotonic()
        self.client = self._client()

    # -- paho -------------------------------------------------------------------------------
    def _client(self):
        import paho.mqtt.client as mqtt
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.settings.mqtt_client_id,
                             clean_session=False, protocol=mqtt.MQTTv311, manual_ack=True)
        if self.address.username:
            client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            client.tls_set()
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("the broker %s refused the connection: %s", self.address.redacted(), reason_code)
            return
        self.epoch += 1
        self._resubscribe = True  # the broker may have lost the session: subscribe everything again
        self.connected.set()
        log.info("connected to %s as %r (session present: %s)", self.address.redacted(),
                 self.settings.mqtt_client_id, flags.session_present)
        self._sync()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        if not self.stopping.is_set():
            log.warning("disconnected from %s (%s): reconnecting", self.address.redacted(), reason_code)

    def _on_message(self, client, userdata, msg) -> None:
        m = _Message(msg.topic, bytes(msg.payload), msg.qos, msg.mid, bool(msg.dup), self.epoch)
        while not self.stopping.is_set():  # a full inbox holds the network thread: the broker keeps the rest
            try:
                self.inbox.put(m, timeout=0.5)
                return
            except queue.Full:
                continue

    # -- subscriptions ----------------------------------------------------------------------------
    def _filters_key(self) -> str:
        return FILTERS_KEY.format(client_id=self.settings.mqtt_client_id)

    def _sync(self) -> None:
        """Make the session's subscriptions what is deployed (after a connect: every wanted filter
        again). Called from both threads."""
        import json
        with self._lock:
            if not self.connected.is_set() or not self.loaded:  # never drop the session's filters unread
                return
            if self.subscribed is None:
                try:
                    raw = self.ctx.redis.get(self._filters_key())
                    self.subscribed = {str(k): int(v) for k, v in json.loads(raw).items()} if raw else {}
                except Exception as exc:  # Redis down: assume nothing, subscribe what is wanted
                    log.warning("could not read the bridge's filters from Redis: %s", exc)
                    self.subscribed = {}
            add = {f: q for f, q in self.wanted.items() if self._resubscribe or self.subscribed.get(f) != q}
            self._resubscribe = False
            drop = sorted(set(self.subscribed) - set(self.wanted))
            if drop:
                self.client.unsubscribe(drop)
                log.info("unsubscribed %s", ", ".join(drop))
            if add:
                self.client.subscribe(sorted(add.items()))
                log.info("subscribed %s", ", ".join(f"{f} (qos {q})" for f, q in sorted(add.items())))
            self.subscribed = dict(self.wanted)
            try:
                self.ctx.redis.set(self._filters_key(), json.dumps(self.subscribed))
            except Exception as exc:
                log.warning("could not remember the bridge's filters in Redis: %s", exc)

    def _reload(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked_at < CHECK_EVERY:
            return
        self._checked_at = now
        try:
            gen = generation(self.ctx)
            if not force and gen == self._seen_generation and now - self._loaded_at < self.settings.mqtt_refresh:
                return
            subs = deployed_topics(self.ctx)
        except Exception as exc:  # database or Redis down: keep the current subscriptions
            log.warning("could not read the deployed MQTT topics: %s", exc)
            return
        wanted: dict[str, int] = {}
        prefix = self.settings.mqtt_prefix
        for s in subs:
            f = s.filter(prefix)
            wanted[f] = max(wanted.get(f, 0), s.qos)
        with self._lock:
            self.subscriptions, self.wanted = subs, wanted
            self.loaded = True
        self._seen_generation, self._loaded_at = gen, now
        self._sync()

    # -- messages -------------------------------------------------------------------------------------
    def _handle(self, m: _Message) -> None:
        delay = 1.0
        while not self.stopping.is_set():
            try:
                receive(self.ctx, self.subscriptions, m.topic, m.payload, qos=m.qos, packet_id=m.mid, dup=m.dup)
                break
            except TooManyRequests as exc:
                wait = min(MAX_BACKOFF, max(0.1, float(exc.headers.get("Retry-After", 1))))
                log.warning("message on %s waits %.1f s: %s", m.topic, wait, exc.message)
                self.stopping.wait(wait)
            except Exception as exc:  # database / Redis / broker of the tasks: retry the same message
                log.warning("could not take the message on %s (retrying in %.0f s): %s: %s", m.topic, delay,
                            type(exc).__name__, exc)
                self.stopping.wait(delay)
                delay = min(MAX_BACKOFF, delay * 2)
            _touch()
        else:
            return  # stopping: unacknowledged, so the broker delivers it again to the next bridge
        if m.qos > 0 and m.epoch == self.epoch:  # a message of an older connection is redelivered anyway
            self.client.ack(m.mid, m.qos)

    def _trim(self) -> None:
        if time.monotonic() - self._trimmed_at < TRIM_EVERY:
            return
        self._trimmed_at = time.monotonic()
        try:
            n = rejections.trim(self.ctx)
            if n:
                log.info("deleted %d rejections older than the retention", n)
        except Exception as exc:
            log.warning("could not delete old rejections: %s", exc)

    # -- lifecycle -----------------------------------------------------------------------------------------
    def run(self) -> None:
        log.info("MQTT bridge: broker %s, client id %r, topics %s/<tenant>/<topic>", self.address.redacted(),
                 self.settings.mqtt_client_id, self.settings.mqtt_prefix)
        self._reload(force=True)
        self.client.connect_async(self.address.host, self.address.port, keepalive=KEEPALIVE)
        self.client.loop_start()
        try:
            while not self.stopping.is_set():
                _touch()
                self._reload()
                if not self.loaded:  # the database is down at start: take no message before knowing
                    self.stopping.wait(1.0)  # which events exist (they would be rejected as not deployed)
                    self._reload(force=True)
                    continue
                self._trim()
                try:
                    m = self.inbox.get(timeout=CHECK_EVERY)
                except queue.Empty:
                    continue
                self._handle(m)
        finally:
            self.client.disconnect()
            self.client.loop_stop()
            log.info("MQTT bridge stopped")

    def stop(self, *_args) -> None:
        self.stopping.set()


def _touch() -> None:
    try:
        ALIVE_FILE.touch()
    except OSError:  # pragma: no cover - a read-only /tmp: no liveness file
        pass


def main(settings: Settings | None = None) -> None:
    """Run a bridge until SIGTERM or SIGINT."""
    from jobico_core.logs import configure_logging
    settings = (settings or Settings.from_env()).check()
    configure_logging(settings)
    tracing.setup("jobico-mqtt-bridge")  # a message's jobico.submit span starts its execution's trace
    bridge = Bridge(settings)
    if settings.mqtt_metrics_port:
        from jobico_core.metrics import serve_worker_metrics
        serve_worker_metrics(settings.mqtt_metrics_port)
    signal.signal(signal.SIGTERM, bridge.stop)
    signal.signal(signal.SIGINT, bridge.stop)
    bridge.run()
