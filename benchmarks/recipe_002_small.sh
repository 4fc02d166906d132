#!/usr/bin/env bash
# The seeds' 002 recipe scaled down to a 2-core CPU: a labelled RGB folder (4 shape classes,
# 32 px, generated), prepared once; a KL autoencoder of the 002 shape (mult 1-2-4, 2 blocks,
# z 3) at a quarter of its width; a class-conditional latent DDPM with a transformer
# bottleneck and CFG. Same commands as examples/imagenet100-*.toml, smaller numbers.
#
#   bash benchmarks/recipe_002_small.sh OUT
set -euo pipefail
out=${1:?usage: recipe_002_small.sh OUT}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
export DIFFKIT_RUNS_DIR="$out/runs"

python "$here/make_shapes.py" "$out/shapes" --per-class 300 --size 32
diffkit data prepare "folder:$out/shapes" --size 32 --out "$out/prepared"

cat > "$out/vae.toml" <<'TOML'
kl_weight = 0.008
recon_loss = "mse"
[model]
latent = "spatial"
patch_size = 1
base_channels = 32           # 128 in the recipe
channel_mults = [1, 2, 4]
num_res_blocks = 2
latent_channels = 3
norm_groups = 8
[train]
epochs = 4
batch_size = 32
TOML
vae=$(diffkit train vae --config "$out/vae.toml" --dataset "prepared:$out/prepared" | tail -1)

cat > "$out/ldm.toml" <<'TOML'
[model]
base_channels = 32           # 192 in the recipe
channel_mults = [1, 2, 2]    # [1, 2, 2, 4] at 32x32 latents; three levels at 8x8
num_res_blocks = 1           # 3
attention_levels = [1, 2]
dropout = 0.1
mid_block = "transformer"
transformer_depth = 2        # 4
transformer_heads = 4        # 8
[diffusion]
schedule = "cosine"
prediction = "eps"
[train]
epochs = 100
batch_size = 64
lr = 1e-3                    # 5e-5 at batch 64 for 300 epochs; far fewer steps here
warmup_steps = 50
weight_decay = 1e-4
cond_drop = 0.1
sample_every = 25
TOML
ldm=$(diffkit train ldm --vae "$vae" --cond class --config "$out/ldm.toml" | tail -1)
diffkit sample "$ldm" --grid-per-class -n 8 --guidance 3 --sampler ddpm --steps 100 \
    --out "$out/samples"
echo "vae: $vae"
echo "ldm: $ldm"
