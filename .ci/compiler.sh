#!/usr/bin/env bash
# Install a C compiler and the Python headers when missing: tests/test_compiled_models.py builds the models
# with mypyc, as `SPENDWATCH_COMPILE=1 pip install .` does.
set -euo pipefail
headers="$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h"
if command -v gcc >/dev/null 2>&1 && [ -f "$headers" ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y gcc python3-dev
