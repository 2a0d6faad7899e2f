"""Flow control per key (an event's ``concurrency:``, ``rate_limit:``, ``debounce:``): the package
syntax, its validation, and the key each execution gets from its payload.

A *key* is either a fixed string (every execution of the event shares it) or a JSONPath into the
event's payload, in a small safe subset: ``$`` followed by ``.name`` and ``[index]`` steps
(``$.customer.id``, ``$.items[0].sku``). Its value becomes the key: a string as it is, any other
JSON value as canonical JSON; a key longer than ``MAX_KEY_CHARS`` is replaced by its sha256.

A payload lacking the path is refused by the webhook (and the MQTT bridge) with 422 naming the
path (``missing_keys``); a chained event, which has no caller to answer, gets the empty key.

What one execution must respect is resolved when it is created and kept on its row as JSON
(``Execution.flow``, ``resolve``): ``{"c": [key, limit], "r": [key, per_second, burst],
"d": [key, seconds]}``, each part present only when declared. Events declaring none of them get
no ``flow`` at all and take exactly the path they took before (no Redis call, tasks batched).
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

from .canonical import dumps

FLOW_KEYS = ("concurrency", "rate_limit", "debounce")
MAX_CONCURRENCY = 1000
MAX_RATE = 10000.0           # executions per second
MAX_BURST = 10000
MAX_DEBOUNCE_S = 3600.0
MAX_KEY_CHARS = 200          # a longer key value is replaced by "sha256:<hex>"
MAX_FIXED_KEY_CHARS = 128
_PATH_RE = re.compile(r"^\$((\.[A-Za-z_][A-Za-z0-9_-]*)|(\[(0|[1-9][0-9]{0,5})\])){1,16}$")
_STEP_RE = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]")
_FIELDS = {"concurrency": {"key", "limit"}, "rate_limit": {"key", "per_second", "burst"},
           "debounce": {"key", "seconds"}}
PATH_HELP = ("a JSONPath into the payload ('$' then '.name' and '[index]' steps, e.g. '$.customer.id' or "
             "'$.items[0].sku') or a fixed string")


def _steps(path: str) -> list[str | int]:
    return [m.group(1) if m.group(1) is not None else int(m.group(2)) for m in _STEP_RE.finditer(path[1:])]


def _key_problem(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return f"'key' must be {PATH_HELP}"
    if value.startswith("$"):
        if not _PATH_RE.fullmatch(value):
            return (f"'key' {value!r} is not a supported JSONPath: only '$' followed by up to 16 '.name' "
                    "and '[index]' steps (no wildcards, filters, slices or quotes), e.g. '$.customer.id'")
        return None
    if len(value) > MAX_FIXED_KEY_CHARS or any(ord(c) < 32 for c in value):
        return f"a fixed 'key' must be 1 to {MAX_FIXED_KEY_CHARS} printable characters"
    return None


def _number(raw: dict, name: str, path: str, add: Callable[[str, str], None], *, integer: bool,
            low: float, high: float, default: Any = None) -> Any:
    value = raw.get(name, default)
    where = f"{path}.{name}"
    if value is None:
        add(where, f"{name!r} is required")
        return None
    ok = not isinstance(value, bool) and (isinstance(value, int) if integer else isinstance(value, (int, float)))
    if not ok or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        add(where, f"{name!r} must be {kind} from {low:g} to {high:g}; got {value!r}")
        return None
    return value


def parse_flow(raw_event: dict, path: str, add: Callable[[str, str], None]) -> dict[str, dict]:
    """The event's flow-control declarations, normalised; problems go to ``add(path, message)``."""
    out: dict[str, dict] = {}
    for name in FLOW_KEYS:
        raw = raw_event.get(name)
        if raw is None:
            continue
        where = f"{path}.{name}"
        if not isinstance(raw, dict):
            add(where, f"{name!r} must be a mapping with {', '.join(sorted(_FIELDS[name]))}")
            continue
        for k in raw:
            if k not in _FIELDS[name]:
                add(f"{where}.{k}", f"unknown key {k!r}; known keys: {', '.join(sorted(_FIELDS[name]))}")
        problem = _key_problem(raw.get("key"))
        if problem:
            add(f"{where}.key", problem)
        if name == "concurrency":
            spec = {"limit": _number(raw, "limit", where, add, integer=True, low=1, high=MAX_CONCURRENCY)}
        elif name == "rate_limit":
            spec = {"per_second": _number(raw, "per_second", where, add, integer=False, low=0.001, high=MAX_RATE),
                    "burst": _number(raw, "burst", where, add, integer=True, low=1, high=MAX_BURST, default=1)}
        else:
            spec = {"seconds": _number(raw, "seconds", where, add, integer=False, low=0.1, high=MAX_DEBOUNCE_S)}
        if problem is None and None not in spec.values():
            out[name] = {"key": raw["key"], **spec}
    return out


