"""diffusers pipelines sampled by diffkit: tiny randomly initialised models built here
(no downloads), checked against diffusers' own pipelines for the same noise under matched
conventions (leading spacing, clipped eps re-derived from the clipped x0)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from diffkit.external.diffusers import (  # noqa: E402
    DiffusersUNet,
    ForeignModelError,
    diffusers_betas,
    load_diffusers,
    resolve,
    scheduler_conventions,
)
from diffkit.methods.load import load_pipeline  # noqa: E402
from diffkit.methods.pipeline import SampleOptions  # noqa: E402

CPU = torch.device("cpu")


def tiny_unet(channels: int = 1, size: int = 16, out: int | None = None):
    torch.manual_seed(0)
    return diffusers.UNet2DModel(
        sample_size=size, in_channels=channels, out_channels=out or channels,
        block_out_channels=(8, 16), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"), layers_per_block=1, norm_num_groups=4,
        attention_head_dim=8,
    ).eval()  # fmt: skip


def save(folder: Path, unet=None, **scheduler) -> Path:
    sched = diffusers.DDPMScheduler(num_train_timesteps=50, timestep_spacing="leading",
                                    **scheduler)  # fmt: skip
    diffusers.DDPMPipeline(unet=unet or tiny_unet(), scheduler=sched).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return save(tmp_path_factory.mktemp("diffusers") / "ddpm", clip_sample=True)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """diffusers' output convention: [-1, 1] -> [0, 1], clamped."""
    return (x / 2 + 0.5).clamp(0, 1)


def noise_and_generator(shape) -> tuple[torch.Tensor, torch.Generator]:
    """The first draw of a seeded generator, as diffusers' pipelines make it, and the
    generator after it (their per-step noise comes next)."""
    g = torch.Generator().manual_seed(0)
    return torch.randn(shape, generator=g), g


def scheduler_reference(folder: Path, scheduler: type, steps: int, **config):
    """(noise, diffusers' sample): the multistep ``scheduler`` class, configured from the tiny
    DDPM's own scheduler with ``config``, stepped over ``steps`` from the first seeded draw
    (3 images)."""
    ddpm = diffusers.DDPMPipeline.from_pretrained(folder)
    sched = scheduler.from_config(ddpm.scheduler.config, **config)
    sched.set_timesteps(steps)
    noise, _ = noise_and_generator((3, 1, 16, 16))
    ref = noise.clone()
    with torch.no_grad():
        for t in sched.timesteps:
            ref = sched.step(ddpm.unet(ref, t).sample, t, ref).prev_sample
    return noise, ref


@pytest.mark.parametrize("steps", [50, 10])
def test_ddpm_matches_diffusers_ddpm_pipeline(folder: Path, steps: int):
    theirs = diffusers.DDPMPipeline.from_pretrained(folder)
    theirs.set_progress_bar_config(disable=True)
    ref = theirs(batch_size=3, generator=torch.Generator().manual_seed(0),
                 num_inference_steps=steps, output_type="pt").images  # fmt: skip
    pipe = load_pipeline(folder)
    noise, g = noise_and_generator((3, 1, 16, 16))
    x, nfe = pipe.generate(noise, "ddpm", steps, generator=g)
    assert nfe == steps
    torch.testing.assert_close(to_unit(x), ref, atol=5e-5, rtol=0)


@pytest.mark.parametrize(("steps", "eta"), [(10, 0.0), (10, 0.5), (50, 0.0)])
def test_ddim_matches_diffusers_ddim_pipeline(folder: Path, steps: int, eta: float):
    ddpm = diffusers.DDPMPipeline.from_pretrained(folder)
    sched = diffusers.DDIMScheduler.from_config(ddpm.scheduler.config)
    theirs = diffusers.DDIMPipeline(unet=ddpm.unet, scheduler=sched)
    theirs.set_progress_bar_config(disable=True)
    ref = theirs(batch_size=3, generator=torch.Generator().manual_seed(0),
                 num_inference_steps=steps, eta=eta, use_clipped_model_output=True,
                 output_type="np").images  # fmt: skip
    pipe = load_pipeline(folder)
    noise, g = noise_and_generator((3, 1, 16, 16))
    x, _ = pipe.generate(noise, "ddim", steps, generator=g, opts=SampleOptions(eta=eta))
    torch.testing.assert_close(to_unit(x), torch.from_numpy(ref).permute(0, 3, 1, 2),
                               atol=5e-6, rtol=0)  # fmt: skip


