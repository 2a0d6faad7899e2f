"""Pack a directory into a Python package zip (docs/python.md, "Packaging a zip").

The directory's contents become the zip's root (``DIR/main.py`` -> ``main.py``): its ``.py``
files only, sorted, with a fixed date and mode, deflated; ``__pycache__`` and every other
file are left out (the platform refuses anything but ``.py`` files). The same directory
always gives the same bytes, so the same sha256 (a re-upload of unchanged sources changes
nothing). Used by ``jobico upload DIR``, ``jobico deploy --python DIR`` and
``examples/python/build_zip.py``.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

from .client import UsageProblem

MAIN = "main.py"
DATE = (1980, 1, 1, 0, 0, 0)   # the earliest date a zip can hold: no build time in the bytes


def python_files(directory: Path) -> list[Path]:
    """The ``.py`` files a package zip of ``directory`` holds, sorted by their path in the zip."""
    directory = Path(directory)
    found = [p for p in directory.rglob("*.py")
             if p.is_file() and not p.is_symlink() and "__pycache__" not in p.relative_to(directory).parts]
    return sorted(found, key=lambda p: p.relative_to(directory).as_posix())


def pack_python_dir(directory: Path) -> bytes:
    """The zip's bytes; a directory without ``main.py`` is a usage error naming it."""
    directory = Path(directory)
    if not (directory / MAIN).is_file():
        raise UsageProblem(f"{str(directory / MAIN)!r} is missing: a Python package's root holds main.py "
                           "(the event function)")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for path in python_files(directory):
            info = zipfile.ZipInfo(path.relative_to(directory).as_posix(), DATE)
            info.external_attr = 0o100644 << 16   # a regular file, rw-r--r--
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3                # Unix, whatever builds it
            zf.writestr(info, path.read_bytes(), compresslevel=9)
    return buf.getvalue()
