"""JSON Schemas as tenants upload them: checked once at upload, compiled once per version.

Tenant schemas are untrusted input to our API processes, so:
- ``$ref``s resolve only inside the schema (jsonschema's default registry
  would fetch http(s) refs: a server-side request forgery); nothing is fetched.
- ``pattern``/``patternProperties`` run on RE2 (linear time), never on Python's
  backtracking ``re``: a pattern like ``(a+)+$`` cannot pin an API worker.
  Patterns RE2 cannot run (backreferences, lookaround) are refused at upload.
"""
from __future__ import annotations

from typing import Any

import re2
import referencing
import referencing.exceptions
import referencing.jsonschema
from jsonschema import ValidationError
from jsonschema import exceptions as js_exceptions
from jsonschema import validators as js_validators
from jsonschema_specifications import REGISTRY as _SPECIFICATIONS

from .cache import LRU
from .canonical import loads as strict_loads
from .errors import Invalid

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # an invalid pattern is reported to the tenant, not logged by RE2
_patterns: LRU = LRU(8192)


def linear_regex(pattern: str):
    """``pattern`` compiled with RE2; raises ``re2.error`` when RE2 cannot run it."""
    return _patterns.get_or_create(pattern, lambda: re2.compile(pattern, _RE2_OPTIONS))


def _refuse_retrieval(uri: str):
    # jsonschema's default registry would fetch http(s) $refs with urllib (SSRF): never
    raise referencing.exceptions.NoSuchResource(ref=uri)  # type: ignore[call-arg]  # an attrs class


# the metaschemas (bundled, no network) + nothing else: any other $ref must resolve inside the schema
NO_REMOTE = _SPECIFICATIONS.combine(referencing.Registry(retrieve=_refuse_retrieval))  # type: ignore[call-arg]


