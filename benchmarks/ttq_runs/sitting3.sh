#!/usr/bin/env bash
# Third sitting: the preset at 3 (control, new classifier) and 4 epochs, extra deterministic samplers.
set -uo pipefail
cd /work/bench
export PYTHONPATH=/work/bench DIFFKIT_DATA_DIR=/work/shared/data DIFFKIT_RUNS_DIR=/work/bench/runs PATH=/work/main/.venv/bin:$PATH
for e in 3 4; do
  out=/work/bench/s3e$e
  EPOCHS=$e SCORES="ddpm:100 ddim:50 dpm++2m:20:karras" bash benchmarks/time_to_quality.sh $out small
  run=$(awk '{print $2}' $out/runs.txt | tail -1)
  for s in dpm++2m:20:trailing ddim:20: heun:10:karras dpm++2m:10:karras; do
    IFS=: read -r sampler steps spacing <<<"$s"
    diffkit eval "$run" -n 1000 --seed 0 --sampler "$sampler" --steps "$steps" \
      ${spacing:+--spacing "$spacing"} --out "$out/eval/small" >>"$out/logs/small-extra.log" 2>&1 \
      || echo "failed: $s" >>"$out/logs/small-extra.log"
  done
  echo "[$(date +%H:%M:%S)] extras done" >>"$out/commands.txt"
done
