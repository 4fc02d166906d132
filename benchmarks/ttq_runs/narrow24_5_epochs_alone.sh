#!/usr/bin/env bash
# docs/benchmarks.md 16.6: the 5-epoch 24-48-channel row again, alone on the machine, for its
# training time (its first run, narrow24_5_epochs_norm_warmup.sh, shared the cores with a
# test), then DDPM-100 FID to check that the retrained weights score the same. A record of
# the run as made on the benchmark VM (its paths under /work/bench).
set -uo pipefail
cd /work/bench
export PYTHONPATH=/work/bench DIFFKIT_DATA_DIR=/work/shared/data DIFFKIT_RUNS_DIR=/work/bench/runs PATH=/work/main/.venv/bin:$PATH
EPOCHS=5 SCORES="ddpm:100" bash benchmarks/time_to_quality.sh /work/bench/s7/out s-narrow24
echo "[$(date +%H:%M:%S)] narrow24_5_epochs_alone done" >> /work/bench/s7/out/commands.txt
