#!/usr/bin/env bash
# docs/benchmarks.md 16.6, second table: epochs against width at about the `small` preset's
# 3-epoch training time: its UNet at 24-48 channels (0.56x the FLOPs) for 4 epochs and at
# 40-80 channels (1.56x) for 2 (the 32-64 preset at 3 epochs is epochs_3_vs_4.sh's control),
# scored by FID at DDPM-100, DDIM-50 and DPM-Solver++(2M)-20 on Karras and trailing grids.
# A record of the run as made on the benchmark VM (its paths under /work/bench).
set -uo pipefail
cd /work/bench
export PYTHONPATH=/work/bench DIFFKIT_DATA_DIR=/work/shared/data DIFFKIT_RUNS_DIR=/work/bench/runs PATH=/work/main/.venv/bin:$PATH
sc="ddpm:100 ddim:50 dpm++2m:20:karras dpm++2m:20:trailing"
EPOCHS=4 SCORES="$sc" bash benchmarks/time_to_quality.sh /work/bench/s5/out s-narrow24
EPOCHS=2 SCORES="$sc" bash benchmarks/time_to_quality.sh /work/bench/s5/out s-wide40
echo "[$(date +%H:%M:%S)] width_vs_epochs done" >> /work/bench/s5/out/commands.txt
