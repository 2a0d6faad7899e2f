"""The tenant's repository: uploaded schemas and modules, content-addressed."""
from __future__ import annotations

import json

from sqlalchemy import select

from jobico_runtime import get_runtime
from jobico_runtime.python import check_python, load_python

from ..abi import InvalidModule, inspect_module
from ..db import RepoFile, utcnow
from ..errors import Invalid, NotFound, TooLarge
from ..names import file_name_problem
from ..schemas import check_schema_bytes, compile_validator
from ..storage import blob_key, sha256_hex
from .context import Context

KINDS = ("wasm", "schema", "python")
_EXT_KIND = {".wasm": "wasm", ".json": "schema", ".py": "python", ".zip": "python"}  # .zip: a Python package


def kind_from_name(name: str) -> str:
    for ext, kind in _EXT_KIND.items():
        if name.lower().endswith(ext):
            return kind
    raise Invalid(f"cannot tell the kind of {name!r} from its extension: use .wasm for modules, "
                  ".py (or a .zip package) for Python jobicolets and .json for schemas (or give the kind explicitly)",
                  {"name": ["unknown extension"]})


def check_module_bytes(data: bytes) -> None:
    try:
        inspect_module(data)
    except InvalidModule as exc:
        raise Invalid(f"not a valid jobicolet module: {exc}", {"file": [str(exc)]}) from None


def check_python_bytes(ctx: Context, name: str, data: bytes, main: str | None = None, limits=None) -> None:
    """The guest's own CPython (3.15) judges a Python jobicolet, never the host's Python.

    Without ``main`` (upload): the source must compile (a ``.zip`` package: each of its files,
    after the host's checks of its members and its root ``main.py``). With ``main`` (deploy): its
    top level (a package's ``main.py``, with its imports) must also run and define ``main``. A
    refusal is a 422 naming the file (inside a zip: ``x.zip/pkg/util.py``) and the line; while the
    interpreter is still being compiled on this host, a 503 with Retry-After.
    """
    try:
        module = load_python(data, name)
        runtime = get_runtime(cache_dir=ctx.settings.cache_dir / "compiled",
                              python_cache_dir=ctx.settings.python_cache_dir)
        check_python(runtime, module, main or "event", mode="load" if main else "syntax",
                     limits=limits or ctx.settings.default_limits_for("python"))
    except InvalidModule as exc:
        raise Invalid(f"not a valid Python jobicolet: {exc}", {"file": [str(exc)]}) from None


def upload(ctx: Context, tenant: str, name: str, data: bytes, kind: str | None = None) -> RepoFile:
    kind = check_file(ctx, name, data, kind)
    digest = sha256_hex(data)
    key = blob_key(tenant, digest)
    if not ctx.store.exists(key):
        ctx.store.put(key, data)
    with ctx.db.session() as s:
        row = record_file(s, tenant, name, kind, data, digest)
    return row


def record_file(s, tenant: str, name: str, kind: str, data: bytes, digest: str) -> RepoFile:
    """Create or repoint the repository row of a file whose blob is stored (in the caller's transaction)."""
    row = s.scalar(select(RepoFile).where(RepoFile.tenant_id == tenant, RepoFile.name == name))
    if row is None:
        row = RepoFile(tenant_id=tenant, name=name)
        s.add(row)
    row.kind, row.sha256, row.size, row.object_key, row.uploaded_at = (kind, digest, len(data),
                                                                       blob_key(tenant, digest), utcnow())
    return row


def check_file(ctx: Context, name: str, data: bytes, kind: str | None = None) -> str:
    """Refuse a file the repository must not hold (name, kind, size, content); returns its kind."""
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
    elif kind == "python":
        check_python_bytes(ctx, name, data)
    else:
        check_module_bytes(data)
    return kind


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
        return compile_validator(json.loads(read_blob(ctx, tenant, sha256).decode("utf-8")))
    return ctx.validators.get_or_create((tenant, sha256), build)
