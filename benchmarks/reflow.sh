#!/usr/bin/env bash
# Rectified flow, reflow and distillation on MNIST, pixel and flat-latent (docs/benchmarks.md,
# section 7), one command after another. On a 2-core CPU: about 1.3 hours.
#
#   DIFFKIT_DATA_DIR=../shared/data DIFFKIT_RUNS_DIR=runs bash benchmarks/reflow.sh [OUT]
#
# Reuse finished runs with RF1=..., PAIRS=..., RF2=..., DISTILL=..., PAIRS2=..., DISTILL2=...,
# VAE_RUN=... (folders). STEPS picks what runs (default: all):
#   rf1 pairs rf2 distill distill2 straight eval grids pf latent logitnormal
# Logs: OUT/<step>.log (default benchmarks/results/raw/reflow, not kept in git); eval reports
# land in the runs' eval/ folders. The tables' numbers are kept in benchmarks/results/07.*.json.
set -euo pipefail
OUT=$(realpath -m "${1:-$(dirname "$0")/results/raw/reflow}")
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
STEPS=${STEPS:-"rf1 pairs rf2 distill distill2 straight eval grids pf latent logitnormal"}
N=${N:-1000}
NPAIRS=${NPAIRS:-12000}
source benchmarks/lib.sh
ensure_classifier

# 1-RF: the small UNet of the DDPM benchmarks, trained as a rectified flow (3 epochs), with
# uniform training times as in Liu et al. (measured before logit-normal became the default).
want rf1 && RF1=${RF1:-$(run train-1rf train rf --preset small --time-sampling uniform \
  --name small-1rf)}
# Pairs from its ODE: RK4 with 8 steps (32 evaluations per pair).
want pairs && PAIRS=${PAIRS:-$(run pairs reflow make-pairs "$RF1" -n "$NPAIRS" --steps 8 \
  --solver rk4 --name small-1rf-rk4x8)}
# 2-RF: the same network, initialised from the 1-RF, on the fixed pairs.
want rf2 && RF2=${RF2:-$(run train-2rf reflow train "$PAIRS" --epochs 8 --lr 5e-4)}
# One-step model: distilled on the same pairs (t = 0 only), starting from the 2-RF.
want distill && DISTILL=${DISTILL:-$(run distill reflow train "$PAIRS" --distill 1 \
  --init-from "$RF2" --epochs 4 --lr 5e-4)}
# The paper's 2-RF + distill: new pairs from the 2-RF, distilled starting from the 2-RF.
if want distill2; then
  PAIRS2=${PAIRS2:-$(run pairs2 reflow make-pairs "$RF2" -n "$NPAIRS" --steps 8 --solver rk4 \
    --name small-2rf-rk4x8)}
  DISTILL2=${DISTILL2:-$(run distill2 reflow train "$PAIRS2" --distill 1 --epochs 4 --lr 5e-4)}
  run eval-distill2 eval "$DISTILL2" -n "$N" --sweep steps=1,2 --samplers euler
fi
# S of the 1-RF (reflow train reports S of every model it trains, over 500 paths).
want straight && run straightness reflow straightness "$RF1" -n 500
if want eval; then
  run eval-1rf eval "$RF1" -n "$N" --sweep steps=1,2,5,10,100 --samplers euler
  run eval-2rf eval "$RF2" -n "$N" --sweep steps=1,2,5,10,100 --samplers euler
  run eval-distill eval "$DISTILL" -n "$N" --sweep steps=1,2,5 --samplers euler
  run eval-1rf-rk4 eval "$RF1" -n "$N" --sweep steps=2,5,10 --samplers heun,rk4
  run eval-1rf-dopri5 eval "$RF1" -n "$N" --sampler dopri5
fi
want grids && python benchmarks/reflow_grid.py "$RF1" "$RF2" "$DISTILL" ${DISTILL2:+"$DISTILL2"} \
  --labels "1-RF,2-RF,distilled (1-RF pairs),distilled (2-RF pairs)" \
  --out docs/img/reflow-pixel.png | tee -a "$OUT/grids.log"
if want pf; then  # the DDPM of section 6.1 through the ODE solvers and DPM-Solver++(2M)
  CFG_RUN=${CFG_RUN:-$(ls -d "${DIFFKIT_RUNS_DIR:-runs}"/ddpm/*-small-cfg | tail -n 1)}
  run pf eval "$CFG_RUN" -n "$N" --sweep steps=5,10,20 --samplers ddim,dpm++2m,heun,rk4
fi
if want latent; then  # the flat 64-d VAE of section 6.2; MLP velocity network
  VAE_RUN=${VAE_RUN:-$(ls -d "${DIFFKIT_RUNS_DIR:-runs}"/vae/*-run | head -n 1)}
  LRF1=${LRF1:-$(run latent-1rf train rf --vae "$VAE_RUN" --epochs 10 --time-sampling uniform \
    --name flat64-1rf)}
  LPAIRS=${LPAIRS:-$(run latent-pairs reflow make-pairs "$LRF1" -n 30000 --steps 8 \
    --solver rk4 --shard-size 10000 --name flat64-1rf-rk4x8)}
  LRF2=${LRF2:-$(run latent-2rf reflow train "$LPAIRS" --epochs 10 --lr 3e-4)}
  run straightness reflow straightness "$LRF1" -n 500
  run latent-eval-1rf eval "$LRF1" -n "$N" --sweep steps=1,2,5,10,100 --samplers euler
  run latent-eval-2rf eval "$LRF2" -n "$N" --sweep steps=1,2,5,10,100 --samplers euler
  python benchmarks/reflow_grid.py "$LRF1" "$LRF2" --labels latent-1-RF,latent-2-RF \
    --out docs/img/reflow-latent.png | tee -a "$OUT/grids.log"
fi
if want logitnormal; then  # the 1-RF again with logit-normal training times (Esser et al. 2024)
  LN=${LN:-$(run train-1rf-ln train rf --preset small --time-sampling logit_normal \
    --name small-1rf-logitnormal)}
  run straightness reflow straightness "$LN" -n 500
  run eval-1rf-ln eval "$LN" -n "$N" --sweep steps=1,2,5,10,100 --samplers euler
fi
