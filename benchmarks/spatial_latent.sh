#!/usr/bin/env bash
# The spatial VAE (4 x 7 x 7 latent) and a latent UNet on it, plus the reconstruction
# ceilings of both VAEs (docs/benchmarks.md, section 6.2). On a 2-core CPU: ~25 minutes.
#
#   DIFFKIT_DATA_DIR=../shared/data DIFFKIT_RUNS_DIR=runs FLAT_VAE=runs/vae/<flat64> \
#     bash benchmarks/spatial_latent.sh [OUT]
#
# SPATIAL_VAE=... / SPATIAL_LDM=... reuse finished runs. Logs: OUT (default
# benchmarks/results/raw/cfg_latent, not kept in git).
set -euo pipefail
OUT=$(realpath -m "${1:-$(dirname "$0")/results/raw/cfg_latent}")
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
N=${N:-1000}
source benchmarks/lib.sh
SPATIAL_VAE=${SPATIAL_VAE:-$(run spatial-vae train vae --latent spatial --epochs 2 --name spatial)}
SPATIAL_LDM=${SPATIAL_LDM:-$(run spatial-ldm train ldm --vae "$SPATIAL_VAE" --cond class \
  --epochs "${SPATIAL_EPOCHS:-4}" --name spatial-cfg)}
run spatial-ldm eval "$SPATIAL_LDM" -n "$N" --sweep guidance=1,2,3 --samplers ddpm --steps 50
for vae in ${FLAT_VAE:-} "$SPATIAL_VAE"; do
  python benchmarks/vae_ceiling.py "$vae" -n "$N" | tee -a "$OUT/ceiling.log"
done
