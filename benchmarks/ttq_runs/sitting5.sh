#!/usr/bin/env bash
# Fifth sitting: epochs against model size at about the preset's 3-epoch time:
# 24-48 channels for 4 epochs, 40-80 channels for 2 (the 32-64 preset at 3 is 16.5's control).
set -uo pipefail
cd /work/bench
export PYTHONPATH=/work/bench DIFFKIT_DATA_DIR=/work/shared/data DIFFKIT_RUNS_DIR=/work/bench/runs PATH=/work/main/.venv/bin:$PATH
sc="ddpm:100 ddim:50 dpm++2m:20:karras dpm++2m:20:trailing"
EPOCHS=4 SCORES="$sc" bash benchmarks/time_to_quality.sh /work/bench/s5/out s-narrow24
EPOCHS=2 SCORES="$sc" bash benchmarks/time_to_quality.sh /work/bench/s5/out s-wide40
echo "[$(date +%H:%M:%S)] sitting 5 done" >> /work/bench/s5/out/commands.txt