def ref_problems(schema: Any, cls: Any) -> list[dict[str, str]]:
    """Every ``$ref``/``$dynamicRef`` of ``schema`` that does not resolve within it (or a metaschema).

    Local (``#...``) refs and refs to subschemas the schema embeds with ``$id`` are fine;
    a remote one (``http://...``, ``file:...``, ``other.json``) is refused: nothing is ever fetched.
    """
    if not isinstance(schema, dict):
        return []
    meta = cls.META_SCHEMA.get("$id") or cls.META_SCHEMA.get("id") or ""
    spec = referencing.jsonschema.specification_with(meta, default=referencing.jsonschema.DRAFT202012)
    paths: dict[int, str] = {}

    def index(node: Any, path: str) -> None:
        if isinstance(node, dict):
            paths[id(node)] = path
            for k, v in node.items():
                index(v, f"{path}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                index(v, f"{path}/{i}")
    index(schema, "")
    resource = spec.create_resource(schema)
    registry = NO_REMOTE.with_resource(resource.id() or "", resource).crawl()
    problems: list[dict[str, str]] = []

    def walk(resolver, res) -> None:
        node = res.contents
        if isinstance(node, dict):
            for kw in ("$ref", "$dynamicRef", "$recursiveRef"):
                ref = node.get(kw)
                if not isinstance(ref, str):
                    continue
                try:
                    resolver.lookup(ref)
                except referencing.exceptions.Unresolvable as exc:
                    path = f"{paths.get(id(node), '')}/{kw}".lstrip("/")
                    if ref.startswith("#"):
                        why = f"{kw} {ref!r} does not resolve within the schema ({type(exc).__name__})"
                    else:
                        why = (f"remote {kw} {ref!r} is not allowed: a schema may only refer to itself (#...) "
                               "or to subschemas it embeds with $id; nothing is fetched")
                    problems.append({"path": path, "message": why})
        for sub in res.subresources():
            walk(resolver.in_subresource(sub), sub)
    walk(registry.resolver(base_uri=resource.id() or ""), resource)
    return problems


def pattern_problems(schema: Any) -> list[dict[str, str]]:
    """Every ``pattern``/``patternProperties`` regex that RE2 cannot run in linear time."""
    problems: list[dict[str, str]] = []

    def check(pattern: Any, path: str) -> None:
        if not isinstance(pattern, str):
            return
        try:
            linear_regex(pattern)
        except re2.error as exc:
            problems.append({"path": path, "message": f"pattern {pattern!r} cannot be matched in linear time "
                                                      f"(backreferences and lookaround are not supported): {exc}"})

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "pattern":
                    check(v, f"{path}/pattern".lstrip("/"))
                elif k == "patternProperties" and isinstance(v, dict):
                    for pat in v:
                        check(pat, f"{path}/patternProperties/{pat}".lstrip("/"))
                walk(v, f"{path}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}/{i}")
    walk(schema, "")
    return problems


def _pattern(validator, patrn, instance, schema):
    if validator.is_type(instance, "string") and not linear_regex(patrn).search(instance):
        yield ValidationError(f"{instance!r} does not match {patrn!r}")


def _pattern_properties(validator, pattern_properties, instance, schema):
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in pattern_properties.items():
        regex = linear_regex(pattern)
        for k, v in instance.items():
            if regex.search(k):
                yield from validator.descend(v, subschema, path=k, schema_path=pattern)


def _linear(cls):
    return js_validators.extend(cls, {"pattern": _pattern, "patternProperties": _pattern_properties})


def check_schema_bytes(data: bytes) -> dict[str, Any] | bool:
    """A schema must be JSON, a valid JSON Schema, self-contained and RE2-safe; returns it parsed."""
    try:
        schema = strict_loads(data)  # UTF-8, no NaN/Infinity
    except (ValueError, RecursionError) as exc:
        raise Invalid(f"schema is not valid JSON: {exc}", {"file": [str(exc)]}) from None
    if not isinstance(schema, (dict, bool)):
        raise Invalid("schema must be a JSON object (or a boolean)", {"file": ["not an object"]})
    cls = js_validators.validator_for(schema, default=js_validators.Draft202012Validator)
    try:
        cls.check_schema(schema)
        problems = ref_problems(schema, cls) + pattern_problems(schema)
    except RecursionError:
        raise Invalid("schema is nested too deeply to be checked", {"file": ["nested too deeply"]}) from None
    except js_exceptions.SchemaError as exc:
        path = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise Invalid(f"not a valid JSON Schema at {path}: {exc.message}",
                      {"file": [{"path": path, "message": exc.message}]}) from None
    if problems:
        raise Invalid(f"not a usable JSON Schema at {problems[0]['path']}: {problems[0]['message']}",
                      {"file": problems})
    return schema


def compile_validator(schema: Any):
    """The validator events are checked with (refs local only, patterns on RE2)."""
    cls = js_validators.validator_for(schema, default=js_validators.Draft202012Validator)
    problems = ref_problems(schema, cls) + pattern_problems(schema)
    if problems:
        raise Invalid(f"the event's schema cannot be used: {problems[0]['path']}: {problems[0]['message']}; "
                      "upload a fixed schema and redeploy", {"schema": problems})
    return _linear(cls)(schema, format_checker=cls.FORMAT_CHECKER, registry=NO_REMOTE)


def _json_path(parts) -> str:
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def schema_errors(validator, element: Any, limit: int = 20) -> list[dict[str, str]]:
    try:
        errors = sorted(validator.iter_errors(element), key=lambda e: (list(map(str, e.absolute_path)), e.validator))
    except RecursionError:  # a recursive schema ($ref: "#") and an element nested hundreds deep
        return [{"path": "$", "rule": "depth", "message": "the event is nested too deeply to be validated"}]
    return [{"path": _json_path(e.absolute_path), "rule": str(e.validator), "message": e.message}
            for e in errors[:limit]]


# keywords that assert nothing about an instance: identifiers, annotations, and definitions
# reached only through a ``$ref`` (which a schema made of these keywords alone does not have)
_NOT_ASSERTIONS = frozenset({"$schema", "$id", "$anchor", "$comment", "title", "description", "examples",
                             "default", "deprecated", "readOnly", "writeOnly", "$defs", "definitions"})


def accepts_everything(schema: Any) -> bool:
    """Whether no instance can fail ``schema`` (``true``, ``{}``, or annotations only, such as
    ``{"$schema": ..., "title": ...}``): then no element need be validated against it."""
    return schema is True or (isinstance(schema, dict) and schema.keys() <= _NOT_ASSERTIONS)


def elements_errors(validator, elements: list) -> dict[str, list[dict[str, str]]]:
    """``schema_errors`` of each element that has any, keyed by its index (``"0"``, ``"1"``, ...).

    The same as asking ``schema_errors`` of every element, faster: nothing is validated
    against a schema that ``accepts_everything`` (a schema of annotations only: 0.6 us per
    event saved); otherwise each element is first checked by ``is_valid`` (which stops at a
    first error and builds and sorts no list; for a valid event it walks the schema as
    ``schema_errors`` does, so little is saved), and only one found invalid gets its sorted
    errors."""
    if accepts_everything(validator.schema):
        return {}
    problems = {}
    is_valid = validator.is_valid
    for i, element in enumerate(elements):
        try:
            if is_valid(element):
                continue
        except RecursionError:  # schema_errors reports it
            pass
        errors = schema_errors(validator, element)
        if errors:
            problems[str(i)] = errors
    return problems
