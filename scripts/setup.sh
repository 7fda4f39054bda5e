#!/usr/bin/env bash
# Create .venv with the CPU build of torch first (a plain `torch` requirement could
# pull a multi-GB CUDA build), then install this package with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q "torch==2.13.0" 2>&1 | grep -v "is ignored" || true
.venv/bin/python -m pip install -q -e ".[dev]" 2>&1 | grep -v "is ignored" || true
.venv/bin/python -c "import anisotropy, torch; print('anisotropy', anisotropy.__version__, 'torch', torch.__version__)"
