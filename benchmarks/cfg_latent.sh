#!/usr/bin/env bash
# Classifier-free guidance, the flat VAE, latent diffusion and prediction/schedule choices on
# MNIST, run one after another (docs/benchmarks.md, section 6). On a 2-core CPU: ~1.5 hours.
#
#   DIFFKIT_DATA_DIR=../shared/data DIFFKIT_RUNS_DIR=runs bash benchmarks/cfg_latent.sh [OUT]
#
# Reuse finished runs instead of training them again with CFG_RUN=..., VAE_RUN=..., LDM_RUN=...
# (run folders). STEPS picks what runs (default: all): cfg routes vae ldm grid transformer.
# Every command's output goes to OUT/<step>.log (default benchmarks/results/raw/cfg_latent,
# not kept in git); eval reports land in the runs' eval/ folders. The tables' numbers are
# kept in benchmarks/results/06.*.json (benchmarks/results/README.md).
set -euo pipefail
OUT=$(realpath -m "${1:-$(dirname "$0")/results/raw/cfg_latent}")
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
STEPS=${STEPS:-"cfg routes vae ldm grid transformer"}
N=${N:-1000}
source benchmarks/lib.sh

ensure_classifier

if want cfg; then  # pixel space, class-conditional small UNet, guidance sweep
  CFG_RUN=${CFG_RUN:-$(run cfg-train train ddpm --preset small --cond class --name small-cfg)}
  run cfg-sweep eval "$CFG_RUN" -n "$N" --sweep guidance=0,1,2,3,5,7 --samplers ddpm --steps 50
fi
if want routes; then  # label as an input channel and by cross-attention (Rombach et al. 2022)
  r=$(run routes train ddpm --preset small --cond class --cond-routes input,cross \
        --name small-cfg-input-cross)
  run routes eval "$r" -n "$N" --sweep guidance=1,2 --samplers ddpm --steps 50 >/dev/null
fi
if want vae; then  # the flat conv VAE of docs/vae.md, 64-d latent
  VAE_RUN=${VAE_RUN:-$(run vae-train train vae --latent-dim 64 --epochs 5 --name flat64)}
fi
if want ldm; then  # latent diffusion on it: MLP denoiser, class-conditional
  LDM_RUN=${LDM_RUN:-$(run ldm-train train ldm --vae "$VAE_RUN" --cond class --name flat64-cfg)}
  run ldm-sweep eval "$LDM_RUN" -n "$N" --sweep guidance=0,1,2,3,5,7 --samplers ddpm --steps 50
  run ldm-steps eval "$LDM_RUN" -n "$N" --sweep steps=10,20,50,100 --samplers ddpm,ddim
fi
if want grid; then  # prediction target x schedule, on the fast latent MLP (unconditional)
  for pred in eps x0 v; do
    for sched in linear cosine; do
      r=$(run "grid-$pred-$sched" train ldm --vae "$VAE_RUN" --prediction "$pred" \
            --schedule "$sched" --epochs "${GRID_EPOCHS:-10}" --sample-every 0 \
            --name "grid-$pred-$sched")
      run "grid-$pred-$sched" eval "$r" -n "$N" --sampler ddpm --steps 50 >/dev/null
      run "grid-$pred-$sched" eval "$r" -n "$N" --sampler ddim --steps 50 >/dev/null
    done
  done
fi
if want transformer; then  # res-attn-res middle vs a DiT bottleneck, 1 epoch each
  for mid in resnet transformer; do
    r=$(run "mid-$mid" train ddpm --preset small --epochs 1 --mid-block "$mid" \
          --sample-every 0 --name "mid-$mid")
    run "mid-$mid" eval "$r" -n "$N" --sampler ddpm --steps 50 >/dev/null
  done
fi
