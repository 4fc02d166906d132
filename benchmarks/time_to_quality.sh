#!/usr/bin/env bash
# Time to quality on a CPU (docs/benchmarks.md section 16): one change at a time from the
# `small` recipe, each row trained and scored alone on this machine, then tabulated by
# benchmarks/ttq_table.py.
#
#   DIFFKIT_DATA_DIR=../shared/data bash benchmarks/time_to_quality.sh OUT [ROW ...]
#
# A row is a name and the `diffkit train` command it runs: `ddpm --preset small-v1` (the
# recipe of section 1, before this ablation) or `ddpm --preset small` (the preset after it)
# with flags, or `rf` for flow rows. Every row is scored by FID (n = 1000, seed 0, the
# MNIST feature classifier) at three sampler settings, by default
# ancestral DDPM-50, DDIM-50 and DPM-Solver++(2M) with 20 Karras-spaced steps (20 network
# evaluations; SCORES="ddpm:100 ddim:50 dpm++2m:20:karras" for the final rows); a flow at
# Euler-50 and Heun-10 (19 evaluations; FLOW_SCORES to change). EPOCHS sets the
# length (default 1) and EXTRA adds flags to every row. `vmstat 5` runs beside each
# training so the table can say how much time the VM's host stole.
set -euo pipefail
out=${1:?usage: time_to_quality.sh OUT [ROW ...]}
shift
mkdir -p "$out/eval" "$out/logs"
export DIFFKIT_RUNS_DIR=${DIFFKIT_RUNS_DIR:-$out/runs}
EPOCHS=${EPOCHS:-1}

declare -A ROWS=(
  [base]="train ddpm --preset small-v1"
  [v]="train ddpm --preset small-v1 --prediction v"
  [x0]="train ddpm --preset small-v1 --prediction x0"
  [edm]="train ddpm --preset small-v1 --prediction edm"
  [edm-lognormal]="train ddpm --preset small-v1 --prediction edm --noise-levels log_normal"
  [eps-lognormal]="train ddpm --preset small-v1 --noise-levels log_normal"
  [minsnr]="train ddpm --preset small-v1 --config $out/minsnr.toml"
  [v-minsnr]="train ddpm --preset small-v1 --prediction v --config $out/minsnr.toml"
  [rf-logitnormal]="train rf --preset small-v1 --time-sampling logit_normal"
  [patch4]="train ddpm --preset small-v1 --config $out/patch4.toml"
  [wide48]="train ddpm --preset small-v1 --config $out/wide48.toml"
  [lr3e-3]="train ddpm --preset small-v1 --lr 3e-3"
  [batch128]="train ddpm --preset small-v1 --batch-size 128 --lr 3e-3"
  [ema999]="train ddpm --preset small-v1 --config $out/ema999.toml"
  [small]="train ddpm --preset small"
  [s-lr3e-3]="train ddpm --preset small --lr 3e-3"
  [s-lr7e-4]="train ddpm --preset small --lr 7e-4"
  [x0-minsnr]="train ddpm --preset small-v1 --prediction x0 --config $out/minsnr.toml"
  [s-deep24]="train ddpm --preset small --config $out/deep24.toml"
  [s-batch128]="train ddpm --preset small --batch-size 128 --lr 2.1e-3"
  [x0-small]="train ddpm --preset small --prediction x0 --snapshot-every-steps 20"
  [small-v1-full]="train ddpm --preset small-v1"
  [rf-small]="train rf --preset small"
  [s-gelu]="train ddpm --preset small --config $out/gelu.toml"
  [s-gn1]="train ddpm --preset small --config $out/gn1.toml"
  [s-gn32]="train ddpm --preset small --config $out/gn32.toml"
  [s-warm0]="train ddpm --preset small --config $out/warm0.toml"
  [s-warm500]="train ddpm --preset small --config $out/warm500.toml"
  [s-narrow24]="train ddpm --preset small --config $out/narrow24.toml"
  [s-wide40]="train ddpm --preset small --config $out/wide40.toml"
)
cat > "$out/patch4.toml" <<'TOML'
[model]
patch_size = 4      # 28x28x1 -> 7x7x16: levels at 7x7@64 and 4x4@128
base_channels = 64
TOML
cat > "$out/wide48.toml" <<'TOML'
[model]
base_channels = 48  # 14x14@48, 7x7@96: 2.2x the FLOPs
head_channels = 48
TOML
cat > "$out/deep24.toml" <<'TOML'
[model]
base_channels = 24  # two residual blocks per level at 3/4 the width: 1.1x the FLOPs
head_channels = 24
num_res_blocks = 2
TOML
cat > "$out/narrow24.toml" <<'TOML'
[model]
base_channels = 24  # 14x14@24, 7x7@48: 0.56x the FLOPs (run it for more epochs at equal time)
head_channels = 24
TOML
cat > "$out/wide40.toml" <<'TOML'
[model]
base_channels = 40  # 14x14@40, 7x7@80: 1.56x the FLOPs (run it for fewer epochs at equal time)
head_channels = 40
TOML
cat > "$out/gelu.toml" <<'TOML'
[model]
activation = "gelu"  # in the residual blocks and the output head (the time MLP keeps SiLU)
TOML
cat > "$out/gn1.toml" <<'TOML'
[model]
norm_groups = 1      # one group: layer norm over (C, H, W)
TOML
cat > "$out/gn32.toml" <<'TOML'
[model]
norm_groups = 32     # instance norm at 32 channels, 2-3 channels per group at 64 and 96
TOML
cat > "$out/warm0.toml" <<'TOML'
[train]
warmup_steps = 0     # the preset warms up for 100 steps
TOML
cat > "$out/warm500.toml" <<'TOML'
[train]
warmup_steps = 500
TOML
cat > "$out/ema999.toml" <<'TOML'
[train]
ema_decay = 0.999
TOML
cat > "$out/minsnr.toml" <<'TOML'
[diffusion]
min_snr_gamma = 5.0
TOML

score() {  # score ROW RUN SAMPLER STEPS [SPACING]
  local row=$1 run=$2 sampler=$3 steps=$4 spacing=${5:-}
  diffkit eval "$run" -n 1000 --seed 0 --sampler "$sampler" --steps "$steps" \
    ${spacing:+--spacing "$spacing"} --out "$out/eval/$row" >>"$out/logs/$row-eval.log" 2>&1
}

for row in "${@:-base}"; do
  cmd=${ROWS[$row]:?unknown row $row}
  extra=${EXTRA:-}
  echo "[$(date +%H:%M:%S)] $row: diffkit $cmd --epochs $EPOCHS --name $row $extra" \
    | tee -a "$out/commands.txt"
  vmstat 5 >"$out/logs/$row-vmstat.log" &
  vm=$!
  # shellcheck disable=SC2086
  run=$(diffkit $cmd --epochs "$EPOCHS" --name "$row" $extra 2>"$out/logs/$row-train.log" \
    | tail -n 1)
  kill "$vm"
  echo "$row $run" >>"$out/runs.txt"
  scores=${SCORES:-ddpm:50 ddim:50 dpm++2m:20:karras}
  [[ $cmd == "train rf"* ]] && scores=${FLOW_SCORES:-euler:50 heun:10}
  for s in $scores; do
    IFS=: read -r sampler steps spacing <<<"$s"
    score "$row" "$run" "$sampler" "$steps" "$spacing"
  done
  echo "[$(date +%H:%M:%S)] $row done" | tee -a "$out/commands.txt"
done
