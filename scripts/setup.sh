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

# Fashion-MNIST from Debian (the IDX files the real-data loader test reads; the
# directory is anisotropy.data.datasets.FASHION_MNIST_DIR).  Installed when this runs
# as root with apt-get; never fails the set-up; otherwise says how to get it.
FMNIST_DIR=/usr/share/datasets/fashion-mnist
if [ ! -d "$FMNIST_DIR" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        { apt-get install -y -qq dataset-fashion-mnist \
            || { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; }; } \
            >/dev/null 2>&1 || true
    fi
    if [ -d "$FMNIST_DIR" ]; then
        echo "installed dataset-fashion-mnist ($FMNIST_DIR)"
    else
        echo "Fashion-MNIST not found in $FMNIST_DIR: the real-IDX loader test is skipped." \
            "Get it with \`sudo apt-get install dataset-fashion-mnist\` (Debian/Ubuntu)," \
            "or put the four IDX files in a directory and pass data.root=DIR."
    fi
fi
