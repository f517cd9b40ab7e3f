#!/usr/bin/env bash
# One prepared GPU session in two unattended calls, each under the 600 s a device command may run:
#   grid:  the CUDA tests, then the ablation grid at 64 px (bench/ablate.py: recipe and attention arms) until
#          its budget ends;
#   final: the chosen recipe and attention design trained for the rest of its budget, validated during the run,
#          its best and last states exported and measured on FINAL_SAMPLES faces, with ADA's r_t.
# (Successor of bench/cuda_session.sh, whose speed benchmarks docs/benchmarks.md reports.)
#
#   bash bench/gpu_session.sh grid OUT_DIR
#   FINAL_FLAGS="--diffaugment color,translation,cutout" ATTN_FLAGS="" COMPILE=1 \
#     bash bench/gpu_session.sh final OUT
#
# Data: .gpu/faces64.zip and .gpu/validation.zip (python -m sagan.pack's training split at 64 px and validation
# split), joined on the machine (bench/join_split.py) so that --holdout selects the validation faces; or DATA=ZIP,
# whose last HOLDOUT (default 2000) files are the validation split.
# Environment, [defaults]:
#   BUDGET         seconds for the call, everything included [grid 270, final 300]
#   FINAL_FLAGS    train.py flags of the chosen recipe ["--diffaugment color,translation,cutout"]
#   ATTN_FLAGS     train.py flags of the chosen attention design, final run ["": the default, whitened cosine
#                  logits at a fixed scale of 20; "--no-attn-cosine-fixed --attn-cosine-scale 10" learns the scale
#                  from 10 (the previous default); "--no-attn-whiten --no-attn-cosine" trains the SAGAN block]
#   GRID, GRID_ARMS, GRID_COMMON   the ablation grid, its arms in order (the budget cuts the last) and train.py
#                  flags for every arm [all; baseline,diffaug-ctc,attn-sagan,attn-whiten-cosine,diffaug-tc,bcr,
#                  attn-whiten-cosine-scale20,dsteps2,topk,attn-cosine-gamma0.5; ""]: the baseline (the defaults:
#                  whitened cosine attention at a fixed scale of 20), then the recipe's leading candidate, the
#                  SAGAN block and the previous default (a learned scale from 10) against it, then the rest
#   GRID_IMAGES    real images D trains on per arm [131072]; GRID_SAMPLES faces per FID [2000]
#   EVAL_EVERY, EVAL_SAMPLES   steps between validations of the final run, faces per validation [2500; 2000]
#   LOG_EVERY      steps between log lines, where --max-minutes can stop the run [200]
#   FINAL_RESERVE  seconds kept after training for the exports, final FIDs and r_t [60]
#   FINAL_SAMPLES  faces of the final FIDs of the best and last states [10000]
#   COMPILE        1: --compile; 0: not; auto: if the CUDA test of compiled graphed training passes here [auto]
#   DEVICE=cpu (with IMAGE_SIZE=32 BATCH=16 and small budgets): a dry run on the CPU
# OUT_DIR receives session.log and, per phase, what came out: files of a few MiB at most (no training states).
set -u
if [ $# -lt 2 ] || { [ "$1" != grid ] && [ "$1" != final ]; }; then
  echo "usage: bash bench/gpu_session.sh grid|final OUT_DIR   (environment: see the script's header)" >&2
  exit 2
fi
phase=$1 out=$2
device=${DEVICE:-cuda} size=${IMAGE_SIZE:-64} batch=${BATCH:-256}
budget=${BUDGET:-$([ "$phase" = grid ] && echo 270 || echo 300)}
work=${WORK:-/tmp/sagan-session}
final_flags=${FINAL_FLAGS-"--diffaugment color,translation,cutout"}
mkdir -p "$out" "$work"
export PYTHONUNBUFFERED=1

step() {  # step LIMIT_SECONDS COMMAND...: run with a hard limit, report and return the exit status
  local limit=$1 rc; shift
  if [ "$limit" -lt 5 ]; then echo "== [${SECONDS}s] no time left for: $*"; return 124; fi
  echo "== [${SECONDS}s] $* (limit ${limit}s)"
  timeout -k 10 "$limit" "$@"; rc=$?
  echo "== exit $rc after ${SECONDS}s"
  return $rc
}
left() { echo $((budget - SECONDS - ${1:-0})); }  # seconds of the budget left, less a reserve

prepare_data() {  # sets data and holdout
  if [ -n "${DATA:-}" ]; then
    data=$DATA holdout=${HOLDOUT:-2000}
  else
    data=$work/faces.zip
    [ -f "$data" ] || holdout=$(python3 bench/join_split.py "${TRAIN_ZIP:-.gpu/faces64.zip}" \
      "${VALIDATION_ZIP:-.gpu/validation.zip}" "$data") || exit 1
    # (Joined by an earlier call on this machine: its validation faces counted again.)
    holdout=${holdout:-$(python3 -c "import sys, zipfile; names = zipfile.ZipFile(sys.argv[1]).namelist()
print(sum(n.startswith('~validation/') for n in names))" "$data")}
  fi
  echo "data $data, validation split: its last $holdout files"
}

grid() {
  local graphs=""
  # Graphs are the default on one GPU; only where the tests (the recipe options' replays among them) fail, not.
  step 120 python3 -m pytest -q -p no:cacheprovider tests/test_graphs.py tests/test_training_cuda.py -k "not compiled" \
    || { [ "$device" = cuda ] && graphs=--no-cuda-graphs; }
  step "$(left 45)" python3 bench/ablate.py --data "$data" --out "$work/grid" --grid "${GRID:-all}" \
    --arms "${GRID_ARMS:-baseline,diffaug-ctc,attn-sagan,attn-whiten-cosine,diffaug-tc,bcr,attn-whiten-cosine-scale20,dsteps2,topk,attn-cosine-gamma0.5}" --images "${GRID_IMAGES:-131072}" \
    --image-size "$size" --batch-size "$batch" --holdout "$holdout" --eval-samples "${GRID_SAMPLES:-2000}" \
    --device "$device" --common "$graphs ${GRID_COMMON:-}"
  # A grid cut by the budget wrote no table: write it from the arms that finished.
  [ -f "$work/grid/results.md" ] || python3 bench/ablate.py --data "$data" --out "$work/grid" --table-only \
    --images "${GRID_IMAGES:-131072}" --image-size "$size" --batch-size "$batch" --holdout "$holdout" \
    --eval-samples "${GRID_SAMPLES:-2000}" --device "$device"
  mkdir -p "$out/grid"
  cp "$work/grid/results.json" "$work/grid/results.md" "$out/grid/" 2>/dev/null
  cp -r "$work/grid/logs" "$out/grid/" 2>/dev/null
  for run in "$work"/grid/*-seed*/; do
    name=$(basename "$run")
    cp "$run/log.jsonl" "$out/grid/$name.log.jsonl" 2>/dev/null
    cp "$run/metrics.jsonl" "$out/grid/$name.metrics.jsonl" 2>/dev/null
    grid_png=$(ls "$run"/samples/*.png 2>/dev/null | sort | tail -n 1)
    [ -n "$grid_png" ] && cp "$grid_png" "$out/grid/$name.png"
  done
}

final() {
  local compile=""
  case "${COMPILE:-auto}" in
    1) compile=--compile ;;
    auto) [ "$device" = cuda ] && step 150 python3 -m pytest -q -p no:cacheprovider tests/test_graphs.py \
            -k compiled && compile=--compile ;;
  esac
  local run=$work/final reserve=${FINAL_RESERVE:-60}
  rm -rf "$run"  # a fresh run, not one an earlier call on this machine left
  # The rest of the budget trains, keeping FINAL_RESERVE seconds for the final FIDs, r_t and exports, and 60 s
  # more for what training does after --max-minutes: the last log window, validation and checkpoint.
  local minutes
  minutes=$(python3 -c "print(max(0.2, ($(left $((reserve + 60)))) / 60))")
  step "$(left "$reserve")" python3 train.py --data "$data" --holdout "$holdout" --out "$run" --image-size "$size" \
    --batch-size "$batch" --steps 10000000 --max-minutes "$minutes" --device "$device" --no-progress \
    --cache-dir "$work/cache" --log-every "${LOG_EVERY:-200}" --sample-every 2000 --keep-ckpts 1 \
    --ckpt-every "${EVAL_EVERY:-2500}" --eval-every "${EVAL_EVERY:-2500}" --eval-samples "${EVAL_SAMPLES:-2000}" \
    $compile $final_flags ${ATTN_FLAGS:-} \
    --export "$out/g_ema-last.safetensors"
  # (A run stopped by the limit before its own export still has its checkpoints: export the latest then.)
  for which in best last; do
    [ -f "$out/g_ema-$which.safetensors" ] || python3 -c "import sys; from sagan.checkpoint import export_run
print('exported', sys.argv[3], 'step', export_run(sys.argv[1], sys.argv[2], 'fp32', sys.argv[3]))" \
      "$run" "$out/g_ema-$which.safetensors" "$([ $which = last ] && echo latest || echo best)"
  done
  for which in best last; do
    [ -f "$out/g_ema-$which.safetensors" ] && step "$(left 5)" python3 -m sagan.evaluate \
      --checkpoint "$out/g_ema-$which.safetensors" --reference "$data" --holdout "$holdout" \
      --num-samples "${FINAL_SAMPLES:-10000}" --batch-size 250 --run "$run" --cache-dir "$work/cache" --device "$device"
  done
  step "$(left 0)" python3 -m sagan.overfit --run "$run" --num-faces 2000 --device "$device" > "$out/overfit.json"
  cat "$out/overfit.json"
  cp "$run/config.json" "$run/log.jsonl" "$run/metrics.jsonl" "$out/" 2>/dev/null
  for png in $(ls "$run"/samples/*.png 2>/dev/null | sort | tail -n 2); do
    cp "$png" "$out/final-$(basename "$png")"
  done
}

{
  [ "$device" = cuda ] && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import os, torch; print('torch', torch.__version__, os.cpu_count(), 'cpus',
      torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"
  prepare_data
  $phase
  ls -la "$out"
  echo "== $phase done after ${SECONDS}s of ${budget}s"
} 2>&1 | tee -a "$out/session.log"
