#!/usr/bin/env bash
# Post-hoc EMA (Karras et al. 2024, arXiv:2312.02696; docs/benchmarks.md 16.4): one run
# trained with --snapshot-every-steps, its EMA rebuilt at several decays by `diffkit ema`,
# each scored like the ablation's rows (FID, n = 1000, seed 0, the MNIST feature classifier). The run's own online EMA is scored too, as
# `online`, so the rebuilt average at the run's decay can be checked against it.
#
#   DIFFKIT_DATA_DIR=../shared/data bash benchmarks/posthoc_ema.sh OUT RUN DECAY [DECAY ...]
#
# SCORES as in time_to_quality.sh (default "ddpm:100 ddim:50 dpm++2m:20:karras"); the
# table: python benchmarks/posthoc_ema_table.py OUT.
set -euo pipefail
out=${1:?usage: posthoc_ema.sh OUT RUN DECAY [DECAY ...]}
run=${2:?usage: posthoc_ema.sh OUT RUN DECAY [DECAY ...]}
shift 2
mkdir -p "$out/eval" "$out/logs"
scores=${SCORES:-ddpm:100 ddim:50 dpm++2m:20:karras}

score() {  # score NAME CHECKPOINT
  for s in $scores; do
    IFS=: read -r sampler steps spacing <<<"$s"
    diffkit eval "$2" -n 1000 --seed 0 --sampler "$sampler" --steps "$steps" \
      ${spacing:+--spacing "$spacing"} --out "$out/eval/$1" >>"$out/logs/$1-eval.log" 2>&1
  done
  echo "[$(date +%H:%M:%S)] $1 done" | tee -a "$out/commands.txt"
}

[[ -d $out/eval/online ]] || score online "$run/checkpoints/last.safetensors"
for d in "$@"; do
  ckpt=$(diffkit ema "$run" --decay "$d" 2>>"$out/logs/ema.log" | tail -n 1)
  score "ema-$d" "$ckpt"
done
