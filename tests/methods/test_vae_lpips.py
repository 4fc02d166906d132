"""The VAE's LPIPS loss term with the real LPIPS network (a random AlexNet backbone saved
as torchvision saves its ImageNet file): its value by hand, where its gradient goes, and
that without it the lpips package is never imported."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from diffkit.config.model import VAEConfig
from diffkit.config.resolve import resolve_run_config
from diffkit.config.run import VAERunConfig
from diffkit.config.settings import Settings
from diffkit.errors import DependencyError
from diffkit.methods.vae import load_perceptual, lpips_loss, vae_objective
from diffkit.nn import build_model
from diffkit.objectives.vae import perceptual_term, vae_terms
from tests.eval.util import alex_backbone

pytest.importorskip("lpips")


@pytest.fixture(scope="module")
def alex_file(tmp_path_factory) -> Path:
    return alex_backbone(tmp_path_factory.mktemp("hub") / "alexnet-owt-7be5be79.pth")


def run_config(weight: float) -> VAERunConfig:
    flags = {"lpips_weight": weight, "kl_weight": 0.25, "recon_loss": "mse",
             "model.latent": "spatial", "model.base_channels": 8}  # fmt: skip
    return resolve_run_config(VAERunConfig, flags, environ={})


def machine(alex_file: Path | None) -> Settings:
    return Settings(lpips_weights=alex_file, device="cpu", download=False)


def test_the_loss_is_recon_plus_beta_kl_plus_w_pixels_lpips(alex_file: Path):
    cfg = run_config(2.0)
    metric = load_perceptual(cfg, machine(alex_file), torch.device("cpu"))
    assert metric is not None and metric.path == alex_file
    torch.manual_seed(0)
    net = build_model(VAEConfig(latent="spatial", base_channels=8)).eval()
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    loss = vae_objective(cfg, metric)(net, x, None, torch.Generator().manual_seed(1))

    logits, mu, logvar = net(x, torch.Generator().manual_seed(1))
    recon, kl = vae_terms(logits, x, mu, logvar, "mse")
    decoded = torch.sigmoid(logits) * 2 - 1
    # the metric's preprocessing by hand: gray to RGB, bilinear up to 64 px
    a, b = (F.interpolate(t.expand(-1, 3, -1, -1), size=(64, 64), mode="bilinear",
                          align_corners=False) for t in (x, decoded))  # fmt: skip
    d = metric.module(a, b).flatten()  # (3,)
    assert d.shape == (3,) and bool((d > 0).all())
    torch.testing.assert_close(d.detach(), metric.distance(x, decoded.detach()))
    want = recon + 0.25 * kl + 2.0 * 784 * d.mean()
    torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-4)


def test_its_gradient_reaches_the_decoder_not_lpips(alex_file: Path):
    metric = load_perceptual(run_config(1.0), machine(alex_file), torch.device("cpu"))
    assert metric is not None
    torch.manual_seed(0)
    net = build_model(VAEConfig(latent="spatial", base_channels=8))
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    logits, _, _ = net(x, torch.Generator().manual_seed(0))
    perceptual_term(lpips_loss(metric), logits, x).backward()
    out_conv = net.dec_out[2].weight.grad
    assert out_conv is not None and out_conv.abs().sum() > 0  # the decoder's last conv
    assert net.encoder[1].weight.grad.abs().sum() > 0  # and on through the sample z
    assert all(p.grad is None and not p.requires_grad for p in metric.module.parameters())


def test_no_lpips_weight_never_imports_lpips(alex_file: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "lpips", None)  # any import of it now fails
    assert load_perceptual(run_config(0.0), machine(alex_file), torch.device("cpu")) is None
    with pytest.raises(DependencyError, match="lpips package"):
        load_perceptual(run_config(1.0), machine(alex_file), torch.device("cpu"))
