"""Object store: one interface, an S3 implementation and a filesystem one.

Keys are tenant-scoped and content-addressed (``blob_key``), so a version
that pinned a sha256 keeps finding its bytes after a re-upload.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from .errors import NotFound, Unavailable
from .settings import Settings


class ObjectNotFound(NotFound):
    pass


class ObjectStore(Protocol):
    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def ping(self) -> None: ...


def blob_key(tenant: str, sha256: str) -> str:
    return f"tenants/{tenant}/blobs/{sha256}"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_key(key: str) -> None:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid object key {key!r}")


class FileStore:
    """Objects as files under a root directory (the embedded default)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        _check_key(key)
        return self.root / key

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(f"object {key} not found") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        with contextlib.suppress(OSError):
            self._path(key).unlink()

    def ping(self) -> None:
        if not self.root.is_dir() or not os.access(self.root, os.W_OK):
            raise Unavailable(f"object store directory {self.root} is not writable")


class S3Store:
    """Objects in an S3 bucket through the ``minio`` client (MinIO, SeaweedFS, AWS...)."""

    def __init__(self, endpoint: str, bucket: str, access_key: str, secret_key: str, *, secure: bool = False,
                 region: str | None = None, create_bucket: bool = True):
        import urllib3
        from minio import Minio

        http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=3, read=30), maxsize=16,
                                   retries=urllib3.Retry(total=2, backoff_factor=0.2,
                                                         status_forcelist=(500, 502, 503, 504)))
        self.client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure,
                            region=region or None, http_client=http)
        self.bucket = bucket
        self._create_bucket = create_bucket
        self._bucket_checked = False

    def _ensure_bucket(self) -> None:
        if self._bucket_checked:
            return
        if not self.client.bucket_exists(self.bucket):
            if not self._create_bucket:
                raise Unavailable(f"bucket {self.bucket!r} does not exist")
            self.client.make_bucket(self.bucket)
        self._bucket_checked = True

    def _call(self, fn, *args, **kwargs):
        from minio.error import S3Error
        try:
            self._ensure_bucket()
            return fn(*args, **kwargs)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject"):
                raise ObjectNotFound(f"object {args[1] if len(args) > 1 else ''} not found") from None
            raise Unavailable(f"object store error: {exc.code}: {exc.message}") from None
        except (OSError, Exception) as exc:  # urllib3 errors: connection refused, timeouts
            if isinstance(exc, (ObjectNotFound, Unavailable)):
                raise
            raise Unavailable(f"object store unreachable: {type(exc).__name__}: {exc}") from None

    def put(self, key: str, data: bytes) -> None:
        _check_key(key)
        self._call(self.client.put_object, self.bucket, key, io.BytesIO(data), len(data))

    def get(self, key: str) -> bytes:
        _check_key(key)

        def _get(bucket: str, k: str) -> bytes:
            resp = self.client.get_object(bucket, k)
            try:
                return resp.read()
            finally:
                resp.close()
                resp.release_conn()
        return self._call(_get, self.bucket, key)

    def exists(self, key: str) -> bool:
        try:
            self._call(self.client.stat_object, self.bucket, key)
            return True
        except ObjectNotFound:
            return False

    def delete(self, key: str) -> None:
        self._call(self.client.remove_object, self.bucket, key)

    def ping(self) -> None:
        self._bucket_checked = False
        self._call(lambda: None)


def open_store(settings: Settings) -> ObjectStore:
    url = urlparse(settings.storage_url)
    if url.scheme == "file":
        return FileStore(Path(url.path))
    if url.scheme == "s3":
        return S3Store(settings.s3_endpoint, url.netloc, settings.s3_access_key, settings.s3_secret_key,
                       secure=settings.s3_secure, region=settings.s3_region)
    raise ValueError(f"unsupported storage URL {settings.storage_url!r}")
