"""``diffkit export``'s library side: tiny runs built here (random weights, no training, no
data) are exported, loaded back with diffusers' ``DiffusionPipeline.from_pretrained`` and
sampled there; the images equal diffkit's own sampler's for the same noise to round-off."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from diffkit.config import DDPMRunConfig, resolve_run_config  # noqa: E402
from diffkit.config.model import VAEConfig  # noqa: E402
from diffkit.config.resolve import deep_merge, nest  # noqa: E402
from diffkit.config.run import PRESETS, FlowRunConfig  # noqa: E402
from diffkit.errors import CheckpointError, DependencyError  # noqa: E402
from diffkit.external.export import ExportError, export_run  # noqa: E402
from diffkit.external.export import bundle as bundle_module  # noqa: E402
from diffkit.external.export.bundle import (  # noqa: E402
    MODELING_FILE,
    PIPELINE_FILE,
    modeling_source,
)
from diffkit.methods.load import load_pipeline  # noqa: E402
from diffkit.methods.pipeline import SampleOptions  # noqa: E402
from diffkit.nn.build import build_model  # noqa: E402
from diffkit.runs.checkpoint import Checkpoint, load_checkpoint, save_checkpoint  # noqa: E402

T = 20  # DDPM timesteps: every ancestral step is cheap to compare
TINY = {"preset": "tiny", "model.patch_size": 4, "model.base_channels": 8,
        "model.norm_groups": 4, "model.head_channels": 8}  # fmt: skip
DDPM = TINY | {"diffusion.num_steps": T}
COND = DDPM | {"model.num_classes": 3, "diffusion.prediction": "v",
               "diffusion.schedule": "cosine"}  # fmt: skip
FLOW = TINY | {"model.num_classes": 3}
LDM = {"preset": "latent-flat", "method": "ldm", "model.dim": 4, "model.hidden": 16,
       "model.depth": 1, "model.emb_dim": 8, "diffusion.num_steps": T,
       "diffusion.prediction": "x0", "train.preview_steps": 10, "latent.source": "vae",
       "latent.sha256": "", "latent.shift": 0.1, "latent.scale": 2.0,
       "latent.vae.model.latent": "flat", "latent.vae.model.latent_dim": 4}  # fmt: skip


def perturbed(cfg, seed: int, scale: float = 0.1) -> dict[str, torch.Tensor]:
    """A network's state with noise on every parameter: the zero-initialised output layers
    of a fresh network would make every sample the same."""
    torch.manual_seed(seed)
    net = build_model(cfg)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn_like(p))
    return net.state_dict()


def make_run(folder: Path, cls: type, flags: dict) -> Path:
    """A run folder with config.json and checkpoints/last.safetensors (raw weights and a
    different EMA; a latent model's VAE inside)."""
    if flags["preset"].startswith("latent"):  # the VAE fixes the shape, not the dataset
        cfg = cls.model_validate(deep_merge(PRESETS[flags["preset"]], nest(flags)))
    else:
        cfg = resolve_run_config(cls, flags, environ={})
    tensors = {f"model.{k}": v for k, v in perturbed(cfg.model, 0).items()}
    tensors |= {f"ema.{k}": v for k, v in perturbed(cfg.model, 1).items()}
    if cfg.latent is not None:
        vae = perturbed(VAEConfig(**cfg.latent.vae.model.model_dump()), 2, scale=0.3)
        tensors |= {f"vae.{k}": v for k, v in vae.items()}
    config = cfg.model_dump(mode="json")
    save_checkpoint(folder / "checkpoints" / "last.safetensors", Checkpoint(config, tensors))
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "samples").mkdir()
    return folder


