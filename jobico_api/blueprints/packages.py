"""Deploy, redeploy, roll back, delete and inspect packages (YAML in, JSON out)."""
from __future__ import annotations

import marshmallow as ma
from flask import g
from flask_smorest import Blueprint

from jobico_core.errors import TooLarge
from jobico_core.package import MAX_SOURCE_BYTES
from jobico_core.services import packages as svc

from ..auth import ERROR_SCHEMA, SECURITY, ctx, tenant_required
from ..body import read_body, refuse_forms

blp = Blueprint("packages", __name__, url_prefix="/api/v1/packages",
                description="Packages: immutable numbered versions of a YAML definition.")

YAML_BODY = {"required": True, "content": {
    media: {"schema": {"type": "string"}} for media in ("application/yaml", "text/yaml", "text/plain")}}


class VersionSummarySchema(ma.Schema):
    number = ma.fields.Integer()
    created_at = ma.fields.DateTime()
    active = ma.fields.Boolean()


class VersionSchema(ma.Schema):
    number = ma.fields.Integer()
    source = ma.fields.String(metadata={"description": "the YAML as deployed"})
    spec = ma.fields.Dict(metadata={"description": "the normalised package"})
    pins = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.String(),
                          metadata={"description": "file name -> sha256 pinned by this version"})
    created_at = ma.fields.DateTime()


class PackageSchema(ma.Schema):
    id = ma.fields.String()
    active_version = ma.fields.Integer()
    version = ma.fields.Nested(VersionSchema)
    versions = ma.fields.List(ma.fields.Nested(VersionSummarySchema))
    unchanged = ma.fields.Boolean(metadata={"description": "deploy, redeploy and publish: true when the YAML and "
                                                           "every file it references were those of the active "
                                                           "version, so no version was created (answered 200, "
                                                           "not 201)"})


UNCHANGED = "unchanged: the same YAML and files as the active version, which is returned; no new version"


def _deployed(info, extra: dict | None = None):
    """The answer to a deploy: 201 with the new version, or 200 with the active one when unchanged."""
    body = {**_show(g.tenant, info.package, info.number), **(extra or {}), "unchanged": info.unchanged}
    return (body, 200) if info.unchanged else body


class PackageListItemSchema(ma.Schema):
    id = ma.fields.String()
    active_version = ma.fields.Integer()
    versions = ma.fields.Integer(metadata={"description": "number of versions"})
    created_at = ma.fields.DateTime()
    updated_at = ma.fields.DateTime()


class PackageListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(PackageListItemSchema))


class ShowArgs(ma.Schema):
    version = ma.fields.Integer(validate=ma.validate.Range(min=1),
                                metadata={"description": "a version number (default: the active one)"})


class RollbackSchema(ma.Schema):
    version = ma.fields.Integer(required=True, validate=ma.validate.Range(min=1))


def _source() -> bytes:
    refuse_forms("the package YAML (Content-Type: application/yaml)")
    return read_body(MAX_SOURCE_BYTES, lambda size: TooLarge(
        f"package source is larger than {MAX_SOURCE_BYTES // 1024} KB"))


def _show(tenant: str, name: str, number: int | None = None) -> dict:
    pkg, versions = svc.get_package(ctx(), tenant, name)
    number = number or pkg.active_version
    chosen = next((v for v in versions if v.number == number), None)
    if chosen is None:
        from jobico_core.errors import NotFound
        raise NotFound(f"package {name!r} has no version {number}")
    return {
        "id": pkg.name, "active_version": pkg.active_version,
        "version": {"number": chosen.number, "source": chosen.source, "spec": chosen.spec, "pins": chosen.pins,
                    "created_at": chosen.created_at},
        "versions": [{"number": v.number, "created_at": v.created_at, "active": v.number == pkg.active_version}
                     for v in versions],
    }


@blp.route("", methods=["POST"])
@blp.doc(security=SECURITY, summary="Deploy a new package (version 1)", requestBody=YAML_BODY,
         description="Every file the package references must be in the repository; its sha256 is pinned. "
                     "An existing package id is refused (409): use PUT /api/v1/packages/<id> to redeploy.")
@tenant_required
@blp.response(201, PackageSchema)
@blp.alt_response(409, schema=ERROR_SCHEMA,
                  description="the package exists, or another package owns one of its event ids")
@blp.alt_response(415, schema=ERROR_SCHEMA, description="sent as a form: send the YAML as the raw body")
@blp.alt_response(422, schema=ERROR_SCHEMA, description="invalid package (every problem listed with its path)")
def deploy():
    info = svc.deploy(ctx(), g.tenant, _source())
    return _deployed(info)