@pytest.mark.parametrize("steps", [5, 10])
def test_dpm_solver_matches_diffusers_on_a_trailing_grid(folder: Path, steps: int):
    """diffusers' DPM-Solver++ spaces "leading" grids its own way (no t = 0), so the grids
    are matched on trailing spacing, which both define alike."""
    noise, ref = scheduler_reference(
        folder, diffusers.DPMSolverMultistepScheduler, steps, algorithm_type="dpmsolver++",
        solver_order=2, final_sigmas_type="zero", timestep_spacing="trailing",
        lower_order_final=True,
    )  # fmt: skip
    pipe = load_pipeline(folder)
    x, _ = pipe.generate(noise, "dpm++2m", steps, opts=SampleOptions(spacing="trailing",
                                                                      clip=False))  # fmt: skip
    torch.testing.assert_close(x, ref, atol=1e-5, rtol=0)


def test_every_ddpm_family_sampler_runs_and_ode_euler_is_ddim(folder: Path):
    pipe = load_pipeline(folder)
    assert pipe.SAMPLERS == ("ddpm", "ddim", "dpm++2m", "dpm++3m", "unipc", "euler", "midpoint",
                             "heun", "rk4", "dopri5", "consistency")  # fmt: skip
    for sampler in pipe.SAMPLERS:
        adaptive = {"rtol": 1e-2, "atol": 1e-2} if sampler == "dopri5" else {"steps": 4}
        result = pipe.sample(2, sampler=sampler, seed=1, **adaptive)
        assert result.images.shape == (2, 1, 16, 16) and torch.isfinite(result.images).all()
    # Euler on the probability-flow ODE is DDIM on the same grid (clip off: exact identity)
    ddim = pipe.sample(2, sampler="ddim", steps=6, seed=1, clip=False).images
    euler = pipe.sample(2, sampler="euler", steps=6, seed=1, clip=False).images
    torch.testing.assert_close(euler, ddim, atol=1e-4, rtol=0)


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid"])
def test_betas_are_the_schedulers(schedule: str):
    sched = diffusers.DDPMScheduler(num_train_timesteps=200, beta_schedule=schedule)
    ours = diffusers_betas(dict(sched.config))
    torch.testing.assert_close(ours.float(), sched.betas, atol=1e-7, rtol=1e-6)
    abar = torch.cumprod(1 - ours, 0)  # diffkit's float64 product of the same betas
    torch.testing.assert_close(abar.float(), sched.alphas_cumprod, atol=1e-6, rtol=1e-5)


def test_conventions_come_from_the_scheduler():
    sched = diffusers.DDIMScheduler(prediction_type="v_prediction", clip_sample=False,
                                    timestep_spacing="leading", steps_offset=1)  # fmt: skip
    cfg = dict(sched.config)
    conv = scheduler_conventions(cfg)
    assert (conv["prediction"], conv["clip"], conv["spacing"], conv["steps_offset"]) == (
        "v", False, "leading", 1)  # fmt: skip
    large = scheduler_conventions(dict(diffusers.DDPMScheduler(variance_type="fixed_large").config))
    assert large["variance"] == "fixed_large"


def test_steps_offset_shifts_a_leading_grid(tmp_path: Path):
    path = save(tmp_path / "offset", steps_offset=1)
    pipe = load_pipeline(path)
    sched = diffusers.DDIMScheduler.from_pretrained(path / "scheduler")
    sched.set_timesteps(10)
    assert pipe.timesteps(10, None).tolist() == sched.timesteps.tolist()


@pytest.mark.parametrize(
    ("field", "value"),
    [("clip_sample_range", 2.0), ("rescale_betas_zero_snr", True),
     ("prediction_type", "flow"), ("variance_type", "nonsense"), ("timestep_spacing", "odd"),
     ("beta_schedule", "exotic"), ("set_alpha_to_one", False)],
)  # fmt: skip
def test_a_config_diffkit_cannot_honour_names_its_field(field: str, value):
    cfg = dict(diffusers.DDPMScheduler(clip_sample=True).config) | {field: value}
    with pytest.raises(ForeignModelError, match=f"scheduler {field}="):
        scheduler_conventions(cfg)


