"""The sampler registry is the one description of the samplers: what the source declares is
what the modules register; the CLI's choices, the pipelines' samplers and the solvers' step
costs come from it; a sampler registered from outside is offered and used everywhere."""

from __future__ import annotations

import subprocess
import sys
from typing import get_args

import pytest
import torch
from typer.testing import CliRunner

import diffkit.samplers.ode  # noqa: F401  (every module of the package registers on import)
from diffkit.cli.app import app
from diffkit.config import DDPMRunConfig, resolve_run_config
from diffkit.config.run import FlowTrainConfig, TrainConfig
from diffkit.methods.ddpm import DDPMPipeline
from diffkit.methods.flow import FlowPipeline
from diffkit.methods.load import pipeline_for
from diffkit.nn.build import build_model
from diffkit.samplers import ddim_sample, registry
from diffkit.samplers.registry import _declared, fixed_step, sampler, sampler_spec

BUILTIN = ["ddpm", "ddim", "dpm++2m", "dpm++3m", "unipc", "euler", "midpoint", "heun", "rk4",
           "dopri5", "consistency"]  # fmt: skip


def test_the_source_declares_what_the_modules_register():
    """The CLI lists samplers from their source (no torch); importing them must agree."""
    live = registry.specs()
    assert sorted(s.name for s in _declared()) == sorted(n for n in live if n in BUILTIN)
    for declared in _declared():
        loaded = registry.load(declared.name)
        assert loaded.fn is not None and loaded.module == declared.module
        fields = ("family", "calls_per_step", "stochastic", "options", "summary",
                  "default_for", "order", "whole_grid")  # fmt: skip
        assert all(getattr(loaded, f) == getattr(declared, f) for f in fields), declared.name


def test_families_defaults_and_costs():
    assert registry.names() == tuple(BUILTIN)
    assert tuple(BUILTIN) == DDPMPipeline.SAMPLERS
    assert FlowPipeline.SAMPLERS == ("euler", "midpoint", "heun", "rk4", "dopri5", "consistency")
    assert registry.calling("ode") == ("euler", "midpoint", "heun", "rk4", "dopri5")
    assert (DDPMPipeline.DEFAULT_SAMPLER, FlowPipeline.DEFAULT_SAMPLER) == ("dpm++2m", "euler")
    costs = {n: sampler_spec(n).calls_per_step for n in fixed_step(FlowPipeline.SAMPLERS)}
    assert costs == {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4, "consistency": 1}
    assert [n for n in BUILTIN if sampler_spec(n).adaptive] == ["dopri5"]
    assert fixed_step(["ddim", "dopri5", "rk4"]) == ["ddim", "rk4"]


def test_the_ancestral_sampler_walks_the_whole_grid(toy):
    """Ancestral sampling is the one DDPM sampler declared ``whole_grid``: its steps default
    to T; a sampler that declares its steps takes them (DPM-Solver++(2M) and Euler 10, as
    measured in docs/benchmarks.md 17); every other one's, a registered one's too, 50."""
    assert registry.ancestral() == "ddpm"
    assert [n for n, s in registry.specs().items() if s.whole_grid] == ["ddpm"]
    cfg = resolve_run_config(DDPMRunConfig, {"preset": "tiny"})
    model = pipeline_for(cfg, build_model(cfg.model).eval(), torch.device("cpu")).model
    names = ("ddpm", "ddim", "dpm++2m", "euler", "toy", "dopri5")
    steps = {n: model.default_steps(n) for n in names}
    assert steps == {"ddpm": cfg.diffusion.num_steps, "ddim": 50, "dpm++2m": 10, "euler": 10,
                     "toy": 50, "dopri5": 50}  # fmt: skip


def test_tags_and_lookup():
    assert sampler_spec("ddim").tag(50) == "ddim-50" and sampler_spec("dopri5").tag(50) == "dopri5"
    assert "rtol" in sampler_spec("dopri5").options and "eta" in sampler_spec("ddim").options
    with pytest.raises(ValueError, match="unknown sampler 'plms'"):
        sampler_spec("plms")


def test_configs_accept_what_the_registry_offers():
    assert TrainConfig(preview_sampler="dpm++2m").preview_sampler == "dpm++2m"
    with pytest.raises(
        ValueError, match="Input should be 'euler', 'midpoint', 'heun', 'rk4', 'dopri5' or"
    ):
        FlowTrainConfig(preview_sampler="ddim")


def test_bad_declarations_are_refused():
    with pytest.raises(ValueError, match="family must be"):
        sampler("x", family="sde", calls_per_step=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fixed step count"):
        sampler("x", family="ddpm", calls_per_step=None)
    with pytest.raises(ValueError, match="one of diffkit's own"):
        registry.unregister("ddim")


@pytest.fixture
def toy():
    """``toy``: DDIM at eta 0 under another name, registered for one test; counts its calls."""
    calls = []

    @sampler("toy", family="ddpm", calls_per_step=1, options=("spacing",), summary="a test")
    def toy_sample(denoiser, x, timesteps, schedule, *, start=0, callback=None):
        calls.append(timesteps.shape[0])
        return ddim_sample(denoiser, x, timesteps, schedule, start=start, callback=callback)

    yield calls
    registry.unregister("toy")


def test_a_registered_sampler_is_offered_and_used(toy):
    text = CliRunner().invoke(app, ["sample", "--help"], env={"COLUMNS": "200"}).output
    assert "|dopri5|consistency|toy" in text and " | toy (DDPM models)" in text
    assert "toy" in DDPMPipeline.SAMPLERS and "toy" not in FlowPipeline.SAMPLERS
    cfg = resolve_run_config(DDPMRunConfig, {"preset": "tiny"})
    torch.manual_seed(0)
    pipe = pipeline_for(cfg, build_model(cfg.model).eval(), torch.device("cpu"))
    out = pipe.sample(3, sampler="toy", steps=4, seed=1, progress=False)
    assert toy == [4] and out.nfe == 4
    assert torch.equal(out.images, pipe.sample(3, sampler="ddim", steps=4, seed=1).images)
    with pytest.raises(ValueError, match="toy on a ddpm model does not use eta"):
        pipe.options("toy", {"eta": 0.5})


def test_listing_the_samplers_imports_no_torch():
    code = ("import sys; from diffkit.samplers import registry; "
            "print(registry.names(), 'torch' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == "False", out.stdout + out.stderr


def test_the_config_types_list_the_registry():
    """The config's sampler fields are plain strings checked against the registry (not a
    frozen Literal), so get_args finds no fixed list."""
    assert get_args(TrainConfig.model_fields["preview_sampler"].annotation) == ()
