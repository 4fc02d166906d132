#!/usr/bin/env bash
# docs/benchmarks.md 16.6, first table: one change at a time from the `small` preset, one
# epoch each, with `small` itself as the control run in the same hours and the classifier of
# epochs_3_vs_4.sh: GELU (Hendrycks & Gimpel 2016, arXiv:1606.08415) for SiLU, group norm
# (Wu & He 2018, arXiv:1803.08494) with one group (layer norm) or one group per channel
# (instance norm), and no or a longer linear LR warm-up (Goyal et al. 2017, arXiv:1706.02677).
# The instance-norm row as first written (s-in, norm_groups = 64) failed at build, which
# stopped this script before the warm-up rows (the config check was fixed in 6a4b0ff);
# narrow24_5_epochs_norm_warmup.sh ran s-warm0, s-warm500 and s-gn32 (32 groups) instead.
# s-in is no longer a row of time_to_quality.sh. A record of the run as made on the
# benchmark VM (its paths under /work/bench).
set -uo pipefail
cd /work/bench
export PYTHONPATH=/work/bench DIFFKIT_DATA_DIR=/work/shared/data DIFFKIT_RUNS_DIR=/work/bench/runs PATH=/work/main/.venv/bin:$PATH
EPOCHS=1 bash benchmarks/time_to_quality.sh /work/bench/s4/out small s-gelu s-gn1 s-in s-warm0 s-warm500
echo "[$(date +%H:%M:%S)] gelu_norm_warmup done" >> /work/bench/s4/out/commands.txt
