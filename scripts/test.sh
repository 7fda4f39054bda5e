#!/usr/bin/env bash
# The README's test command: set up .venv (idempotent), then lint (ruff), check the
# formatting (ruff format), type-check (mypy; files and options in pyproject.toml) and
# run the default test suite.  Any finding fails the command.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
