#!/usr/bin/env bash
# Creates .venv and installs lrlab into it. torch is pinned to 2.13.0 on purpose:
# that version installs the CPU build offline; an unpinned torch pulls GBs of CUDA wheels.
#   bash scripts/install.sh          # lrlab and its runtime dependencies
#   bash scripts/install.sh test     # + the test tools and the framework integrations
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
extras=""
[ "${1:-}" = "test" ] && extras="[test,integrations]"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0" -e ".${extras}"
if [ "${1:-}" = "test" ]; then
  # timm is a test reference only (its schedulers). --no-deps: it would pull torchvision, whose
  # PyPI build does not import beside the pinned CPU torch; timm.scheduler needs only torch
  # (conftest.py imports it without timm's models).
  .venv/bin/python -m pip install -q --no-deps "timm==1.0.31"
fi
echo "lrlab is installed in .venv: run .venv/bin/lrlab, or 'source .venv/bin/activate' to put lrlab on the PATH"
