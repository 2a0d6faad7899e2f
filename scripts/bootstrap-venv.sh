#!/usr/bin/env bash
# Create .venv with a working pip on a fresh Debian/Ubuntu machine.
# Debian splits `venv`/`ensurepip` into python3-venv; install it when missing.
set -euo pipefail
VENV=${1:-.venv}
PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
  echo "Jobico needs Python 3.11 or newer (found: $("$PY" --version 2>&1))" >&2; exit 1; }
if [ -x "$VENV/bin/pip" ]; then exit 0; fi
rm -rf "$VENV"
if ! "$PY" -m venv "$VENV" 2>/dev/null; then
  rm -rf "$VENV"
  ver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  echo "python3 -m venv is unavailable: installing python${ver}-venv with apt-get" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && { $SUDO apt-get install -y -qq "python${ver}-venv" || $SUDO apt-get install -y -qq python3-venv; }
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
