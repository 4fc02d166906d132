"""VAERunConfig: the new fields' defaults keep old configs valid, and a VAE whose
downsampling does not divide the 28 px default resolves for the data it is for."""

from __future__ import annotations

import pytest

from diffkit.config.resolve import ConfigError, resolve_run_config, validate
from diffkit.config.run import VAERunConfig


def test_an_8x_vae_resolves_for_32_px_data():
    flags = {"data.dataset": "cifar10", "model.latent": "spatial",
             "model.channel_mults": (1, 2, 4), "model.latent_channels": 3}  # fmt: skip
    cfg = resolve_run_config(VAERunConfig, flags, environ={})
    assert (cfg.model.in_channels, cfg.model.image_size) == (3, 32)
    assert cfg.model.downsampling == 8 and cfg.model.latent_shape == (3, 4, 4)
    with pytest.raises(ConfigError, match="divisible by 8"):  # MNIST's 28 px: refused
        resolve_run_config(VAERunConfig, {**flags, "data.dataset": "mnist"}, environ={})


def test_an_old_run_config_validates_without_lpips():
    old = VAERunConfig().model_dump(mode="json")
    for key in ("lpips_weight", "lpips_net"):
        del old[key]
    for key in ("patch_size", "channel_mults", "num_res_blocks"):
        del old["model"][key]
    cfg = validate(VAERunConfig, old)
    assert cfg == VAERunConfig() and cfg.lpips_weight == 0


def test_a_negative_lpips_weight_is_refused():
    with pytest.raises(ConfigError, match="lpips_weight"):
        resolve_run_config(VAERunConfig, {"lpips_weight": -1.0}, environ={})
