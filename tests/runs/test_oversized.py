"""A model too large for memory, asked for by a config or claimed by a checkpoint, is refused
with its size before a byte of it is allocated."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest
import torch

import diffkit.resources
from diffkit.config import DDPMRunConfig
from diffkit.config.resolve import resolve_run_config
from diffkit.config.run import ClassifierRunConfig, VAERunConfig
from diffkit.methods.classifier import train_classifier
from diffkit.methods.generative import train_generative
from diffkit.methods.load import load_pipeline
from diffkit.methods.vae import VAE_FILE, load_codec, train_vae
from diffkit.nn.build import build_model, count_parameters, estimate_parameters, meta_model
from diffkit.resources import ResourceError
from diffkit.runs import Checkpoint, CheckpointError, save_checkpoint
from diffkit.runs.checkpoint import read_header
from tests.runs.util import TINY, settings

HUGE_UNET = {"model.base_channels": 8192}  # ~46e9 parameters: ~900 GB to train


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def test_estimate_counts_without_allocating():
    cfg = resolve_run_config(DDPMRunConfig, TINY, environ={})
    assert estimate_parameters(cfg.model) == count_parameters(build_model(cfg.model))
    huge = resolve_run_config(DDPMRunConfig, TINY | HUGE_UNET, environ={})
    before = peak_rss_mb()
    assert estimate_parameters(huge.model) > 10**10
    assert peak_rss_mb() - before < 200


@pytest.mark.parametrize(
    ("kind", "flags"),
    [
        (DDPMRunConfig, TINY | HUGE_UNET),
        (VAERunConfig, {"model.latent": "spatial", "model.base_channels": 32768}),
        (ClassifierRunConfig, {"model.widths": (65536, 65536)}),
    ],
)
def test_training_a_huge_model_is_refused_before_any_file(kind, flags, tmp_path: Path):
    cfg = resolve_run_config(kind, flags, environ={})
    train = {DDPMRunConfig: train_generative, VAERunConfig: train_vae,
             ClassifierRunConfig: train_classifier}[kind]  # fmt: skip
    start = time.perf_counter()
    with pytest.raises(ResourceError, match=r"parameters needs about .+B of memory"):
        train(cfg, settings(tmp_path / "runs"))  # no data needed: refused before loading it
    assert time.perf_counter() - start < 5
    assert not (tmp_path / "runs").exists()


def crafted_checkpoint(path: Path, *, shaped_names: bool) -> Path:
    """A small file whose config claims a huge UNet: its tensors are 1-element stand-ins,
    under the real names (``shaped_names``) or under a single made-up one."""
    cfg = resolve_run_config(DDPMRunConfig, TINY | HUGE_UNET, environ={})
    names = list(meta_model(cfg.model).state_dict()) if shaped_names else ["x"]
    tensors = {f"{p}.{k}": torch.zeros(1) for k in names for p in ("model", "ema")}
    save_checkpoint(path, Checkpoint(cfg.model_dump(mode="json"), tensors))
    return path


@pytest.mark.parametrize("shaped_names", [True, False])
def test_checkpoint_claiming_a_huge_model_is_refused_unbuilt(shaped_names: bool, tmp_path: Path):
    path = crafted_checkpoint(tmp_path / "c.safetensors", shaped_names=shaped_names)
    before, start = peak_rss_mb(), time.perf_counter()
    with pytest.raises(CheckpointError, match="weights do not match") as info:
        load_pipeline(path)
    assert ("is F32 [1]" if shaped_names else "is missing") in str(info.value)
    assert time.perf_counter() - start < 2 and peak_rss_mb() - before < 200


def test_a_real_checkpoint_too_big_for_memory_is_refused(tmp_path, monkeypatch):
    """Names and shapes fit, but the machine does not: ResourceError before building."""
    cfg = resolve_run_config(DDPMRunConfig, TINY, environ={})
    net = build_model(cfg.model)
    tensors = {f"{p}.{k}": v.clone() for k, v in net.state_dict().items() for p in ("model", "ema")}
    path = tmp_path / "ok.safetensors"
    save_checkpoint(path, Checkpoint(cfg.model_dump(mode="json"), tensors))
    assert load_pipeline(path).net is not None
    monkeypatch.setattr(diffkit.resources, "available_memory", lambda: 1000)
    with pytest.raises(ResourceError, match=r"loading .*UNet, [\d,]+ parameters"):
        load_pipeline(path)


def test_vae_file_claiming_a_huge_vae_is_refused(tmp_path: Path):
    cfg = resolve_run_config(VAERunConfig, {"model.latent": "spatial",
                                            "model.base_channels": 32768}, environ={})  # fmt: skip
    path = tmp_path / VAE_FILE
    state = {"latent": {"shift": 0.0, "scale": 1.0, "sha256": ""}}
    save_checkpoint(path, Checkpoint(cfg.model_dump(mode="json"), {"model.x": torch.zeros(1)},
                                     state))  # fmt: skip
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match="weights do not match the VAE config"):
        load_codec(tmp_path)
    assert time.perf_counter() - start < 2


def test_read_header_reads_no_tensor(tmp_path: Path):
    path = tmp_path / "h.safetensors"
    tensors = {
        "model.w": torch.zeros(3, 2, dtype=torch.bfloat16),
        "optim.0.step": torch.tensor(4.0),
    }
    save_checkpoint(path, Checkpoint({"method": "x"}, tensors))
    meta, specs = read_header(path)
    assert meta["diffkit.config"] == '{"method": "x"}'
    assert specs == {"model.w": ("BF16", (3, 2)), "optim.0.step": ("F32", ())}
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_header(tmp_path / "junk.safetensors")


def test_training_on_a_gpu_counts_its_free_memory(monkeypatch):
    """The training state lives on the GPU: its free memory decides (only the weights are
    built in host memory first)."""
    from diffkit.nn.build import check_trainable

    cfg = resolve_run_config(DDPMRunConfig, TINY, environ={})
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (10**12, 10**12))
    assert check_trainable(cfg.model, torch.device("cuda", 0)) > 0
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (1000, 10**12))
    with pytest.raises(ResourceError, match="on cuda:0 needs about"):
        check_trainable(cfg.model, torch.device("cuda", 0))


def test_loading_on_cuda_without_one_is_one_hardware_error(tmp_path):
    import pytest
    import torch

    from diffkit.errors import HardwareError
    from diffkit.methods.load import load_pipeline

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(HardwareError, match="no CUDA GPU"):
        load_pipeline(tmp_path / "missing", "cuda")
