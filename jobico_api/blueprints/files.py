"""The tenant's repository: WASM modules, Python jobicolets and JSON schemas, uploaded as raw bytes."""
from __future__ import annotations

import marshmallow as ma
from flask import Response, g
from flask_smorest import Blueprint

from jobico_core.errors import TooLarge
from jobico_core.services import files as svc

from ..auth import ERROR_SCHEMA, SECURITY, ctx, tenant_required
from ..body import read_body, refuse_forms

blp = Blueprint("files", __name__, url_prefix="/api/v1/files",
                description="The tenant's repository of modules (.wasm), Python jobicolets (.py, or a .zip "
                            "package) and schemas (.json).")


class FileSchema(ma.Schema):
    name = ma.fields.String()
    kind = ma.fields.String(metadata={"description": "wasm, python or schema"})
    sha256 = ma.fields.String()
    size = ma.fields.Integer()
    uploaded_at = ma.fields.DateTime()


class FileListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(FileSchema))


class KindArgs(ma.Schema):
    kind = ma.fields.String(validate=ma.validate.OneOf(svc.KINDS),
                            metadata={"description": "wasm, python or schema (default: from the extension)"})


# what a download is served as, by kind (a Python package zip: application/zip)
MEDIA_TYPES = {"wasm": "application/wasm", "schema": "application/json", "python": "text/x-python"}
ZIP = "application/zip"
# what an upload may be sent as: the bytes are the file whatever the Content-Type (a form is refused: 415)
UPLOAD_TYPES = ("application/octet-stream", *MEDIA_TYPES.values(), ZIP)
BINARY = {"schema": {"type": "string", "format": "binary"}}


def _content(media: str) -> dict:
    # a JSON Schema is JSON (any document); the other kinds are bytes
    return {"schema": {}} if media == "application/json" else BINARY


def media_type(row) -> str:
    if row.kind == "python" and row.name.lower().endswith(".zip"):
        return ZIP
    return MEDIA_TYPES[row.kind]


def _out(row) -> dict:
    return {"name": row.name, "kind": row.kind, "sha256": row.sha256, "size": row.size,
            "uploaded_at": row.uploaded_at}


@blp.route("/<file:name>", methods=["PUT"])
@blp.doc(security=SECURITY, summary="Upload (or replace) a file",
         description="Raw bytes. A schema must be a valid JSON Schema; a module must be a valid jobicolet "
                     "(WASM with the ABI's exports and only allowed imports); a Python jobicolet (.py, or a .zip "
                     "package of .py files with main.py at its root) must compile in the platform's CPython "
                     "(a refusal names the file inside the zip and the line). Re-uploading changes only "
                     "package versions deployed later.",
         requestBody={"required": True, "content": {media: _content(media) for media in UPLOAD_TYPES}})
@tenant_required
@blp.arguments(KindArgs, location="query")
@blp.response(201, FileSchema)
@blp.alt_response(413, schema=ERROR_SCHEMA, description="larger than JOBICO_MAX_UPLOAD_KB")
@blp.alt_response(415, schema=ERROR_SCHEMA, description="sent as a form (multipart/form-data or "
                                                          "application/x-www-form-urlencoded): send the raw bytes")
@blp.alt_response(422, schema=ERROR_SCHEMA, description="invalid name, JSON, JSON Schema, module or Python "
                                                          "jobicolet (source or package zip)")
@blp.alt_response(503, schema=ERROR_SCHEMA, description="a Python jobicolet while this host's sandboxed CPython "
                                                          "is still being compiled (minutes, once per host): "
                                                          "retry after Retry-After seconds",
                  headers={"Retry-After": {"description": "seconds", "schema": {"type": "string"}}})
def upload(args, name):
    c = ctx()
    limit_kb = c.settings.max_upload_kb
    refuse_forms("the file's raw bytes (Content-Type: application/octet-stream)")
    data = read_body(limit_kb * 1024, lambda size: TooLarge(
        f"file is {size} bytes, more than the {limit_kb} KB upload limit" if size is not None
        else f"file is larger than the {limit_kb} KB upload limit"))
    row = svc.upload(c, g.tenant, name, data, kind=args.get("kind"))
    return _out(row)


@blp.route("", methods=["GET"])
@blp.doc(security=SECURITY, summary="List files")
@tenant_required
@blp.arguments(KindArgs, location="query")
@blp.response(200, FileListSchema)
def list_files(args):
    return {"items": [_out(r) for r in svc.list_files(ctx(), g.tenant, kind=args.get("kind"))]}


@blp.route("/<file:name>/content", methods=["GET"])
@blp.doc(security=SECURITY, summary="Download a file's current bytes",
         description="Served as application/wasm (a module), application/json (a schema), text/x-python (a "
                     "Python jobicolet) or application/zip (a Python package).",
         responses={"200": {"description": "the bytes", "content": {
             media: _content(media) for media in (*MEDIA_TYPES.values(), ZIP)}, "headers": {
             "ETag": {"description": "the sha256, quoted", "schema": {"type": "string"}},
             "X-Content-SHA256": {"description": "the sha256 of the bytes",
                                  "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}}}})
@tenant_required
def content(name):
    c = ctx()
    row = svc.get_file(c, g.tenant, name)
    data = svc.read_blob(c, g.tenant, row.sha256)
    return Response(data, mimetype=media_type(row), headers={"ETag": f'"{row.sha256}"',
                                                             "X-Content-SHA256": row.sha256})


@blp.route("/<file:name>", methods=["GET"])
@blp.doc(security=SECURITY, summary="A file's metadata")
@tenant_required
@blp.response(200, FileSchema)
def show(name):
    return _out(svc.get_file(ctx(), g.tenant, name))
