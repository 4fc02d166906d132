#!/usr/bin/env bash
# The default samplers of `diffkit sample` and `diffkit eval`, chosen by measured quality per
# second on the CPU presets: train the MNIST feature classifier and the `small` DDPM and
# flow (one after the other, nothing else running), then sweep each family's samplers over
# step counts from the same noise (n = 1000, seed 0). benchmarks/default_samplers_table.py
# turns the sweeps into benchmarks/results/17-default-samplers.json.
#
#   DIFFKIT_DATA_DIR=../shared/data bash benchmarks/default_samplers.sh OUT
set -euo pipefail
out=${1:?usage: default_samplers.sh OUT}
mkdir -p "$out/logs"
export DIFFKIT_RUNS_DIR=${DIFFKIT_RUNS_DIR:-$out/runs}
stamp() { date -u +%Y-%m-%dT%H:%M:%SZ; }
timed() {  # timed NAME CMD...: stdout and stderr to logs/NAME.log, wall seconds to logs/NAME.wall
  local name=$1; shift
  echo "[$(stamp)] $*" | tee -a "$out/commands.txt"
  local t0; t0=$(date +%s.%N)
  "$@" >"$out/logs/$name.out" 2>"$out/logs/$name.err"
  echo "$(date +%s.%N) - $t0" | bc >"$out/logs/$name.wall"
}
timed classifier diffkit train classifier --dataset mnist
timed ddpm diffkit train ddpm --preset small
timed rf diffkit train rf --preset small
ddpm=$(tail -n 1 "$out/logs/ddpm.out"); rf=$(tail -n 1 "$out/logs/rf.out")
timed sample-ddpm diffkit sample "$ddpm" --sampler ddpm --steps 100 -n 64 --out "$out/sample-ddpm"
timed sweep-ddpm diffkit eval "$ddpm" -n 1000 --seed 0 --sweep steps=10,20,50,100 \
  --samplers ddpm,ddim,dpm++2m
timed sweep-rf diffkit eval "$rf" -n 1000 --seed 0 --sweep steps=5,10,20,50 \
  --samplers euler,heun
echo "[$(stamp)] done" | tee -a "$out/commands.txt"
