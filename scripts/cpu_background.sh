#!/usr/bin/env bash
# Medium-scale sweeps in the background on this machine's CPU, across sessions.
#
#   bash scripts/cpu_background.sh [--commit REV] EXPERIMENT [EXPERIMENT ...]
#   bash scripts/cpu_background.sh [--commit REV] --figures "FIG ..." [FIGURES OPTION ...]
#
# Runs `experiments.sweep EXPERIMENT --scale medium` for each experiment in turn, one
# single-thread worker per core, at nice 19 (other work on the machine comes first),
# with the results in this checkout's docs/results/ (the committed run store: finished
# points are skipped, an interrupted run resumes from its checkpoint).  The code runs
# from a detached git worktree at REV (default HEAD) under $WORKTREE (default
# ../anisotropy-runner), so editing this checkout does not change a running sweep;
# keep the same REV for a sweep that is already under way (a smoothed run's draws
# depend on the code).  Start it detached and read the log:
#
#   setsid nohup bash scripts/cpu_background.sh fig6 fig8 > sweeps.log 2>&1 &
#
# With --figures it runs `anisotropy figures FIG ... --scale medium` instead, with the
# options that follow (e.g. `--until-decided`: more seeds for the undecided claims), the
# same workers and run store, drawing into $FIGURES_OUT (default ../until_decided_out,
# outside the checkout: copy what you keep into docs/results/medium):
#
#   setsid nohup bash scripts/cpu_background.sh --figures "9b 9c" --until-decided > ud.log 2>&1 &
#
# Before a session ends, commit the finished runs' small files (config.toml, log.jsonl,
# summary.json, steps.jsonl; never checkpoint.pt) with `git add -f`: docs/results/medium
# is excluded from git's view of new files on purpose.
set -euo pipefail
REV=HEAD
if [[ ${1:-} == --commit ]]; then REV=${2:?--commit needs a revision}; shift 2; fi
FIGURES=
if [[ ${1:-} == --figures ]]; then FIGURES=${2:?--figures needs figure IDs}; shift 2; fi
[[ $# -ge 1 || -n $FIGURES ]] || {
  echo "usage: cpu_background.sh [--commit REV] EXPERIMENT [...] | --figures \"FIG ...\" [OPTION ...]" >&2
  exit 2
}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORKTREE=${WORKTREE:-$ROOT/../anisotropy-runner}
PY=${PYTHON:-$ROOT/.venv/bin/python}
WORKERS=${WORKERS:-$(nproc)}
if [[ -d $WORKTREE ]]; then
  git -C "$WORKTREE" checkout -q --detach "$(git -C "$ROOT" rev-parse "$REV")"
else
  git -C "$ROOT" worktree add -q --detach "$WORKTREE" "$REV"
fi
cd "$WORKTREE"
export PYTHONPATH=$WORKTREE OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1
if [[ -n $FIGURES ]]; then
  OUT=${FIGURES_OUT:-$ROOT/../until_decided_out}
  echo "=== figures $FIGURES start $(date -u +%FT%TZ) at $(git rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg)"
  rc=0
  # shellcheck disable=SC2086  # FIGURES is a list of figure IDs
  nice -n 19 "$PY" -m paper_figs.make $FIGURES --scale medium --workers "$WORKERS" --threads 1 \
    --runs "$ROOT/docs/results" --out "$OUT" "$@" || rc=$?
  echo "=== figures $FIGURES end $(date -u +%FT%TZ) rc $rc, load $(cut -d' ' -f1-3 /proc/loadavg)"
  exit "$rc"
fi
for exp in "$@"; do
  echo "=== $exp start $(date -u +%FT%TZ) at $(git rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg)"
  rc=0
  nice -n 19 "$PY" -m experiments.sweep "$exp" --scale medium --workers "$WORKERS" --threads 1 \
    --out "$ROOT/docs/results" || rc=$?
  echo "=== $exp end $(date -u +%FT%TZ) rc $rc, load $(cut -d' ' -f1-3 /proc/loadavg)"
done
