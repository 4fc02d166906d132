#!/usr/bin/env bash
# docs/benchmarks.md 16.6: the 24-48-channel UNet of width_vs_epochs.sh for 5 epochs (the
# second table's last row), then the 1-epoch rows gelu_norm_warmup.sh did not reach: no LR
# warm-up, 500 warm-up steps, and 32 norm groups (instance norm at 32 channels), into that
# script's output folder so that one table holds them. A niced test shared the cores during
# the 5-epoch row; narrow24_5_epochs_alone.sh timed it again alone. A record of the run as
# made on the benchmark VM (its paths under /work/bench).
set -uo pipefail
cd /work/bench
export PYTHONPATH=/work/bench DIFFKIT_DATA_DIR=/work/shared/data DIFFKIT_RUNS_DIR=/work/bench/runs PATH=/work/main/.venv/bin:$PATH
sc="ddpm:100 ddim:50 dpm++2m:20:karras dpm++2m:20:trailing"
EPOCHS=5 SCORES="$sc" bash benchmarks/time_to_quality.sh /work/bench/s6/e5 s-narrow24
for row in s-warm0 s-warm500 s-gn32; do
  EPOCHS=1 bash benchmarks/time_to_quality.sh /work/bench/s4/out $row || echo "failed: $row" >> /work/bench/s4/out/commands.txt
done
echo "[$(date +%H:%M:%S)] narrow24_5_epochs_norm_warmup done" >> /work/bench/s6/e5/commands.txt
