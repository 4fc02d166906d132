#!/usr/bin/env bash
# Fourth sitting: 1-epoch GELU / norm / warm-up rows with a same-sitting control, same classifier as sitting 3.
# (s-in, norm_groups = 64, crashed at build: the bug fixed in 6a4b0ff; sitting6.sh ran s-gn32 instead.)
set -uo pipefail
cd /work/bench
export PYTHONPATH=/work/bench DIFFKIT_DATA_DIR=/work/shared/data DIFFKIT_RUNS_DIR=/work/bench/runs PATH=/work/main/.venv/bin:$PATH
EPOCHS=1 bash benchmarks/time_to_quality.sh /work/bench/s4/out small s-gelu s-gn1 s-in s-warm0 s-warm500
echo "[$(date +%H:%M:%S)] sitting 4 done" >> /work/bench/s4/out/commands.txt