def test_learned_range_variance_and_thresholding_match_diffusers(tmp_path: Path):
    """The network's variance interpolation drives diffkit's ancestral steps, and dynamic
    thresholding replaces the clamp, as in diffusers' DDPM step."""
    unet = tiny_unet(out=2)
    path = save(
        tmp_path / "learned",
        unet=unet,
        variance_type="learned_range",
        thresholding=True,
        dynamic_thresholding_ratio=0.9,
        sample_max_value=1.2,
    )
    theirs = diffusers.DDPMPipeline.from_pretrained(path)
    theirs.set_progress_bar_config(disable=True)
    ref = theirs(batch_size=2, generator=torch.Generator().manual_seed(0),
                 num_inference_steps=10, output_type="pt").images  # fmt: skip
    pipe = load_pipeline(path)
    assert pipe.model.variance == "learned_range" and pipe.model.threshold is not None
    noise, g = noise_and_generator((2, 1, 16, 16))
    x, _ = pipe.generate(noise, "ddpm", 10, generator=g)
    torch.testing.assert_close(to_unit(x), ref, atol=5e-5, rtol=0)
    fixed, _ = pipe.generate(noise, "ddpm", 10, generator=noise_and_generator((1,))[1],
                             opts=SampleOptions(variance="fixed_small"))  # fmt: skip
    assert not torch.allclose(fixed, x)  # the learned variance is not the fixed one
    assert pipe.sample(1, sampler="ddim", steps=3).images.shape == (1, 1, 16, 16)


def test_a_learned_log_variance_is_split_off_and_ddpm_asks_for_a_fixed_one(tmp_path: Path):
    unet = tiny_unet(out=2)
    path = save(tmp_path / "learned", unet=unet, variance_type="learned")
    pipe = load_pipeline(path)
    assert isinstance(pipe.model, DiffusersUNet) and pipe.model.learned_variance
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([10, 40])
    with torch.no_grad():
        torch.testing.assert_close(pipe.model.raw(x, t), unet(x, t).sample[:, :1])
    with pytest.raises(ValueError, match="learned its reverse variance"):
        pipe.sample(1, sampler="ddpm", steps=3)
    assert pipe.sample(1, sampler="ddpm", steps=3, variance="fixed_small").images.shape[0] == 1


def test_unsupported_unets_and_broken_folders_are_refused(tmp_path: Path, folder: Path):
    cond = save(tmp_path / "cond", unet=diffusers.UNet2DModel(
        sample_size=16, in_channels=1, out_channels=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D",) * 2,
        layers_per_block=1, norm_num_groups=4, num_class_embeds=10))  # fmt: skip
    with pytest.raises(ForeignModelError, match="num_class_embeds"):
        load_diffusers(cond, CPU)
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / "scheduler" / "scheduler_config.json").unlink()
    with pytest.raises(ForeignModelError, match=r"scheduler_config\.json is missing"):
        load_diffusers(broken, CPU)
    index = json.loads((folder / "model_index.json").read_text())
    index["unet"] = ["diffusers", "UNet2DConditionModel"]
    (broken / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ForeignModelError, match="UNet2DConditionModel"):
        load_diffusers(broken, CPU)


def test_hf_ids_resolve_from_the_local_cache_and_fail_clearly_offline(
    tmp_path: Path, folder: Path, monkeypatch
):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ForeignModelError, match="hf download tiny/ddpm"):
        resolve("hf:tiny/ddpm")
    repo = tmp_path / "hub" / "models--tiny--ddpm"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(folder, repo / "snapshots" / commit)
    assert resolve("hf:tiny/ddpm") == repo / "snapshots" / commit
    assert load_pipeline(Path("hf:tiny/ddpm")).sample(1, steps=2).images.shape == (1, 1, 16, 16)
    with pytest.raises(ForeignModelError, match="expected hf:ORG/NAME"):
        resolve("hf:not-a-repo")


def test_importing_diffkit_never_imports_diffusers():
    code = (
        "import sys, diffkit, diffkit.cli.app, diffkit.methods.load, diffkit.external; "
        "assert 'diffusers' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_deepcache_on_a_diffusers_unet(folder: Path):
    """Branch b keeps a UNet2DModel's first b down and last b up blocks: interval 1 is
    exact, interval 2 skips the middle on every other call and stays close."""
    from diffkit.accel import CacheConfig, DeepCache

    pipe = load_pipeline(folder)
    kw = {"sampler": "ddim", "steps": 10, "seed": 1}
    ref = pipe.sample(3, **kw).images
    calls = []
    inner = pipe.net.mid_block.resnets[0]  # runs only when the middle is computed
    handle = inner.register_forward_hook(lambda *a: calls.append(1))
    for interval, full in ((1, 10), (2, 5)):
        calls.clear()
        with DeepCache.of(pipe, CacheConfig(interval, branch=1), "ddim", 10) as cache:
            out = pipe.sample(3, on_batch_start=cache.reset, **kw).images
        assert cache.mean_full == full and len(calls) == full
        if interval == 1:
            assert torch.equal(out, ref)
        else:
            assert 0 < (out - ref).pow(2).mean() < 1e-2 * ref.pow(2).mean()
    handle.remove()
    with pytest.raises(ValueError, match="between 1 and 2"):
        DeepCache.of(pipe, CacheConfig(2, branch=3), "ddim", 10)