def key_value(expr: str, element: Any) -> str | None:
    """The key ``expr`` gives for a payload element; None when the path is missing in it."""
    if not expr.startswith("$"):
        return expr
    value = element
    for step in _steps(expr):
        if isinstance(step, int):
            if not isinstance(value, list) or step >= len(value):
                return None
            value = value[step]
        else:
            if not isinstance(value, dict) or step not in value:
                return None
            value = value[step]
    text = value if isinstance(value, str) else dumps(value)
    if len(text) > MAX_KEY_CHARS:
        text = "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return text


def missing_keys(flow: dict[str, dict], element: Any) -> list[str]:
    """The JSONPaths of ``flow`` that ``element`` lacks (sorted, once each)."""
    return sorted({f["key"] for f in flow.values() if key_value(f["key"], element) is None})


def resolve(flow: dict[str, dict], element: Any) -> str | None:
    """The row's ``flow`` column for one payload element (None: nothing declared)."""
    if not flow:
        return None
    out: dict[str, list] = {}
    for name, f in flow.items():
        key = key_value(f["key"], element)
        key = "" if key is None else key
        if name == "concurrency":
            out["c"] = [key, f["limit"]]
        elif name == "rate_limit":
            out["r"] = [key, f["per_second"], f["burst"]]
        elif name == "debounce":
            out["d"] = [key, f["seconds"]]
    return json.dumps(out, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def debounce_key(flow_column: str | None) -> str | None:
    """The debounce key of a row's ``flow`` (``Execution.debounce_key``), or None."""
    if not flow_column:
        return None
    d = json.loads(flow_column).get("d")
    return d[0] if d else None


def flow_record(flow_column: str | None) -> dict[str, dict] | None:
    """A row's ``flow`` as the execution record shows it (None: nothing declared)."""
    if not flow_column:
        return None
    f = json.loads(flow_column)
    out: dict[str, dict] = {}
    if "c" in f:
        out["concurrency"] = {"key": f["c"][0], "limit": f["c"][1]}
    if "r" in f:
        out["rate_limit"] = {"key": f["r"][0], "per_second": f["r"][1], "burst": f["r"][2]}
    if "d" in f:
        out["debounce"] = {"key": f["d"][0], "seconds": f["d"][1]}
    return out


def leases(package: str, event: str, locks: tuple[str, ...], flow: str | None) -> tuple[tuple[str, ...], dict]:
    """The leases an execution takes before its claim (``jobico_core.locks``): its named locks
    (one holder each) and, with ``concurrency:``, its key's counted lease
    ``concurrency/<package>/<event>/<key>`` (``limit`` holders); and the latter's limits."""
    c = json.loads(flow).get("c") if flow else None
    if not c:
        return locks, {}
    name = f"concurrency/{package}/{event}/{c[0]}"
    return (*locks, name), {name: int(c[1])}


# -- priorities (jobico_core.priority orders them) ----------------------------------------------
MAX_PRIORITY = 10
PRIORITY_HEADER = "X-Jobico-Priority"


def parse_priority(raw: dict, key: str, path: str, add: Callable[[str, str], None]) -> int | None:
    """``priority: 1..10`` of an event, or the package's ``max_priority`` (the header's bound)."""
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PRIORITY:
        add(f"{path}.{key}" if path else key, f"{key!r} must be an integer from 1 (lowest) to {MAX_PRIORITY} "
                                              f"(highest); got {value!r}")
        return None
    return value


def request_priority(value: str | None, default: int | None, maximum: int) -> int | None:
    """The priority of a request's executions: its ``X-Jobico-Priority`` header (1 to the
    package's ``max_priority``), else the event's ``priority``; raises ValueError (the message)
    for a header out of bounds."""
    if value is None:
        return default
    text = value.strip()
    if not text.isdigit() or not 1 <= int(text) <= maximum:
        raise ValueError(f"{PRIORITY_HEADER} must be an integer from 1 to {maximum} (the package's "
                         f"max_priority); got {value!r}")
    return int(text)
