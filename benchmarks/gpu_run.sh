#!/usr/bin/env bash
# The reference speed run on a GPU machine that has JAX with CUDA and no internet, from the
# repository root, with the wheels of benchmarks/fetch_gpu_wheels.sh in .whl/ and the flowers
# photos in .gpudata/flowers (both ignored by git, carried over by hand):
#
#     bash benchmarks/gpu_run.sh       # PARALLEL="5 10" (the default) runs the service twice
#
# Arguments are passed on to the benchmark after the reference ones, so that they win: for a
# smoke run, --image-size 32 --trials 2 --epochs 2 --images-per-class 8.
#
# Plain KerasTuner against the service, 10 trials x 15 epochs, 192 px, batch 128, on
# KERAS_BACKEND=jax. The table, its JSON (after each run) and the logs go to $OUT (default
# var/gpu-run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

OUT="${OUT:-var/gpu-run}"
PARALLEL="${PARALLEL:-5 10}"
DATA="${DATA:-.gpudata/flowers}"
# Under the 600 s a device command may take, with time left to copy the logs.
LIMIT="${LIMIT:-560}"
mkdir -p "$OUT"
rm -rf /tmp/nas-speed /tmp/site

python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD"
export KERAS_BACKEND=jax TF_CPP_MIN_LOG_LEVEL=2

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    nproc
    python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)"
} 2>&1 | tee "$OUT/machine.txt"

# shellcheck disable=SC2086 # PARALLEL is a list of numbers
timeout "$LIMIT" python3 -m benchmarks.speed_vs_keras_tuner "$DATA" --backend jax \
    --image-size 192 --trials 10 --epochs 15 --batch-size 128 \
    --parallel-trials $PARALLEL --workdir /tmp/nas-speed --json "$OUT/speed.json" "$@" \
    2>&1 | tee "$OUT/speed.txt"
status=${PIPESTATUS[0]}

mkdir -p "$OUT/logs"
for log in /tmp/nas-speed/*/*.log; do
    run="$(basename "$(dirname "$log")")"
    tail -c 200000 "$log" > "$OUT/logs/$run-$(basename "$log")"
done
exit "$status"
