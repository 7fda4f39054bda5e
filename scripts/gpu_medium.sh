#!/usr/bin/env bash
# Medium-scale runs on one CUDA GPU, as one prepared call with a time budget.
#
#   bash scripts/gpu_medium.sh RUNS_DIR BUDGET_SECONDS [PACK_DIR]
#
# Trains the pending points of the medium-scale experiments (figure 1's two long
# runs and the sweeps of figures 3-8; or only those named in $EXPERIMENTS, with
# $WORKERS workers, e.g. EXPERIMENTS="fig7 fig6 fig8 rel_compare rel_scoping
# rel_guidance rel_flatness") with `device = "cuda"`, several single-thread
# workers sharing the GPU; stops every sweep when the budget is spent (a sweep
# resumes from its run store), then, with PACK_DIR, packs the small files of the
# finished runs (never checkpoints) into PACK_DIR/finished.tar.gz and, for an
# unfinished figure-1 run, its checkpoint and logs in 15 MB pieces (to resume on
# a CPU machine).  `device` does not enter a run's identity, so these runs merge
# into the CPU run store (experiments/grid.py, HASH_EXCLUDED_KEYS).
set -uo pipefail
set -m  # each background chain gets its own process group (stopped as a whole)
RUNS=${1:?usage: gpu_medium.sh RUNS_DIR BUDGET_SECONDS [PACK_DIR]}
BUDGET=${2:?budget in seconds}
PACK=${3:-}
PY=${PYTHON:-python3}
[[ $PY == */* ]] && PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"  # absolute, symlink kept (a venv)
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
start=$(date +%s)
mkdir -p "$RUNS" && touch "$RUNS/chains.log"
nvidia-smi -L || true
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')" || exit 1
# several processes share the GPU better under MPS; without it they time-slice.
# Keep MPS only if a CUDA client really starts under it.
if nvidia-cuda-mps-control -d 2>/dev/null; then
  if timeout 60 $PY -c "import torch; torch.ones(1, device='cuda').sum().item()"; then
    echo "MPS daemon started"
  else
    echo quit | nvidia-cuda-mps-control; echo "MPS client failed: time-slicing"
  fi
else
  echo "no MPS: time-slicing"
fi
SET=(--set "device=\"${DEVICE:-cuda}\"" --threads 1 --scale medium --out "$RUNS")
chain() {  # run experiments one after the other (they share runs: never two writers)
  local workers=$1; shift
  for e in "$@"; do $PY -m experiments.sweep "$e" --workers "$workers" "${SET[@]}" \
      > "$RUNS/sweep_$e.log" 2>&1; echo "$(date +%s) $e done rc=$?" >> "$RUNS/chains.log"; done
}
# smoke: the smoothed path (PLA on fc2, embedded 8x8 digits) on this device; if it
# fails, only figure 1's unsmoothed runs are started
smoke_ok=1
$PY -m anisotropy train experiments/smoke.toml --out "$RUNS/smoke" --set "device=\"${DEVICE:-cuda}\"" \
  > "$RUNS/smoke.log" 2>&1 || { smoke_ok=0; echo "smoke run FAILED:"; tail -n 20 "$RUNS/smoke.log"; }
pids=()
if [ -n "${EXPERIMENTS:-}" ]; then
  # EXPERIMENTS="fig6 fig7 fig8 rel_compare ..." [WORKERS=n]: one chain of these only
  # (e.g. the CNN reruns and the related experiments of figures 9a-9d)
  [ "$smoke_ok" = 1 ] && { chain "${WORKERS:-8}" $EXPERIMENTS & pids+=($!); }
else
  chain 2 fig1 & pids+=($!)
  if [ "$smoke_ok" = 1 ]; then
    chain 5 fig3 fig5 fig4_left & pids+=($!)
    chain 4 fig6 fig7 fig8 & pids+=($!)
    chain 3 fig4_right & pids+=($!)
  fi
fi
while [ $(( $(date +%s) - start )) -lt "$BUDGET" ] && [ -n "$(jobs -r)" ]; do sleep 5; done
echo "elapsed $(( $(date +%s) - start )) s; stopping sweeps"
for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null; done; sleep 3
for p in "${pids[@]}"; do kill -KILL -- "-$p" 2>/dev/null; done
echo quit | nvidia-cuda-mps-control 2>/dev/null || true
tail -n 3 "$RUNS"/sweep_*.log
[ -z "$PACK" ] && exit 0
mkdir -p "$PACK"
cd "$RUNS" || exit 1
$PY - <<'PYEOF' > done.txt
import json, pathlib
for d in sorted(pathlib.Path("medium/store").glob("*/")):
    try:
        ok = json.loads((d / "summary.json").read_text()).get("status") == "complete"
    except (OSError, ValueError):
        ok = False
    print(("done " if ok else "todo ") + str(d))
PYEOF
grep -c "^done" done.txt
grep "^done" done.txt | cut -c6- | while read -r d; do
  for f in config.toml log.jsonl summary.json steps.jsonl; do [ -f "$d/$f" ] && echo "$d/$f"; done
done > files.txt
ls medium/*/results.csv >> files.txt 2>/dev/null
tar czf "$PACK/finished.tar.gz" -T files.txt sweep_*.log chains.log done.txt smoke.log
grep "^todo" done.txt | grep -- "-d4-" | cut -c6- > fig1_todo.txt
if [ -s fig1_todo.txt ]; then
  tar cf - -T fig1_todo.txt | split -b 15M - "$PACK/fig1_partial.tar."
fi
ls -la "$PACK"
