#!/usr/bin/env bash
# Few-step generation on the `small` DDPM and flow of benchmarks/default_samplers.sh: their
# solvers at 1 to 100 network evaluations, consistency students of each (distillation and
# tuning) and autoguidance with a guidance interval, one after the other with nothing else
# running, the same noise (seed 0) and n = 1000 throughout. benchmarks/few_step_table.py
# turns OUT into benchmarks/results/20-few-step.json, the plot and the same-noise grid.
#
#   DIFFKIT_DATA_DIR=../shared/data DIFFKIT_RUNS_DIR=RUNS \
#     bash benchmarks/few_step.sh OUT RUNS/ddpm/<small run> RUNS/rf/<small run>
set -euo pipefail
out=${1:?usage: few_step.sh OUT DDPM_RUN FLOW_RUN}
ddpm=${2:?usage: few_step.sh OUT DDPM_RUN FLOW_RUN}
rf=${3:?usage: few_step.sh OUT DDPM_RUN FLOW_RUN}
mkdir -p "$out/logs"
stamp() { date -u +%Y-%m-%dT%H:%M:%SZ; }
timed() {  # timed NAME CMD...: stdout and stderr to logs/NAME.*, wall seconds to logs/NAME.wall
  local name=$1; shift
  echo "[$(stamp)] $*" | tee -a "$out/commands.txt"
  local t0; t0=$(date +%s.%N)
  "$@" >"$out/logs/$name.out" 2>"$out/logs/$name.err"
  echo "$(date +%s.%N) - $t0" | bc >"$out/logs/$name.wall"
}
student() { tail -n 1 "$out/logs/$1.out"; }
ev=(-n 1000 --seed 0)

# The students: each trained alone, then evaluated.
timed cd-ddpm diffkit distill "$ddpm" --method cd --sample-every-steps 0
timed ect-ddpm diffkit distill "$ddpm" --method ect --sample-every-steps 0
timed cd-rf diffkit distill "$rf" --method cd --sample-every-steps 0
timed ect-rf diffkit distill "$rf" --method ect --sample-every-steps 0

# The teachers' solvers, 1 to 100 network evaluations.
timed eval-ddpm diffkit eval "$ddpm" "${ev[@]}" --sweep steps=1,2,4,8,20 --samplers dpm++2m,unipc
timed eval-ddpm-100 diffkit eval "$ddpm" "${ev[@]}" --sweep steps=100 --samplers ddpm,dpm++2m
timed eval-rf diffkit eval "$rf" "${ev[@]}" --sweep steps=1,2,4,8,20,100 --samplers euler
timed eval-rf-heun diffkit eval "$rf" "${ev[@]}" --sweep steps=2,4,10,50 --samplers heun
for s in cd-ddpm ect-ddpm; do
  timed "eval-$s" diffkit eval "$(student "$s")" "${ev[@]}" --sweep steps=1,2,4,8 \
    --samplers ddim,consistency
done
for s in cd-rf ect-rf; do
  timed "eval-$s" diffkit eval "$(student "$s")" "${ev[@]}" --sweep steps=1,2,4,8 \
    --samplers euler,consistency
done

# Autoguidance by the epoch-2 checkpoint, everywhere and on a band of noise levels.
weak="$ddpm/checkpoints/epoch-0002.safetensors"
for band in all 0.3:5 1:10; do
  extra=(); [[ $band == all ]] || extra=(--guidance-interval "$band")
  timed "ag-${band/:/-}" diffkit eval "$ddpm" "${ev[@]}" --guide-model "$weak" \
    --sweep guidance=2,3 --samplers ddpm --steps 50 "${extra[@]}"
done
echo "[$(stamp)] done" | tee -a "$out/commands.txt"
