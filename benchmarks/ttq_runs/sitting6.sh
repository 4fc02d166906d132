#!/usr/bin/env bash
# Sixth sitting: the 24-48 network for 5 epochs, then the warm-up and norm rows at 1 epoch.
set -uo pipefail
cd /work/bench
export PYTHONPATH=/work/bench DIFFKIT_DATA_DIR=/work/shared/data DIFFKIT_RUNS_DIR=/work/bench/runs PATH=/work/main/.venv/bin:$PATH
sc="ddpm:100 ddim:50 dpm++2m:20:karras dpm++2m:20:trailing"
EPOCHS=5 SCORES="$sc" bash benchmarks/time_to_quality.sh /work/bench/s6/e5 s-narrow24
for row in s-warm0 s-warm500 s-gn32; do
  EPOCHS=1 bash benchmarks/time_to_quality.sh /work/bench/s4/out $row || echo "failed: $row" >> /work/bench/s4/out/commands.txt
done
echo "[$(date +%H:%M:%S)] sitting 6 done" >> /work/bench/s6/e5/commands.txt