@pytest.fixture(autouse=True)
def _modules_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """diffusers copies trusted remote code into its modules cache: a temporary one here."""
    from diffusers.utils import dynamic_modules_utils

    monkeypatch.setattr(dynamic_modules_utils, "HF_MODULES_CACHE", str(tmp_path / "modules"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    for name, cls, flags in [
        ("ddpm", DDPMRunConfig, DDPM),
        ("cond", DDPMRunConfig, COND),
        ("flow", FlowRunConfig, FLOW),
        ("ldm", DDPMRunConfig, LDM),
    ]:
        make_run(root / name, cls, flags)  # fmt: skip
    return root


def load(folder: Path):
    pipe = diffusers.DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def theirs(pipe, steps: int, **kw) -> torch.Tensor:
    """diffusers' images (B, C, H, W) in [0, 1] from seed 0."""
    g = torch.Generator().manual_seed(0)
    return pipe(generator=g, num_inference_steps=steps, output_type="pt", **kw).images


def ours(run: Path, sampler: str, steps: int, n: int, **kw) -> torch.Tensor:
    """diffkit's images for the same noise: the generator's first draw, as diffusers makes
    it, then its per-step noise; mapped to [0, 1] as diffusers does."""
    pipe = load_pipeline(run)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(n, *pipe.model.sample_shape, generator=g)
    x, _ = pipe.generate(noise, sampler, steps, generator=g, **kw)
    images = pipe.model.codec.decode(x) if pipe.model.codec is not None else x
    return (images / 2 + 0.5).clamp(0, 1)


def check_schedule(scheduler, run: Path, name: str) -> None:
    """The scheduler names the run's schedule (no listed betas) and has its alpha-bars."""
    assert type(scheduler).__name__ == "DDPMScheduler" and scheduler.config.trained_betas is None
    assert scheduler.config.beta_schedule == name
    abar = load_pipeline(run).model.schedule.alphas_cumprod
    torch.testing.assert_close(scheduler.alphas_cumprod, abar.float(), atol=1e-6, rtol=1e-5)
    assert scheduler.config.timestep_spacing == "trailing" and scheduler.config.clip_sample


def test_unconditional_ddpm_matches_diffkit_in_diffusers_pipelines(runs: Path, tmp_path: Path):
    result = export_run(runs / "ddpm", tmp_path / "out")
    pipe = load(result.out)
    assert type(pipe).__name__ == "DiffkitPipeline" and result.weights == "ema"
    check_schedule(pipe.scheduler, runs / "ddpm", "linear")
    ref = ours(runs / "ddpm", "ddpm", T, 3)
    torch.testing.assert_close(theirs(pipe, T, batch_size=3), ref, atol=1e-5, rtol=0)
    own = diffusers.DDPMPipeline(unet=pipe.unet, scheduler=pipe.scheduler)  # diffusers' own
    own.set_progress_bar_config(disable=True)
    torch.testing.assert_close(theirs(own, T, batch_size=3), ref, atol=1e-5, rtol=0)
    # DDIM on diffkit's trailing grid, eps re-derived from the clipped x0 on both sides
    pipe.scheduler = diffusers.DDIMScheduler.from_config(pipe.scheduler.config)
    torch.testing.assert_close(theirs(pipe, 5, batch_size=3), ours(runs / "ddpm", "ddim", 5, 3),
                               atol=1e-5, rtol=0)  # fmt: skip


def test_class_conditional_v_prediction_with_guidance(runs: Path, tmp_path: Path):
    pipe = load(export_run(runs / "cond", tmp_path / "out").out)
    check_schedule(pipe.scheduler, runs / "cond", "squaredcos_cap_v2")
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    labels = torch.tensor([0, 2, 1])
    got = theirs(pipe, T, class_labels=labels, guidance_scale=2.0)
    want = ours(runs / "cond", "ddpm", T, 3, labels=labels, guidance=2.0)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert got.std() > 0.05  # not a blank image
    pipe.scheduler = diffusers.DDIMScheduler.from_config(pipe.scheduler.config)
    got = theirs(pipe, 4, class_labels=labels, guidance_scale=0.0, eta=0.5)
    want = ours(runs / "cond", "ddim", 4, 3, labels=labels, guidance=0.0,
                opts=SampleOptions(eta=0.5))  # fmt: skip
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_rectified_flow_on_diffusers_flow_matching_scheduler(runs: Path, tmp_path: Path):
    pipe = load(export_run(runs / "flow", tmp_path / "out").out)
    assert type(pipe.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"
    labels = torch.tensor([1, 0])
    got = theirs(pipe, 4, class_labels=labels, guidance_scale=1.5)
    want = ours(runs / "flow", "euler", 4, 2, labels=labels, guidance=1.5)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_latent_ddpm_decodes_through_the_exported_vae(runs: Path, tmp_path: Path):
    pipe = load(export_run(runs / "ldm", tmp_path / "out").out)
    assert type(pipe.vae).__name__ == "DiffkitVAE" and pipe.vae.config.scaling_factor == 2.0
    got = theirs(pipe, T, batch_size=3)
    assert got.shape == (3, 1, 28, 28)
    torch.testing.assert_close(got, ours(runs / "ldm", "ddpm", T, 3), atol=1e-5, rtol=0)


def test_ema_by_default_and_raw_weights_with_no_ema(runs: Path, tmp_path: Path):
    from safetensors.torch import load_file

    ckpt = load_checkpoint(runs / "ddpm" / "checkpoints" / "last.safetensors")
    for use_ema, section in ((True, "ema"), (False, "model")):
        out = export_run(runs / "ddpm", tmp_path / section, use_ema=use_ema).out
        weights = load_file(out / "unet" / "diffusion_pytorch_model.safetensors")
        assert weights.keys() == {f"net.{k}" for k in ckpt.section(section)}
        assert all(torch.equal(weights[f"net.{k}"], v) for k, v in ckpt.section(section).items())
        config = json.loads((out / "unet" / "config.json").read_text())
        assert config["diffkit"]["weights"] == section and config["network"]["kind"] == "unet"


def test_the_exported_code_needs_no_diffkit(runs: Path, tmp_path: Path):
    out = export_run(runs / "ldm", tmp_path / "out").out
    for path in (out / PIPELINE_FILE, out / "unet" / MODELING_FILE, out / "vae" / MODELING_FILE):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [
                    a.name for a in node.names]  # fmt: skip
                assert not any(n.split(".")[0] == "diffkit" for n in names), ast.unparse(node)


def test_a_bundled_import_must_be_defined_before_it(monkeypatch: pytest.MonkeyPatch):
    order = tuple(reversed(bundle_module.NETWORK_MODULES))  # modeling first: its imports fail
    monkeypatch.setattr(bundle_module, "NETWORK_MODULES", order)
    with pytest.raises(ValueError, match="is not bundled before it"):
        modeling_source("test")


def test_model_card_reports_config_metrics_and_the_newest_preview(runs: Path, tmp_path: Path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs / "cond", run)
    records = [{"step": 5, "epoch": 1, "loss": 0.5},
               {"event": "eval", "step": 10, "epoch": 1, "fid": 41.5, "kid": 0.02},
               {"event": "eval", "step": 20, "epoch": 2, "fid": 37.25, "kid": 0.01},
               {"event": "eval", "step": 30, "epoch": 3, "fid": 39.0, "kid": 0.03}]  # fmt: skip
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run / "summary.json").write_text(json.dumps({"steps": 30, "epochs": 3, "last_loss": 0.25}))
    for epoch in (2, 10):
        (run / "samples" / f"epoch-{epoch:04d}.png").write_bytes(f"png {epoch}".encode())
    result = export_run(run, tmp_path / "out")
    assert result.grid == str(run / "samples" / "epoch-0010.png")  # by number, not by name
    assert (result.out / "samples.png").read_bytes() == b"png 10"
    card = (result.out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: diffusers\n")
    latest = next(line for line in card.splitlines() if line.startswith("| latest"))
    best = next(line for line in card.splitlines() if line.startswith("| best FID"))
    assert "fid 39" in latest and "| 3 | 30 |" in latest and "fid 37.25" in best
    assert "| last loss | 0.25 |" in card and '"num_classes": 3' in card
    assert "class_labels=list(range(3))" in card and "![samples](samples.png)" in card


def test_without_a_preview_a_small_grid_is_sampled(runs: Path, tmp_path: Path):
    result = export_run(runs / "ddpm", tmp_path / "out")
    assert result.grid == "generated"
    assert (result.out / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "No evaluation was recorded" in (result.out / "README.md").read_text()


def test_outputs_are_refused_replaced_or_left_untouched(runs: Path, tmp_path: Path, monkeypatch):
    out = tmp_path / "out"
    export_run(runs / "ddpm", out)
    with pytest.raises(ExportError, match="already exists"):
        export_run(runs / "ddpm", out)
    export_run(runs / "cond", out, overwrite=True)  # an earlier export is replaced
    assert json.loads((out / "unet" / "config.json").read_text())["num_classes"] == 3
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not a diffusers folder"):
        export_run(runs / "ddpm", other, overwrite=True)

    def crash(*args, **kwargs):
        raise RuntimeError("disk on fire")

    from diffkit.external.export import card

    monkeypatch.setattr(card, "write_card", crash)  # after every other file is written
    with pytest.raises(RuntimeError, match="disk on fire"):
        export_run(runs / "ddpm", out, overwrite=True)
    assert json.loads((out / "unet" / "config.json").read_text())["num_classes"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "out"]  # no temporaries


def test_unsupported_sources_and_a_missing_extra_are_named(runs: Path, tmp_path: Path,
                                                           monkeypatch):  # fmt: skip
    vae_run = tmp_path / "vae"
    save_checkpoint(vae_run / "checkpoints" / "last.safetensors",
                    Checkpoint({"method": "vae"}, {"model.w": torch.zeros(1)}))  # fmt: skip
    with pytest.raises(ExportError, match="exporting vae runs is not supported"):
        export_run(vae_run, tmp_path / "a")
    exported = export_run(runs / "ddpm", tmp_path / "b").out
    with pytest.raises(ExportError, match="is a diffusers folder already"):
        export_run(exported, tmp_path / "c")
    with pytest.raises(CheckpointError, match="is a diffkit export; sample the run it came"):
        load_pipeline(exported)  # `diffkit sample OUT` points back at the run
    with pytest.raises(ExportError, match="format 'onnx' is not supported"):
        export_run(runs / "ddpm", tmp_path / "d", fmt="onnx")
    monkeypatch.setitem(sys.modules, "diffusers", None)  # as if the extra were missing
    with pytest.raises(DependencyError, match=r"pip install 'diffkit\[diffusers\]'"):
        export_run(runs / "ddpm", tmp_path / "e")
    assert not (tmp_path / "e").exists()
