"""Publish a package from one archive: its YAML plus the modules and schemas it references.

All or nothing. The archive is read in memory (jobico_core.archive: every attack refused
with the member named), the YAML parsed, every file checked like an upload; then the
blobs are stored (content-addressed) and, in ONE database transaction, the repository
rows are created or repointed and the version is created and made active. If anything
fails, the transaction is rolled back (no row is left) and the blobs this publish wrote
are deleted again unless a repository row references them.

The package YAML is the member named ``package.yaml`` (or ``package.yml``), else the only
``.yaml``/``.yml`` member. Every other member must be a file the package references
(``moduleref``/``schemaref``); a referenced file not in the archive is taken from the
repository, as a plain deploy does. A package that exists gets a new version, unless the
YAML and every file it references are those of its active version: then nothing is created
(``VersionInfo.unchanged``).
"""
from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..archive import ArchiveLimits, ArchiveRefused, read_archive
from ..db import RepoFile
from ..errors import Conflict
from ..storage import blob_key, sha256_hex
from .context import Context
from .files import check_file, record_file
from .packages import VersionInfo, after_deploy, checked_spec, deploy_in

log = logging.getLogger(__name__)
YAML_NAMES = ("package.yaml", "package.yml")


def archive_limits(ctx: Context) -> ArchiveLimits:
    return ArchiveLimits(total_bytes=ctx.settings.max_archive_kb * 1024,
                         member_bytes=min(ctx.settings.max_upload_kb, ctx.settings.max_archive_kb) * 1024)


def _package_member(files: dict[str, bytes]) -> str:
    for name in YAML_NAMES:
        if name in files:
            return name
    yamls = sorted(n for n in files if n.lower().endswith((".yaml", ".yml")))
    if len(yamls) == 1:
        return yamls[0]
    if not yamls:
        raise ArchiveRefused(None, "no package YAML: add package.yaml")
    raise ArchiveRefused(yamls[1], f"several YAML files ({', '.join(yamls)}): name the package's package.yaml")


def publish(ctx: Context, tenant: str, data: bytes) -> tuple[VersionInfo, list[dict]]:
    """Deploy the archive's package as a new version; returns it and the files stored."""
    files = read_archive(data, archive_limits(ctx))
    yaml_name = _package_member(files)
    source = files.pop(yaml_name)
    spec = checked_spec(ctx, tenant, source)
    referenced = {rt.moduleref for rt in spec.runtimes.values()} | spec.schema_files()
    for name in sorted(files):
        if name not in referenced:
            raise ArchiveRefused(name, f"not referenced by package {spec.id!r} (only its modules and schemas "
                                       "may be in the archive)")
    kinds = {}
    for name, body in sorted(files.items()):
        try:
            kinds[name] = check_file(ctx, name, body)
        except ArchiveRefused:
            raise
        except Exception as exc:  # the upload check's 4xx, named after the member
            status = getattr(exc, "status", 500)
            if status >= 500:
                raise
            raise ArchiveRefused(name, getattr(exc, "message", str(exc)), status=status) from None
    digests = {name: sha256_hex(body) for name, body in files.items()}
    written: list[str] = []
    try:
        for name, body in files.items():
            key = blob_key(tenant, digests[name])
            if not ctx.store.exists(key):
                ctx.store.put(key, body)
                written.append(key)
        with ctx.db.session() as s:
            for name, body in sorted(files.items()):
                record_file(s, tenant, name, kinds[name], body, digests[name])
            s.flush()
            info = deploy_in(ctx, s, tenant, spec, source.decode("utf-8"), redeploy=None)
    except BaseException as exc:
        _remove_unreferenced(ctx, tenant, written)
        if isinstance(exc, IntegrityError):
            raise Conflict(f"package {spec.id!r} or one of its files was changed concurrently; retry") from None
        raise
    if not info.unchanged:
        after_deploy(ctx, info, redeploy=info.number > 1)
    stored = [{"name": n, "kind": kinds[n], "sha256": digests[n], "size": len(files[n])} for n in sorted(files)]
    log.info("tenant %s: published %s %s from an archive (%d files)", tenant, spec.id,
             f"unchanged (version {info.number})" if info.unchanged else f"version {info.number}",
             len(stored), extra={"tenant": tenant})
    return info, stored


def _remove_unreferenced(ctx: Context, tenant: str, keys: list[str]) -> None:
    """Delete blobs this publish wrote, unless a repository row points at them by now."""
    if not keys:
        return
    try:
        with ctx.db.session() as s:
            used = set(s.scalars(select(RepoFile.object_key).where(RepoFile.tenant_id == tenant,
                                                                   RepoFile.object_key.in_(keys))))
        for key in keys:
            if key not in used:
                ctx.store.delete(key)
    except Exception as exc:  # content-addressed: an orphan blob is harmless, only space
        log.warning("publish failed and its %d new blobs could not all be removed: %s", len(keys), exc)