class StoredFileSchema(ma.Schema):
    name = ma.fields.String()
    kind = ma.fields.String()
    sha256 = ma.fields.String()
    size = ma.fields.Integer()


class PublishedSchema(PackageSchema):
    files = ma.fields.List(ma.fields.Nested(StoredFileSchema),
                           metadata={"description": "the archive's files, stored in the repository"})


ARCHIVE_BODY = {"required": True, "content": {
    media: {"schema": {"type": "string", "format": "binary"}}
    for media in ("application/zip", "application/gzip", "application/octet-stream")}}


@blp.route("/archive", methods=["POST"])
@blp.doc(security=SECURITY, summary="Publish a package from a zip or tar.gz archive", requestBody=ARCHIVE_BODY,
         description="The archive holds the package YAML (package.yaml, or its only .yaml file) and the modules "
                     "and schemas it references. All or nothing: every file is stored and the new version (1, or "
                     "the next one of an existing package) is created and made active, or nothing changes. "
                     "The same YAML and files as the active version create no version: 200, `unchanged: true`. "
                     "Links, devices, absolute or '..' paths, duplicate names, oversize members, too many "
                     "members and archive bombs are refused naming the member (`errors.archive`).")
@tenant_required
@blp.response(201, PublishedSchema)
@blp.alt_response(200, schema=PublishedSchema, description=UNCHANGED)
@blp.alt_response(409, schema=ERROR_SCHEMA, description="another package owns one of its event ids")
@blp.alt_response(413, schema=ERROR_SCHEMA,
                  description="larger than JOBICO_MAX_ARCHIVE_KB (compressed or not), a member larger than "
                              "JOBICO_MAX_UPLOAD_KB, too many members, or an archive bomb")
@blp.alt_response(415, schema=ERROR_SCHEMA, description="neither zip nor tar.gz")
@blp.alt_response(422, schema=ERROR_SCHEMA, description="a refused member, or an invalid package or file")
def publish():
    from jobico_core.services import publish as publish_svc
    c = ctx()
    limit_kb = c.settings.max_archive_kb
    data = read_body(limit_kb * 1024, lambda size: TooLarge(
        f"archive is larger than the {limit_kb} KB limit (JOBICO_MAX_ARCHIVE_KB)"))
    info, stored = publish_svc.publish(c, g.tenant, data)
    return _deployed(info, {"files": stored})


@blp.route("", methods=["GET"])
@blp.doc(security=SECURITY, summary="List packages")
@tenant_required
@blp.response(200, PackageListSchema)
def list_packages():
    c = ctx()
    items = []
    for pkg in svc.list_packages(c, g.tenant):
        _, versions = svc.get_package(c, g.tenant, pkg.name)
        items.append({"id": pkg.name, "active_version": pkg.active_version, "versions": len(versions),
                      "created_at": pkg.created_at, "updated_at": pkg.updated_at})
    return {"items": items}


@blp.route("/<package:package>", methods=["PUT"])
@blp.doc(security=SECURITY, summary="Redeploy: a new version of an existing package", requestBody=YAML_BODY)
@tenant_required
@blp.response(201, PackageSchema)
@blp.alt_response(200, schema=PackageSchema, description=UNCHANGED)
@blp.alt_response(404, schema=ERROR_SCHEMA, description="no such package")
@blp.alt_response(415, schema=ERROR_SCHEMA, description="sent as a form: send the YAML as the raw body")
@blp.alt_response(422, schema=ERROR_SCHEMA, description="invalid package, or its id differs from the URL")
def redeploy(package):
    info = svc.deploy(ctx(), g.tenant, _source(), redeploy=True, expected_id=package)
    return _deployed(info)


@blp.route("/<package:package>", methods=["GET"])
@blp.doc(security=SECURITY, summary="Show a package and one of its versions")
@tenant_required
@blp.arguments(ShowArgs, location="query")
@blp.response(200, PackageSchema)
def show(args, package):
    return _show(g.tenant, package, args.get("version"))


@blp.route("/<package:package>/rollback", methods=["POST"])
@blp.doc(security=SECURITY, summary="Make an earlier version active again")
@tenant_required
@blp.arguments(RollbackSchema)
@blp.response(200, PackageSchema)
def rollback(body, package):
    info = svc.rollback(ctx(), g.tenant, package, body["version"])
    return _show(g.tenant, package, info.number)


@blp.route("/<package:package>", methods=["DELETE"])
@blp.doc(security=SECURITY, summary="Delete a package and all its versions")
@tenant_required
@blp.response(204)
def delete(package):
    svc.delete_package(ctx(), g.tenant, package)
