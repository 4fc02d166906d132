#!/usr/bin/env bash
# DeepCache on MNIST (docs/benchmarks.md, section 8): speedup, MAC ratio, MSE to the uncached
# samples and FID per cache interval, against the sampler with as many steps as DeepCache
# makes full evaluations. On a 2-core CPU: ~55 minutes with the models below already trained.
#
#   DIFFKIT_DATA_DIR=../shared/data DIFFKIT_RUNS_DIR=runs bash benchmarks/deepcache.sh [OUT]
#
# CFG_RUN: the class-conditional small pixel DDPM of section 6.1 (trained here if unset);
# LDM_RUN: the spatial latent DDPM of section 6.4 (the `latent` step is skipped if unset);
# RF_RUN: the logit-normal 1-RF of section 7.5 (the `flow` step is skipped if unset).
# STEPS picks what runs (default: all): ddim ddpm quadratic linear linear-b1 latent flow
# drift. Results (JSON, plot, a grid per configuration) go to OUT/<step>/ (default
# benchmarks/results/raw/deepcache, not kept in git), logs beside them. The tables' numbers
# are kept in benchmarks/results/08.*.json.
set -euo pipefail
OUT=$(realpath -m "${1:-$(dirname "$0")/results/raw/deepcache}")
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
STEPS=${STEPS:-"ddim ddpm quadratic linear linear-b1 latent flow drift"}
N=${N:-1000}
source benchmarks/lib.sh

ensure_classifier
CFG_RUN=${CFG_RUN:-$(run cfg-train train ddpm --preset small --cond class --name small-cfg)}
bench() {  # bench NAME RUN ARGS...: one cache-bench into $OUT/NAME
  local name=$1 model=$2; shift 2
  rm -rf "${OUT:?}/$name"
  run "$name" cache-bench "$model" -n "$N" --out "$OUT/$name" "$@" >/dev/null
}

if want ddim; then  # the paper's setting: 100 DDIM steps, N = 1..10, two branch depths
  bench ddim-b1 "$CFG_RUN" --sampler ddim --steps 100 --intervals 1,2,3,5,10 --cache-branch 1 \
    --cache-mode reuse
  bench ddim-b2 "$CFG_RUN" --sampler ddim --steps 100 --intervals 1,2,3,5,10 --cache-branch 2 \
    --cache-mode reuse
fi
if want ddpm; then  # ancestral sampling, which needs many steps
  bench ddpm-b2 "$CFG_RUN" --sampler ddpm --steps 100 --intervals 1,2,5,10 --cache-branch 2 \
    --cache-mode reuse
fi
if want quadratic; then  # the non-uniform schedule, at the cost of uniform N
  bench quadratic "$CFG_RUN" --steps 100 --intervals 1,5,10 --cache-branch 2 --no-baseline \
    --cache-schedule quadratic --cache-center 0.5 --cache-mode reuse
fi
if want linear; then  # extrapolated instead of reused features, same cost
  bench linear "$CFG_RUN" --steps 100 --intervals 1,2,5,10 --cache-branch 2 --no-baseline \
    --cache-mode linear
fi
if want linear-b1; then
  bench linear-b1 "$CFG_RUN" --steps 100 --intervals 1,3,5,10 --cache-branch 1 --no-baseline \
    --cache-mode linear
fi
if want latent && [[ -n "${LDM_RUN:-}" ]]; then  # a latent UNet, decoded by its VAE
  bench latent "$LDM_RUN" --sampler ddim --steps 100 --intervals 1,2,5,10 --cache-branch 1 \
    --cache-mode reuse
fi
if want flow && [[ -n "${RF_RUN:-}" ]]; then  # a rectified flow, Euler steps
  bench flow "$RF_RUN" --sampler euler --steps 100 --intervals 1,2,3,5,10 --cache-branch 1 \
    --cache-mode linear
fi
if want drift; then  # how fast the cached feature changes along DDIM-100 (section 8.3)
  python benchmarks/deepcache_drift.py "$CFG_RUN" > "$OUT/drift.txt"
fi
