"""The package YAML: parsing (both dialects), validation and the normalised model.

``parse_package(text)`` returns a ``PackageSpec`` or raises ``Invalid`` (422)
whose ``errors`` hold every problem found, each with its path, e.g.::

    {"package": [{"path": "jobs[0].event.runtime", "message": "..."}]}

Checks needing the database (referenced files exist, event ids free within
the tenant) are done by ``jobico_core.services.packages``.
"""
from __future__ import annotations

import difflib
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from .canonical import dumps
from .cron import Cron, CronError, check_expression, zone
from .errors import Invalid
from .flow import FLOW_KEYS, missing_keys, parse_flow, parse_priority
from .limits import MAX_LIMITS, Limits
from .mqtt import DEFAULT_QOS, QOS_LEVELS, TopicError, check_filter, overlaps
from .names import file_name_problem, name_problem, package_name_problem

MAX_SOURCE_BYTES = 1 << 20
MAX_DEPTH = 32


# -- safe YAML: no aliases (no "billion laughs"), no duplicate keys ------------
class _StrictLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    mapping: dict = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, str):
            raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is not a string", key_node.start_mark)
        if key in mapping:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(text: str | bytes) -> Any:
    if isinstance(text, bytes):
        if len(text) > MAX_SOURCE_BYTES:
            raise Invalid(f"package source is larger than {MAX_SOURCE_BYTES // 1024} KB",
                          {"package": [{"path": "", "message": "too large"}]})
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Invalid("package source is not UTF-8", {"package": [{"path": "", "message": str(exc)}]}) from None
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SOURCE_BYTES:  # the YAML reader refuses surrogates
        raise Invalid(f"package source is larger than {MAX_SOURCE_BYTES // 1024} KB",
                      {"package": [{"path": "", "message": "too large"}]})
    try:
        depth = 0
        for ev in yaml.parse(text, Loader=_StrictLoader):
            if isinstance(ev, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:  # the composer recurses: refuse before a RecursionError
                    line = ev.start_mark.line + 1
                    raise Invalid(f"package nests deeper than {MAX_DEPTH} levels (line {line})",
                                  {"package": [{"path": "", "message": f"nested deeper than {MAX_DEPTH} levels",
                                                "line": line}]})
            elif isinstance(ev, yaml.CollectionEndEvent):
                depth -= 1
            if isinstance(ev, yaml.AliasEvent) or getattr(ev, "anchor", None):
                mark = ev.start_mark
                raise Invalid(f"YAML anchors and aliases are not allowed (line {mark.line + 1})",
                              {"package": [{"path": "", "message": "anchors/aliases are not allowed",
                                            "line": mark.line + 1}]})
        docs = list(yaml.load_all(text, Loader=_StrictLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise Invalid(f"package is not valid YAML{where}: {problem}",
                      {"package": [{"path": "", "message": f"{problem}{where}"}]}) from None
    except Exception as exc:  # noqa: BLE001
        # a scalar PyYAML resolves but cannot build (ValueError, IndexError...): 2001-13-45,
        # `!!int` with no value, a 5000-digit integer...
        if isinstance(exc, Invalid):
            raise
        raise Invalid(f"package is not valid YAML: a value cannot be read: {exc}",
                      {"package": [{"path": "", "message": str(exc)}]}) from None
    if len(docs) != 1:
        raise Invalid("package must be exactly one YAML document",
                      {"package": [{"path": "", "message": f"found {len(docs)} documents"}]})
    return docs[0]


# -- the normalised model -------------------------------------------------------
@dataclass
class SchemaRef:
    id: str
    schemaref: str
    name: str = ""


@dataclass
class ScheduleSpec:
    """``schedule:`` of an event: fire it on a cron expression with a fixed payload."""
    cron: str
    timezone: str = "UTC"
    payload: str = "{}"  # canonical JSON; checked against the event's schema at deploy time

    def parsed(self) -> Cron:
        return Cron(self.cron, self.timezone)


@dataclass
class MqttSpec:
    """``mqtt:`` of an event: messages on this topic filter (in the tenant's namespace) become events."""
    topic: str
    qos: int = DEFAULT_QOS


@dataclass
class EventSpec:
    id: str
    name: str = ""
    datatype: int = 0
    schema: SchemaRef | None = None
    supplierqueue: str = ""
    runtime: str = ""
    retries: int = 0
    limits: dict[str, int] = field(default_factory=dict)
    ok: str | None = None      # event id fired when code == 0
    error: str | None = None   # event id fired on any other outcome
    schedule: ScheduleSpec | None = None  # cron trigger (beside the webhook)
    mqtt: MqttSpec | None = None  # MQTT trigger (beside the webhook)
    environment: dict[str, dict[str, str]] = field(default_factory=dict)  # overrides the package's
    locks: list[str] = field(default_factory=list)  # named locks (sorted): holders never run at once
    # concurrency / rate_limit / debounce per key, normalised (jobico_core.flow); {}: none declared
    flow: dict[str, dict] = field(default_factory=dict)
    priority: int | None = None  # 1..10: claimed before lower ones of the tenant's queue (aged)


@dataclass
class QueueSpec:
    id: str
    name: str = ""


@dataclass
class RuntimeSpec:
    id: str
    moduleref: str
    name: str = ""
    mainfuncname: str = "event"
    language: str = "wasm"
    limits: dict[str, int] = field(default_factory=dict)


@dataclass
class PackageSpec:
    id: str
    name: str = ""
    tenant: str | None = None
    queues: list[QueueSpec] = field(default_factory=list)
    events: dict[str, EventSpec] = field(default_factory=dict)  # every event id, chained ones included
    runtimes: dict[str, RuntimeSpec] = field(default_factory=dict)
    # NAME -> {"value": text} or {"secret": stored variable}; see jobico_core.services.environment
    environment: dict[str, dict[str, str]] = field(default_factory=dict)
    max_priority: int | None = None  # the X-Jobico-Priority header's bound (None: MAX_PRIORITY)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "tenant": self.tenant, "environment": self.environment,
            "max_priority": self.max_priority,
            "queues": [asdict(q) for q in self.queues],
            "events": {k: asdict(v) for k, v in self.events.items()},
            "runtimes": {k: asdict(v) for k, v in self.runtimes.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PackageSpec:
        events = {}
        for k, v in d["events"].items():
            v = dict(v)
            v["schema"] = SchemaRef(**v["schema"]) if v.get("schema") else None
            v["schedule"] = ScheduleSpec(**v["schedule"]) if v.get("schedule") else None
            v["mqtt"] = MqttSpec(**v["mqtt"]) if v.get("mqtt") else None
            events[k] = EventSpec(**v)
        return cls(id=d["id"], name=d.get("name", ""), tenant=d.get("tenant"), environment=d.get("environment") or {},
                   max_priority=d.get("max_priority"),
                   queues=[QueueSpec(**q) for q in d["queues"]], events=events,
                   runtimes={k: RuntimeSpec(**v) for k, v in d["runtimes"].items()})

    def schema_files(self) -> set[str]:
        return {e.schema.schemaref for e in self.events.values() if e.schema}

    def scheduled_events(self) -> dict[str, ScheduleSpec]:
        return {eid: e.schedule for eid, e in self.events.items() if e.schedule is not None}

    def mqtt_events(self) -> dict[str, MqttSpec]:
        return {eid: e.mqtt for eid, e in self.events.items() if e.mqtt is not None}

    def queue_ids(self) -> list[str]:
        return [q.id for q in self.queues]

    def environment_for(self, event_id: str) -> dict[str, dict[str, str]]:
        """The event's environment: the package's, overridden name by name by the event's."""
        ev = self.events.get(event_id)
        return {**self.environment, **(ev.environment if ev is not None else {})}

    def secret_references(self) -> dict[str, str]:
        """{stored variable name: the first path referencing it} over the package and its events."""
        refs: dict[str, str] = {}
        for name, item in self.environment.items():
            if "secret" in item:
                refs.setdefault(item["secret"], f"environment.{name}.secret")
        for eid, ev in self.events.items():
            for name, item in ev.environment.items():
                if "secret" in item:
                    refs.setdefault(item["secret"], f"events.{eid}.environment.{name}.secret")
        return refs


# -- validation -------------------------------------------------------------------
_ROOT_KEYS = {"id", "name", "tenant", "queues", "jobs", "runtimes", "environment", "max_priority"}
_QUEUE_KEYS = {"id", "name"}
_JOB_KEYS = {"event", "result"}
_RESULT_KEYS = {"ok", "error"}
_EVENT_KEYS = {"id", "name", "datatype", "schema", "supplierqueue", "runtime", "retries", "limits",
               "schedule", "mqtt", "environment", "locks", "priority", *FLOW_KEYS}
_SCHEMA_KEYS = {"id", "name", "schemaref"}
_SCHEDULE_KEYS = {"cron", "timezone", "payload"}
_MQTT_KEYS = {"topic", "qos"}
_RUNTIME_KEYS = {"id", "name", "moduleref", "mainfuncname", "type", "language", "limits"}
_RESERVED: dict[str, str] = {}  # reserved extensions that have not landed yet: key -> what it will be
MAX_RETRIES = 10
MAX_LOCKS = 8                # named locks per event
# environment: POSIX names; bounded so a guest's WASI environ stays small
ENV_NAME_RULE = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
_ENV_NAME_RE = re.compile(ENV_NAME_RULE)
MAX_ENV_VARS = 64            # per package and per event (and merged)
MAX_ENV_VALUE_BYTES = 4096   # one value, plain or secret


class _Problems:
    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.items.append({"path": path, "message": message})

    def raise_if_any(self) -> None:
        if self.items:
            first = self.items[0]
            where = f"{first['path']}: " if first["path"] else ""
            more = f" (and {len(self.items) - 1} more)" if len(self.items) > 1 else ""
            raise Invalid(f"invalid package: {where}{first['message']}{more}", {"package": self.items})


def _lower_keys(value: Any) -> Any:
    """The ``package:`` dialect uses camel-case keys (ID, schemaRef, ...): fold them
    (not inside a schedule's ``payload`` nor an ``environment``: the tenant's data and names)."""
    if isinstance(value, dict):
        return {k.lower() if isinstance(k, str) else k:
                v if isinstance(k, str) and k.lower() in ("payload", "environment") else _lower_keys(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_lower_keys(v) for v in value]
    return value


def _check_keys(obj: dict, allowed: set[str], path: str, p: _Problems) -> None:
    for key in obj:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(allowed))}"
            p.add(f"{path}.{key}" if path else str(key), f"unknown key {key!r}{hint}")
        elif key in _RESERVED:
            p.add(f"{path}.{key}" if path else key,
                  f"{key!r} is reserved for {_RESERVED[key]}, which this version of Jobico does not support yet")


def _str(obj: dict, key: str, path: str, p: _Problems, *, required: bool = True, rule: str = "name",
         default: str = "") -> str:
    value = obj.get(key)
    full = f"{path}.{key}" if path else key
    if value is None:
        if required:
            p.add(full, f"{key!r} is required")
        return default
    if rule == "name":
        problem = name_problem(value, key)
    elif rule == "package":
        problem = package_name_problem(value, key)
    elif rule == "file":
        problem = file_name_problem(value)
    else:
        problem = None if isinstance(value, str) else f"{key!r} must be a string"
    if problem:
        p.add(full, problem)
        return default
    return value


def _list(obj: dict, key: str, path: str, p: _Problems, *, required: bool = True) -> list:
    value = obj.get(key)
    full = f"{path}.{key}" if path else key
    if value is None:
        if required:
            p.add(full, f"{key!r} is required (a list)")
        return []
    if not isinstance(value, list):
        p.add(full, f"{key!r} must be a list")
        return []
    if required and not value:
        p.add(full, f"{key!r} must not be empty")
    return value


def _limits(value: Any, path: str, p: _Problems, maxima: Any) -> dict[str, int]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        p.add(path, "'limits' must be a mapping")
        return {}
    out: dict[str, int] = {}
    for key, v in value.items():
        if key not in Limits.KEYS:
            close = difflib.get_close_matches(str(key), sorted(Limits.KEYS), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known limits: {', '.join(sorted(Limits.KEYS))}"
            p.add(f"{path}.{key}", f"unknown limit {key!r}{hint}")
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            p.add(f"{path}.{key}", f"limit {key!r} must be a positive integer")
            continue
        top = getattr(maxima, key)
        if v > top:
            p.add(f"{path}.{key}", f"limit {key!r} = {v} exceeds the platform maximum {top}")
            continue
        out[key] = v
    return out


def _event(raw: Any, path: str, p: _Problems, maxima: Any, *, chained: bool) -> EventSpec | None:
    if not isinstance(raw, dict):
        p.add(path, "an event must be a mapping")
        return None
    _check_keys(raw, _EVENT_KEYS, path, p)
    ev = EventSpec(id=_str(raw, "id", path, p))
    ev.name = _str(raw, "name", path, p, required=False, rule="text")
    if chained and set(raw) <= {"id", "name"}:
        return ev  # a reference to an event defined elsewhere in the package
    dt_ = raw.get("datatype", 0)
    if dt_ not in (0, "json", "JSON"):
        p.add(f"{path}.datatype", f"datatype {dt_!r} is not supported: only 0 (JSON)")
    schema = raw.get("schema")
    if schema is None:
        p.add(f"{path}.schema", "'schema' is required")
    elif not isinstance(schema, dict):
        p.add(f"{path}.schema", "'schema' must be a mapping with 'id' and 'schemaref'")
    else:
        _check_keys(schema, _SCHEMA_KEYS, f"{path}.schema", p)
        ev.schema = SchemaRef(id=_str(schema, "id", f"{path}.schema", p),
                              schemaref=_str(schema, "schemaref", f"{path}.schema", p, rule="file"),
                              name=_str(schema, "name", f"{path}.schema", p, required=False, rule="text"))
    ev.supplierqueue = _str(raw, "supplierqueue", path, p)
    ev.runtime = _str(raw, "runtime", path, p)
    retries = raw.get("retries", 0)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
        p.add(f"{path}.retries", f"'retries' must be an integer from 0 to {MAX_RETRIES}")
    else:
        ev.retries = retries
    ev.limits = _limits(raw.get("limits"), f"{path}.limits", p, maxima)
    if raw.get("schedule") is not None:
        ev.schedule = _schedule(raw["schedule"], f"{path}.schedule", p)
    if raw.get("mqtt") is not None:
        ev.mqtt = _mqtt(raw["mqtt"], f"{path}.mqtt", p)
    if raw.get("environment") is not None:
        ev.environment = _environment(raw["environment"], f"{path}.environment", p)
    if raw.get("locks") is not None:
        ev.locks = _locks(raw["locks"], f"{path}.locks", p)
    ev.flow = parse_flow(raw, path, p.add)
    ev.priority = parse_priority(raw, "priority", path, p.add)
    return ev


def _locks(raw: Any, path: str, p: _Problems) -> list[str]:
    """``locks: [name, ...]``: kept sorted, the order every worker takes them in."""
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        p.add(path, "'locks' must be a non-empty list of lock names")
        return []
    if len(raw) > MAX_LOCKS:
        p.add(path, f"'locks' names {len(raw)} locks; at most {MAX_LOCKS} are allowed")
        return []
    names: list[str] = []
    for i, name in enumerate(raw):
        problem = name_problem(name, "lock name")
        if problem:
            p.add(f"{path}[{i}]", problem)
        elif name in names:
            p.add(f"{path}[{i}]", f"lock {name!r} is named twice")
        else:
            names.append(name)
    return sorted(names)


def _mqtt(raw: Any, path: str, p: _Problems) -> MqttSpec | None:
    """``mqtt: "<topic>"`` or ``mqtt: {topic, qos}``."""
    if isinstance(raw, str):
        raw = {"topic": raw}
    if not isinstance(raw, dict):
        p.add(path, "'mqtt' must be a topic or a mapping with 'topic' and 'qos'")
        return None
    _check_keys(raw, _MQTT_KEYS, path, p)
    ok = True
    topic = raw.get("topic")
    if topic is None:
        p.add(f"{path}.topic", "'topic' is required: an MQTT topic filter within the tenant's namespace, "
                               "e.g. 'sensors/+/temperature'")
        ok = False
    else:
        try:
            check_filter(topic)
        except TopicError as exc:
            p.add(f"{path}.topic", f"'topic' {exc}")
            ok = False
    qos = raw.get("qos", DEFAULT_QOS)
    if isinstance(qos, bool) or not isinstance(qos, int) or qos not in QOS_LEVELS:
        p.add(f"{path}.qos", f"'qos' must be 0 (at most once) or 1 (at least once, deduplicated by the bridge); "
                             f"got {qos!r}" + ("; QoS 2 is not supported: use 1" if qos == 2 else ""))
        ok = False
    return MqttSpec(topic=topic, qos=qos) if ok and topic is not None else None


def _environment(raw: Any, path: str, p: _Problems) -> dict[str, dict[str, str]]:
    """``environment: {NAME: plain value, NAME: {secret: stored-variable}}``."""
    from .names import name_problem as _name_problem
    if not isinstance(raw, dict):
        p.add(path, "'environment' must be a mapping of variable names to values or {secret: name}")
        return {}
    if len(raw) > MAX_ENV_VARS:
        p.add(path, f"'environment' has {len(raw)} variables; at most {MAX_ENV_VARS} are allowed")
        return {}
    out: dict[str, dict[str, str]] = {}
    for name, value in raw.items():
        where = f"{path}.{name}"
        if not _ENV_NAME_RE.fullmatch(name):
            p.add(where, f"environment variable name {name!r} is not valid: it must match {ENV_NAME_RULE} "
                         "(a POSIX name: letters, digits, underscores, not starting with a digit)")
            continue
        if isinstance(value, dict):
            if set(value) != {"secret"}:
                p.add(where, "a secret reference is a mapping with exactly one key, 'secret' "
                             "(the name given to `jobico env set NAME --secret`)")
                continue
            problem = _name_problem(value["secret"], "secret name")
            if problem:
                p.add(f"{where}.secret", problem)
                continue
            out[name] = {"secret": value["secret"]}
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (int, float)):
            value = str(value)
        elif value is None:
            value = ""
        if not isinstance(value, str):
            p.add(where, "an environment value must be a string, a number, true/false, or {secret: name}")
            continue
        if "\0" in value:
            p.add(where, "an environment value must not contain NUL characters")
            continue
        if len(value.encode("utf-8", "surrogatepass")) > MAX_ENV_VALUE_BYTES:
            p.add(where, f"the value is longer than {MAX_ENV_VALUE_BYTES} bytes")
            continue
        out[name] = {"value": value}
    return out


def _schedule(raw: Any, path: str, p: _Problems) -> ScheduleSpec | None:
    """``schedule: "<cron>"`` or ``schedule: {cron, timezone, payload}``."""
    if isinstance(raw, str):
        raw = {"cron": raw}
    if not isinstance(raw, dict):
        p.add(path, "'schedule' must be a cron expression or a mapping with 'cron', 'timezone' and 'payload'")
        return None
    _check_keys(raw, _SCHEDULE_KEYS, path, p)
    ok = True
    expression, timezone = raw.get("cron"), raw.get("timezone", "UTC")
    if expression is None:
        p.add(f"{path}.cron", "'cron' is required: 5 fields (minute hour day month weekday), or 6 with "
                              "leading seconds")
        ok = False
    else:
        try:
            expression = check_expression(expression)
        except CronError as exc:
            p.add(f"{path}.cron", f"'cron' {exc}")
            ok = False
    try:
        timezone = zone(timezone).key
    except CronError as exc:
        p.add(f"{path}.timezone", f"'timezone' {exc}")
        ok = False
    payload = raw.get("payload", {})
    try:
        text = dumps(payload)
        text.encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError) as exc:
        p.add(f"{path}.payload", f"'payload' must be plain JSON (mappings, lists, strings, numbers, true/false, "
                                 f"null): {exc}")
        ok = False
    if not ok or expression is None:
        return None
    return ScheduleSpec(cron=expression, timezone=timezone, payload=text)


def parse_package(source: str | bytes | dict, *, maxima: Any = None) -> PackageSpec:
    """Parse and validate a package; raises ``Invalid`` listing every problem."""
    maxima = maxima or MAX_LIMITS
    p = _Problems()
    raw = _root(source, p)
    _check_keys(raw, _ROOT_KEYS, "", p)
    spec = PackageSpec(id=_str(raw, "id", "", p, rule="package"))
    spec.name = _str(raw, "name", "", p, required=False, rule="text")
    if raw.get("tenant") is not None:
        spec.tenant = _str(raw, "tenant", "", p)
    if raw.get("environment") is not None:
        spec.environment = _environment(raw["environment"], "environment", p)
    spec.max_priority = parse_priority(raw, "max_priority", "", p.add)
    seen_queues = _queues(raw, spec, p)
    _runtimes(raw, spec, p, maxima)
    _chained_events(spec, _jobs(raw, spec, p, maxima), p, maxima)
    _cross_references(raw, spec, seen_queues, p)
    p.raise_if_any()
    return spec


def _root(source: str | bytes | dict, p: _Problems) -> dict:
    """The package's mapping (YAML parsed; the camel-case dialect's ``package:`` root unwrapped)."""
    raw = source if isinstance(source, dict) else load_yaml(source)
    if not isinstance(raw, dict):
        p.add("", "a package must be a YAML mapping")
        p.raise_if_any()
    if "package" in raw:  # the camel-case dialect
        if len(raw) != 1:
            p.add("", "with a root 'package:' key, nothing else may stand at the root")
        raw = _lower_keys(raw["package"])
        if not isinstance(raw, dict):
            p.add("package", "'package' must be a mapping")
            p.raise_if_any()
    return raw


def _queues(raw: dict, spec: PackageSpec, p: _Problems) -> set[str]:
    seen_queues: set[str] = set()
    for i, q in enumerate(_list(raw, "queues", "", p)):
        path = f"queues[{i}]"
        if not isinstance(q, dict):
            p.add(path, "a queue must be a mapping with an 'id'")
            continue
        _check_keys(q, _QUEUE_KEYS, path, p)
        qs = QueueSpec(id=_str(q, "id", path, p), name=_str(q, "name", path, p, required=False, rule="text"))
        if qs.id in seen_queues:
            p.add(f"{path}.id", f"queue id {qs.id!r} is defined twice")
        seen_queues.add(qs.id)
        spec.queues.append(qs)
    return seen_queues


def _runtimes(raw: dict, spec: PackageSpec, p: _Problems, maxima: Any) -> None:
    for i, r in enumerate(_list(raw, "runtimes", "", p)):
        path = f"runtimes[{i}]"
        if not isinstance(r, dict):
            p.add(path, "a runtime must be a mapping")
            continue
        _check_keys(r, _RUNTIME_KEYS, path, p)
        rs = RuntimeSpec(id=_str(r, "id", path, p), moduleref=_str(r, "moduleref", path, p, rule="file"),
                         name=_str(r, "name", path, p, required=False, rule="text"))
        main = r.get("mainfuncname", "event")
        if not isinstance(main, str) or not main or len(main) > 128:
            p.add(f"{path}.mainfuncname", "'mainfuncname' must be a non-empty export name")
        else:
            rs.mainfuncname = main
        rs.language = _language(r, path, p)
        rs.limits = _limits(r.get("limits"), f"{path}.limits", p, maxima)
        if rs.id in spec.runtimes:
            p.add(f"{path}.id", f"runtime id {rs.id!r} is defined twice")
        spec.runtimes[rs.id] = rs


def _language(r: dict, path: str, p: _Problems) -> str:
    """A runtime's language from its ``type`` (0 WASM, 1 Python) and/or ``language``."""
    rtype, lang = r.get("type"), r.get("language")
    by_type = ({0: "wasm", 1: "python", None: None}.get(rtype, "?")
               if rtype is None or (isinstance(rtype, int) and not isinstance(rtype, bool)) else "?")
    if by_type == "?":
        p.add(f"{path}.type", f"runtime type {rtype!r} is not known: 0 (WASM) or 1 (Python)")
    if lang is not None and lang not in ("wasm", "python"):
        p.add(f"{path}.language", f"language {lang!r} is not known: 'wasm' or 'python'")
    if by_type not in (None, "?") and lang is not None and by_type != lang:
        p.add(f"{path}.language", f"language {lang!r} contradicts type {rtype!r}")
    return lang or (by_type if by_type not in (None, "?") else "wasm")


def _jobs(raw: dict, spec: PackageSpec, p: _Problems, maxima: Any) -> list[tuple[str, str, str, Any]]:
    """The jobs' top-level events into ``spec``; returns their ok/error events, still raw:
    (parent id, role, path, raw)."""
    chained: list[tuple[str, str, str, Any]] = []
    for i, j in enumerate(_list(raw, "jobs", "", p)):
        path = f"jobs[{i}]"
        if not isinstance(j, dict):
            p.add(path, "a job must be a mapping with an 'event'")
            continue
        _check_keys(j, _JOB_KEYS, path, p)
        if "event" not in j:
            p.add(f"{path}.event", "'event' is required")
            continue
        ev = _event(j["event"], f"{path}.event", p, maxima, chained=False)
        if ev is None:
            continue
        if ev.id in spec.events:
            p.add(f"{path}.event.id", f"event id {ev.id!r} is defined twice")
        spec.events[ev.id] = ev
        result = j.get("result")
        if result is None:
            continue
        if not isinstance(result, dict):
            p.add(f"{path}.result", "'result' must be a mapping with 'ok' and/or 'error'")
            continue
        _check_keys(result, _RESULT_KEYS, f"{path}.result", p)
        for role in ("ok", "error"):
            if result.get(role) is not None:
                chained.append((ev.id, role, f"{path}.result.{role}", result[role]))
    return chained


def _chained_events(spec: PackageSpec, chained: list[tuple[str, str, str, Any]], p: _Problems,
                    maxima: Any) -> None:
    """The ok/error events: definitions join ``spec``, references must name a defined event."""
    for parent, role, path, raw_ev in chained:
        ev = _event(raw_ev, path, p, maxima, chained=True)
        if ev is None or not ev.id:
            continue
        is_ref = isinstance(raw_ev, dict) and set(raw_ev) <= {"id", "name"}
        if is_ref:
            if ev.id not in spec.events and not any(
                    c[3].get("id") == ev.id and set(c[3]) - {"id", "name"} for c in chained if isinstance(c[3], dict)):
                p.add(f"{path}.id", f"event {ev.id!r} is not defined in this package (give its schema, "
                                    "supplierqueue and runtime, or define it as a job)")
        elif ev.id in spec.events:
            p.add(f"{path}.id", f"event id {ev.id!r} is defined twice")
        else:
            spec.events[ev.id] = ev
        if parent in spec.events:
            setattr(spec.events[parent], role, ev.id)


def _cross_references(raw: dict, spec: PackageSpec, seen_queues: set[str], p: _Problems) -> None:
    """Each event's environment size, queue and runtime; no two MQTT topics overlap."""
    for eid, ev in spec.events.items():
        where = _event_path(raw, eid)
        merged = len(spec.environment_for(eid))
        if merged > MAX_ENV_VARS:
            p.add(f"{where}.environment", f"the event's environment (with the package's) has {merged} variables; "
                                          f"at most {MAX_ENV_VARS} are allowed")
        if ev.supplierqueue and ev.supplierqueue not in seen_queues:
            _missing(p, f"{where}.supplierqueue", "queue", ev.supplierqueue, seen_queues)
        if ev.runtime and ev.runtime not in spec.runtimes:
            _missing(p, f"{where}.runtime", "runtime", ev.runtime, set(spec.runtimes))
        if ev.schedule is not None and ev.flow:
            for path in missing_keys(ev.flow, json.loads(ev.schedule.payload)):
                p.add(f"{where}.schedule.payload", f"the payload has no value at {path}, which the event's flow "
                                                   "control uses as its key")
    topics = sorted(spec.mqtt_events().items())
    for i, (eid, m) in enumerate(topics):
        for other, o in topics[:i]:
            if overlaps(m.topic, o.topic):
                p.add(f"{_event_path(raw, eid)}.mqtt.topic",
                      f"topic {m.topic!r} overlaps topic {o.topic!r} of event {other!r}: a message would reach "
                      "both events; an MQTT message becomes one event")


def _missing(p: _Problems, path: str, what: str, name: str, known: set[str]) -> None:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else (f"; defined: {', '.join(sorted(known))}" if known else "")
    p.add(path, f"{what} {name!r} is not defined in this package{hint}")


def _event_path(raw: dict, eid: str) -> str:
    for i, j in enumerate(raw.get("jobs") or []):
        if not isinstance(j, dict):
            continue
        if isinstance(j.get("event"), dict) and j["event"].get("id") == eid:
            return f"jobs[{i}].event"
        for role in ("ok", "error"):
            r = (j.get("result") or {}).get(role) if isinstance(j.get("result"), dict) else None
            if isinstance(r, dict) and r.get("id") == eid:
                return f"jobs[{i}].result.{role}"
    return f"events.{eid}"
