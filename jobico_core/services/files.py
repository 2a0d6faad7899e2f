"""The tenant's repository: uploaded schemas and modules, content-addressed."""
from __future__ import annotations

import json
from typing import Any

import referencing
import referencing.exceptions
import referencing.jsonschema
from jsonschema import exceptions as js_exceptions
from jsonschema import validators as js_validators
from jsonschema_specifications import REGISTRY as _SPECIFICATIONS
from sqlalchemy import select

from ..abi import InvalidModule, inspect_module
from ..canonical import loads as strict_loads
from ..db import RepoFile, utcnow
from ..errors import Invalid, NotFound, TooLarge
from ..names import file_name_problem
from ..storage import blob_key, sha256_hex
from .context import Context

KINDS = ("wasm", "schema")
_EXT_KIND = {".wasm": "wasm", ".json": "schema"}


def kind_from_name(name: str) -> str:
    for ext, kind in _EXT_KIND.items():
        if name.lower().endswith(ext):
            return kind
    raise Invalid(f"cannot tell the kind of {name!r} from its extension: use .wasm for modules and "
                  ".json for schemas (or give the kind explicitly)", {"name": ["unknown extension"]})


def _refuse_retrieval(uri: str):
    # jsonschema's default registry would fetch http(s) $refs with urllib (SSRF): never
    raise referencing.exceptions.NoSuchResource(ref=uri)


# the metaschemas (bundled, no network) + nothing else: any other $ref must resolve inside the schema
_NO_REMOTE = _SPECIFICATIONS.combine(referencing.Registry(retrieve=_refuse_retrieval))


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
    registry = _NO_REMOTE.with_resource(resource.id() or "", resource).crawl()
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


def check_schema_bytes(data: bytes) -> dict[str, Any]:
    """A schema must be JSON and a valid JSON Schema; returns the parsed schema."""
    try:
        schema = strict_loads(data)  # UTF-8, no NaN/Infinity
    except (ValueError, RecursionError) as exc:
        raise Invalid(f"schema is not valid JSON: {exc}", {"file": [str(exc)]}) from None
    if not isinstance(schema, (dict, bool)):
        raise Invalid("schema must be a JSON object (or a boolean)", {"file": ["not an object"]})
    cls = js_validators.validator_for(schema, default=js_validators.Draft202012Validator)
    try:
        cls.check_schema(schema)
        problems = ref_problems(schema, cls)
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


def check_module_bytes(data: bytes) -> None:
    try:
        inspect_module(data)
    except InvalidModule as exc:
        raise Invalid(f"not a valid jobicolet module: {exc}", {"file": [str(exc)]}) from None


def upload(ctx: Context, tenant: str, name: str, data: bytes, kind: str | None = None) -> RepoFile:
    problem = file_name_problem(name)
    if problem:
        raise Invalid(problem, {"name": [problem]})
    kind = kind or kind_from_name(name)
    if kind not in KINDS:
        raise Invalid(f"kind must be one of {', '.join(KINDS)}", {"kind": [kind]})
    limit = ctx.settings.max_upload_kb * 1024
    if len(data) > limit:
        raise TooLarge(f"file is {len(data)} bytes, more than the {ctx.settings.max_upload_kb} KB limit")
    if not data:
        raise Invalid("file is empty", {"file": ["empty"]})
    if kind == "schema":
        check_schema_bytes(data)
    else:
        check_module_bytes(data)
    digest = sha256_hex(data)
    key = blob_key(tenant, digest)
    if not ctx.store.exists(key):
        ctx.store.put(key, data)
    with ctx.db.session() as s:
        row = s.scalar(select(RepoFile).where(RepoFile.tenant_id == tenant, RepoFile.name == name))
        if row is None:
            row = RepoFile(tenant_id=tenant, name=name)
            s.add(row)
        row.kind, row.sha256, row.size, row.object_key, row.uploaded_at = kind, digest, len(data), key, utcnow()
    return row


def list_files(ctx: Context, tenant: str, kind: str | None = None) -> list[RepoFile]:
    with ctx.db.session() as s:
        q = select(RepoFile).where(RepoFile.tenant_id == tenant)
        if kind:
            q = q.where(RepoFile.kind == kind)
        return list(s.scalars(q.order_by(RepoFile.name)))


def get_file(ctx: Context, tenant: str, name: str) -> RepoFile:
    with ctx.db.session() as s:
        row = s.scalar(select(RepoFile).where(RepoFile.tenant_id == tenant, RepoFile.name == name))
        if row is None:
            raise NotFound(f"file {name!r} is not in tenant {tenant!r}'s repository")
        return row


def read_blob(ctx: Context, tenant: str, sha256: str) -> bytes:
    """Bytes of a pinned file, verified against its hash."""
    data = ctx.store.get(blob_key(tenant, sha256))
    if sha256_hex(data) != sha256:
        raise NotFound(f"stored object for {sha256} is corrupt (hash mismatch)")
    return data


def schema_validator(ctx: Context, tenant: str, sha256: str):
    """A compiled validator for a pinned schema, cached per process by content hash.

    Never built per request: the first event of a schema version compiles it.
    ``$ref``s are resolved only inside the schema: jsonschema's default registry
    would fetch remote ones, ours refuses (and a schema stored before uploads
    refused them is a 422 naming the ref, not a fetch).
    """
    def build():
        schema = json.loads(read_blob(ctx, tenant, sha256).decode("utf-8"))
        cls = js_validators.validator_for(schema, default=js_validators.Draft202012Validator)
        problems = ref_problems(schema, cls)
        if problems:
            raise Invalid(f"the event's schema cannot be used: {problems[0]['path']}: {problems[0]['message']}; "
                          "upload a fixed schema and redeploy", {"schema": problems})
        return cls(schema, format_checker=cls.FORMAT_CHECKER, registry=_NO_REMOTE)
    return ctx.validators.get_or_create((tenant, sha256), build)
