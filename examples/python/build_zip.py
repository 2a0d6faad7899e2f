#!/usr/bin/env python3
"""Build a Python package zip for a jobicolet, byte for byte the same on every run.

    python3 examples/python/build_zip.py examples/python/pricing     # -> examples/python/pricing.zip
    python3 examples/python/build_zip.py SRC_DIR [OUT.zip] [--check]

SRC_DIR's contents become the zip's root (SRC_DIR/main.py -> main.py): its .py files only,
sorted, with a fixed date and mode, deflated; __pycache__ and every other file are left out
(jobico_cli/pyzip.py, the packer `jobico upload DIR` and `jobico deploy --python DIR` use).
`--check` fails (exit 1) when OUT.zip does not hold exactly SRC_DIR's sources.
"""
from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from jobico_cli.client import UsageProblem  # noqa: E402
from jobico_cli.pyzip import pack_python_dir  # noqa: E402


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    args = [a for a in argv if a != "--check"]
    if not 1 <= len(args) <= 2:
        print(__doc__, file=sys.stderr)
        return 2
    src = Path(args[0])
    out = Path(args[1]) if len(args) == 2 else src.parent / f"{src.resolve().name}.zip"
    try:
        data = pack_python_dir(src)
    except UsageProblem as exc:
        print(exc, file=sys.stderr)
        return 2
    if check:  # by content, not bytes: another zlib may compress the same sources differently
        if not out.is_file() or members(out.read_bytes()) != members(data):
            print(f"{out} is out of date: rebuild it with {Path(__file__).name} {src} {out}", file=sys.stderr)
            return 1
        print(f"{out} is up to date")
        return 0
    out.write_bytes(data)
    print(f"wrote {out} ({len(data)} bytes, {len(members(data))} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
