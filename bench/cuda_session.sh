#!/usr/bin/env bash
# One prepared GPU session, run unattended within a fixed budget: the CUDA tests, the training speed
# benchmarks (eager, CUDA graphs, graphs with torch.compile), then a time-limited training run on
# the rest of the budget.
# The CUDA numbers in docs/benchmarks.md come from this script.
#
#   bash bench/cuda_session.sh FACES.zip OUT_DIR [SECONDS]
#
# OUT_DIR receives session.log, the run's config.json and log.jsonl, its last sample grid, the
# exported EMA generator (fp16) and the last three periodic checkpoints exported likewise.
set -u
if [ $# -lt 2 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
  echo "usage: bash bench/cuda_session.sh FACES.zip OUT_DIR [SECONDS]  (default 540; DEVICE=cpu for a dry run)" >&2
  exit 2
fi
data=$1 out=$2 budget=${3:-540} device=${DEVICE:-cuda}  # DEVICE=cpu: a dry run of the script
mkdir -p "$out"
export PYTHONUNBUFFERED=1
run_dir=/tmp/sagan-run
rm -rf "$run_dir"  # a fresh run, not one left by an earlier call

step() {  # step LIMIT_SECONDS COMMAND...: run with a hard limit, report and return the exit status
  local limit=$1 rc; shift
  echo "== [$((SECONDS))s] $* (limit ${limit}s)"
  timeout -k 10 "$limit" "$@"; rc=$?
  echo "== exit $rc after ${SECONDS}s"
  return $rc
}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 -c "import torch, os; print('torch', torch.__version__, torch.cuda.get_device_name(), os.cpu_count(), 'cpus')"
  step 240 python3 -m pytest -q -p no:cacheprovider tests/test_graphs.py tests/test_training_cuda.py
  graphs_ok=$?
  speed="python3 bench/train_speed.py --device $device --steps 20 --rounds 3 --warmup 5"
  # The measurements the 3x goal needs first, so a session cut short still brings them back.
  if [ "$device" = cuda ]; then
    step 90 $speed --presets sagan,seed,dcgan --cuda-graphs
    step 200 $speed --presets sagan --cuda-graphs --compile
  fi
  step 90 $speed --presets sagan,seed,dcgan
  [ "$device" = cuda ] && step 60 $speed --presets sagan --cuda-graphs --batch-size 256 --steps 10
  step 60 $speed --presets sagan --steps 5 --rounds 1 --profile  # where an eager step's host time goes
  # Train with CUDA graphs (the default on one GPU) only where the tests showed they train like eager steps.
  graphs_flag=$([ "$device" = cuda ] && [ "$graphs_ok" = 0 ] && echo --cuda-graphs || echo --no-cuda-graphs)
  # The rest of the budget trains, keeping 75 s for start-up, the last checkpoint and the exports.
  if [ $((budget - SECONDS)) -ge 120 ]; then
    minutes=$(python3 -c "print(max(0.5, ($budget - $SECONDS - 75) / 60))")
    step $((budget - SECONDS)) python3 train.py --data "$data" --out "$run_dir" --batch-size 256 \
      --steps 1000000 --max-minutes "$minutes" --log-every 100 --sample-every 1000 --ckpt-every 2000 \
      --keep-ckpts 0 --device "$device" --cache-dir /tmp/sagan-cache --no-progress $graphs_flag \
      --export "$out/g_ema-final.safetensors" --export-dtype fp16
  else
    echo "== ${SECONDS}s of ${budget}s gone: no time left to train"
  fi
  for ckpt in $(ls "$run_dir"/checkpoints/step-*.pt 2>/dev/null | sort | tail -n 3); do
    name=$(basename "$ckpt" .pt)
    python3 -c "from sagan.checkpoint import export_run; export_run('$run_dir', '$out/g_ema-$name.safetensors', 'fp16', '$name')" \
      && echo "exported $name"
  done
  cp "$run_dir/config.json" "$run_dir/log.jsonl" "$out/" 2>/dev/null
  last_grid=$(ls "$run_dir"/samples/*.png 2>/dev/null | sort | tail -n 1)
  [ -n "$last_grid" ] && cp "$last_grid" "$out/grid-$(basename "$last_grid")"
  echo "== done after ${SECONDS}s"
} 2>&1 | tee "$out/session.log"
