#!/usr/bin/env bash
# docs/benchmarks.md 16.5: the `small` preset trained for 3 epochs (the control, scored with
# a newly trained MNIST classifier) and for 4, each scored by FID at DDPM-100, DDIM-50
# (Song et al. 2021, arXiv:2010.02502) and DPM-Solver++(2M)-20 (Lu et al. 2022,
# arXiv:2211.01095) on Karras levels (Karras et al. 2022, arXiv:2206.00364), then at four
# more deterministic settings: DPM-Solver++(2M)-20 on a trailing grid (Lin et al. 2024,
# arXiv:2305.08891), DDIM-20, Heun-10 on Karras levels and DPM-Solver++(2M)-10.
# A record of the run as made on the benchmark VM (its paths under /work/bench).
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
