"""MQTT topics of ``mqtt:`` triggers: checking a tenant's topic filter, matching, overlap,
the per-tenant namespace, and the broker URL.

A tenant writes a topic filter relative to its own namespace (``sensors/+/temp``);
the bridge subscribes to ``<prefix>/<tenant>/<filter>`` (prefix ``jobico`` by
default, JOBICO_MQTT_PREFIX), so a message can only ever become an event of the
tenant whose namespace it was published in. Tenant ids cannot hold ``/``, ``+``
or ``#`` (the id rule), so namespaces never overlap.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

MAX_TOPIC = 200       # characters of a tenant's topic filter
MAX_LEVELS = 16       # levels of a tenant's topic filter
QOS_LEVELS = (0, 1)   # QoS 2 is not offered: QoS 1 plus the bridge's deduplication gives exactly-once
DEFAULT_QOS = 1


class TopicError(ValueError):
    """A topic filter that cannot be used (the message says why)."""


def check_filter(topic: object) -> str:
    """A tenant's topic filter, unchanged; ``TopicError`` when it is not usable.

    Levels are separated by ``/``; ``+`` stands for exactly one level and ``#`` (last
    level only) for any number of levels, the parent included (``a/#`` matches ``a``).
    Empty levels, a leading ``$`` (broker system topics), control characters and
    wildcards inside a level (``a+``, ``b#``) are refused.
    """
    if not isinstance(topic, str) or not topic:
        raise TopicError("must be a non-empty MQTT topic such as 'sensors/+/temperature'")
    if len(topic) > MAX_TOPIC:
        raise TopicError(f"is longer than {MAX_TOPIC} characters")
    if any(c < " " or c == "\x7f" for c in topic) or any(0xD800 <= ord(c) <= 0xDFFF for c in topic):
        raise TopicError("must not contain control characters")
    if topic.startswith("$"):
        raise TopicError(f"{topic!r} starts with '$', which brokers reserve for their own topics")
    levels = topic.split("/")
    if len(levels) > MAX_LEVELS:
        raise TopicError(f"{topic!r} has {len(levels)} levels; at most {MAX_LEVELS}")
    for i, level in enumerate(levels):
        if level == "":
            raise TopicError(f"{topic!r} has an empty level (a leading, trailing or doubled '/')")
        if level == "#" and i != len(levels) - 1:
            raise TopicError(f"{topic!r}: '#' may only be the last level")
        if level not in ("+", "#") and ("+" in level or "#" in level):
            raise TopicError(f"{topic!r}: the wildcards '+' and '#' must stand alone in a level "
                             f"(found {level!r})")
    return topic


def matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` (a published topic) matches ``topic_filter`` (MQTT 3.1.1, 4.7)."""
    f, t = topic_filter.split("/"), topic.split("/")
    for i, level in enumerate(f):
        if level == "#":
            return True
        if i >= len(t) or (level != "+" and level != t[i]):
            return False
    return len(f) == len(t)


def overlaps(a: str, b: str) -> bool:
    """Whether some topic matches both filters (so one message would reach two events)."""
    x, y = a.split("/"), b.split("/")
    i = 0
    while True:
        if (i < len(x) and x[i] == "#") or (i < len(y) and y[i] == "#"):
            return True
        if i == len(x) or i == len(y):
            return len(x) == len(y)
        if x[i] != y[i] and "+" not in (x[i], y[i]):
            return False
        i += 1


def namespaced(prefix: str, tenant: str, topic_filter: str) -> str:
    """What the bridge subscribes to for a tenant's filter."""
    return f"{prefix}/{tenant}/{topic_filter}"


def split_topic(prefix: str, topic: str) -> tuple[str, str] | None:
    """``(tenant, topic within the tenant's namespace)`` of a received topic, or None."""
    head = prefix + "/"
    if not topic.startswith(head):
        return None
    tenant, sep, rest = topic[len(head):].partition("/")
    if not sep or not tenant or not rest:
        return None
    return tenant, rest


def check_prefix(prefix: str) -> str | None:
    """What is wrong with a namespace prefix (JOBICO_MQTT_PREFIX), or None."""
    if not prefix:
        return "must not be empty"
    if prefix.startswith("$") or any(c in prefix for c in "+#") or "" in prefix.split("/"):
        return "must be a topic without wildcards, empty levels or a leading '$' (e.g. 'jobico')"
    return None


@dataclass(frozen=True)
class BrokerAddress:
    """``mqtt://[user[:password]@]host[:port]`` (1883) or ``mqtts://...`` (TLS, 8883)."""
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"JOBICO_MQTT_URL {url!r} is not a valid URL: {exc}") from None
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError(f"JOBICO_MQTT_URL must start with mqtt:// or mqtts:// (got {parts.scheme or url!r})")
        if not parts.hostname:
            raise ValueError("JOBICO_MQTT_URL has no host: mqtt://host[:port]")
        tls = parts.scheme in ("mqtts", "ssl")
        return cls(parts.hostname, port or (8883 if tls else 1883), tls,
                   unquote(parts.username) if parts.username else None,
                   unquote(parts.password) if parts.password else None)

    def redacted(self) -> str:
        user = f"{self.username}:***@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"
