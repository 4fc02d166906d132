#!/usr/bin/env bash
# Seventh sitting: 16.6's 5-epoch 24-48 row again, alone, for its time (its first run shared
# the cores with a test), then DDPM-100 to check that the retrained weights score the same.
set -uo pipefail
cd /work/bench
export PYTHONPATH=/work/bench DIFFKIT_DATA_DIR=/work/shared/data DIFFKIT_RUNS_DIR=/work/bench/runs PATH=/work/main/.venv/bin:$PATH
EPOCHS=5 SCORES="ddpm:100" bash benchmarks/time_to_quality.sh /work/bench/s7/out s-narrow24
echo "[$(date +%H:%M:%S)] sitting 7 done" >> /work/bench/s7/out/commands.txt
