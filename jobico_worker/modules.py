"""Module bytes by content hash: memory, then local disk cache, then the object store.

The disk cache lives under the platform-owned JOBICO_CACHE_DIR and files are
verified against their sha256 when read, so a corrupted or planted file is
ignored and fetched again.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from jobico_core.services.context import Context
from jobico_core.services.files import read_blob
from jobico_core.storage import sha256_hex


def _cache_path(ctx: Context, sha256: str) -> Path:
    return Path(ctx.settings.cache_dir) / "modules" / f"{sha256}.wasm"


def module_bytes(ctx: Context, tenant: str, sha256: str) -> bytes:
    path = _cache_path(ctx, sha256)
    try:
        data = path.read_bytes()
        if sha256_hex(data) == sha256:
            return data
    except OSError:
        pass
    data = read_blob(ctx, tenant, sha256)  # verified against the hash; raises Unavailable/NotFound
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    return data
