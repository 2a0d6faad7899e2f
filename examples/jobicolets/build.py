#!/usr/bin/env python3
"""Build the example jobicolets: `make examples` (or `.venv/bin/python examples/jobicolets/build.py`).

* ``*.wat`` -> ``*.wasm`` with ``wasmtime.wat2wasm`` (no system packages needed).
* ``*.c``   -> ``*.wasm`` with clang for ``wasm32-wasi`` against wasi-libc.
  Debian/Ubuntu: ``apt-get install clang lld wasi-libc libclang-rt-dev-wasm32``
  (Debian 12: ``clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32``).
* ``greet_rust.rs`` -> ``wasm32-unknown-unknown``, ``greet_rust_wasi.rs`` -> ``wasm32-wasip1``
  (``wasm32-wasi`` before Rust 1.78) with ``rustc`` (no cargo, no crates).
  Debian/Ubuntu: ``apt-get install rustc libstd-rust-dev-wasm32 wasi-libc`` (a rustup
  toolchain works too once ``rustup target add wasm32-unknown-unknown wasm32-wasip1``).
* ``*.go`` -> ``*.wasm`` with TinyGo (``-target=wasip1``). TinyGo is not packaged by
  Debian nor published on PyPI or npm: install it from its own releases and put
  ``tinygo`` on PATH.

Without a toolchain the committed ``.wasm`` files of that language are kept, and the
packages to install are printed.

The built ``.wasm`` files are committed so tests and ``make run`` need no compiler.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
APT_HINT = ("apt-get install clang lld wasi-libc libclang-rt-dev-wasm32   "
            "(Debian 12: clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32)")
RUST_HINT = "apt-get install rustc libstd-rust-dev-wasm32 wasi-libc"
TINYGO_HINT = ("TinyGo is not packaged by Debian nor on PyPI/npm: install it from its releases "
               "(tinygo on PATH)")
#: Rust sources and the target each is built for (the WASI one under either of its names)
RUST_SOURCES = {"greet_rust.rs": ("wasm32-unknown-unknown",),
                "greet_rust_wasi.rs": ("wasm32-wasip1", "wasm32-wasi")}
#: extra rustc arguments per source: the WASI build exports wasi-libc's allocator
RUST_ARGS = {"greet_rust_wasi.rs": ["-C", "link-arg=--export=malloc", "-C", "link-arg=--export=free"]}


def find_clang() -> str | None:
    for name in ("clang", *(f"clang-{v}" for v in range(22, 13, -1))):
        path = shutil.which(name)
        if path:
            return path
    return None


def wasi_sysroot() -> str | None:
    for d in (os.environ.get("WASI_SYSROOT"), "/usr/share/wasi-sysroot", "/opt/wasi-sdk/share/wasi-sysroot"):
        if d and Path(d, "include").exists():
            return d
    if Path("/usr/include/wasm32-wasi/stdio.h").exists():   # Debian's wasi-libc layout
        return ""
    return None


def builtins_present(clang: str) -> bool:
    out = subprocess.run([clang, "--target=wasm32-wasi", "-print-libgcc-file-name"],
                         capture_output=True, text=True).stdout.strip()
    return bool(out) and Path(out).exists()


def build_wat(src: Path) -> None:
    import wasmtime
    out = src.with_suffix(".wasm")
    out.write_bytes(wasmtime.wat2wasm(src.read_text()))
    print(f"  wat  {src.name:<20} -> {out.name} ({out.stat().st_size} bytes)")


def build_c(src: Path, clang: str, sysroot: str) -> None:
    out = src.with_suffix(".wasm")
    cmd = [clang, "--target=wasm32-wasi", "-O2", "-mexec-model=reactor", "-fuse-ld=lld",
           "-Wl,--strip-all"]
    if sysroot:
        cmd.append(f"--sysroot={sysroot}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_out = Path(tmp) / out.name
        subprocess.run(cmd + ["-o", str(tmp_out), str(src)], check=True)
        shutil.copyfile(tmp_out, out)
    print(f"  c    {src.name:<20} -> {out.name} ({out.stat().st_size} bytes)")


def rust_target(targets: tuple[str, ...]) -> tuple[str, str] | None:
    """A rustc that has the standard library for one of ``targets``: (rustc, target)."""
    seen = set()
    for cand in (shutil.which("rustc"), "/usr/bin/rustc"):
        if not cand or not Path(cand).exists() or cand in seen:
            continue
        seen.add(cand)
        try:
            sysroot = subprocess.run([cand, "--print", "sysroot"], capture_output=True, text=True,
                                     check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            continue
        for target in targets:
            if Path(sysroot, "lib", "rustlib", target, "lib").is_dir():
                return cand, target
    return None


def build_rust(src: Path, rustc: str, target: str) -> None:
    out = src.with_suffix(".wasm")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_out = Path(tmp) / out.name
        subprocess.run([rustc, "--target", target, "--crate-type", "cdylib", "-O", "-C", "strip=symbols",
                        *RUST_ARGS.get(src.name, []), "-o", str(tmp_out), str(src)], check=True, cwd=tmp)
        shutil.copyfile(tmp_out, out)
    print(f"  rust {src.name:<20} -> {out.name} ({out.stat().st_size} bytes, {target})")


def build_tinygo(src: Path, tinygo: str) -> None:
    out = src.with_suffix(".wasm")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_out = Path(tmp) / out.name
        subprocess.run([tinygo, "build", "-o", str(tmp_out), "-target=wasip1", "-no-debug",
                        "-scheduler=none", str(src)], check=True, cwd=HERE)
        shutil.copyfile(tmp_out, out)
    print(f"  go   {src.name:<20} -> {out.name} ({out.stat().st_size} bytes, TinyGo)")


def main() -> int:
    print(f"building example jobicolets in {HERE}")
    for src in sorted(HERE.glob("*.wat")):
        build_wat(src)
    c_sources = sorted(HERE.glob("*.c"))
    if c_sources:
        clang = find_clang()
        sysroot = wasi_sysroot()
        missing = []
        if clang is None:
            missing.append("clang (and lld)")
        elif not builtins_present(clang):
            missing.append("the wasm32 compiler-rt builtins")
        if sysroot is None:
            missing.append("wasi-libc")
        if missing:
            print(f"  skipping C examples: missing {', '.join(missing)}; the committed .wasm files are kept.")
            print(f"  to rebuild them: {APT_HINT}")
        else:
            for src in c_sources:
                build_c(src, clang, sysroot)  # type: ignore[arg-type]
    for name, targets in RUST_SOURCES.items():
        src = HERE / name
        found = rust_target(targets)
        if found is None:
            print(f"  skipping {name}: no rustc with the {' or '.join(targets)} standard library; "
                  f"the committed {src.with_suffix('.wasm').name} is kept.")
            print(f"  to rebuild it: {RUST_HINT}")
        else:
            build_rust(src, *found)
    for src in sorted(HERE.glob("*.go")):
        tinygo = shutil.which("tinygo")
        if tinygo is None:
            kept = "the committed one is kept" if src.with_suffix(".wasm").exists() else "none is committed"
            print(f"  skipping {src.name}: tinygo not found ({kept}). {TINYGO_HINT}")
        else:
            build_tinygo(src, tinygo)
    # check every example against the ABI
    sys.path.insert(0, str(HERE.parents[1]))
    from jobico_core.abi import inspect_module
    for wasm in sorted(glob.glob(str(HERE / "*.wasm"))):
        inspect_module(Path(wasm).read_bytes(), "event")
    print("all examples pass the static ABI check")
    return 0


if __name__ == "__main__":
    sys.exit(main())
