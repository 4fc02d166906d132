#!/usr/bin/env bash
# Single-step denoisers (docs/benchmarks.md section 12): fixed sigma, a sigma range, Noise2Noise
# targets (Lehtinen et al. 2018, arXiv:1803.04189) and pure noise, against Tweedie's formula
# (Efron 2011) on a DDPM, blur and the oracle; and UC Berkeley CS180's class-conditioned
# flow-matching recipe (Lipman et al. 2023, arXiv:2210.02747).
#   DIFFKIT_DATA_DIR=../shared/data bash benchmarks/denoise.sh BASE_DDPM CLASSIFIER OUT
# Run alone on the machine: it times training.
set -euo pipefail
BASE=$1 CLF=$2 OUT=$3
mkdir -p "$OUT"
export DIFFKIT_RUNS_DIR="$OUT/runs"
log() { echo "+ $*" | tee -a "$OUT/commands.txt"; "$@"; }
run() { log "$@" 2>&1 | tee -a "$OUT/train.log" | tail -2 | head -1; }  # the run folder
FIXED=$(run diffkit train denoiser --sigma 0.5 --name fixed)
RANGE=$(run diffkit train denoiser --sigma-range 0:1 --sigma-input --name range)
N2N=$(run diffkit train denoiser --sigma 0.5 --target noisy --name n2n)
PURE=$(run diffkit train denoiser --pure-noise --name pure)
FLOW=$(run diffkit train rf --preset small --cond class --lr-schedule exponential --lr-final 0.1 --name flow-recipe)
log diffkit eval "$FLOW" -n 1000 --steps 50 --guidance 5 --classifier "$CLF" 2>&1 | tail -14 | tee "$OUT/flow-eval.txt"
log diffkit denoise-bench "$FIXED" "$RANGE" "$N2N" "$PURE" "$BASE" "$FLOW" -n 1000 --pure-noise \
    --classifier "$CLF" --out "$OUT/bench" 2>&1 | tail -20 | tee "$OUT/bench.txt"
for r in "$FIXED" "$RANGE" "$N2N" "$PURE" "$FLOW"; do
  python -c "import json,sys; s=json.load(open('$r/summary.json')); print('$r', s['train_seconds'], s['images_per_sec'], s['last_loss'])"
done | tee "$OUT/times.txt"
