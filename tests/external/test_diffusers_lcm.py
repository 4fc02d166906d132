"""The consistency sampler against diffusers' LCMScheduler: the tiny randomly initialised
DDPM of tests/external/test_diffusers.py (no downloads), the same noise and timesteps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from diffkit.methods.load import load_pipeline  # noqa: E402
from diffkit.methods.pipeline import SampleOptions  # noqa: E402
from tests.external.test_diffusers import folder, noise_and_generator  # noqa: E402, F401


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_consistency_matches_diffusers_lcm_scheduler(folder: Path, steps: int):  # noqa: F811
    """Each step: x0 clipped, ``c_skip x_t + c_out x0`` (timesteps scaled by 10), then fresh
    noise from the caller's generator at the next timestep; the last step returns x0."""
    pipe = load_pipeline(folder)
    ts = pipe.timesteps(steps, "trailing")
    ddpm = diffusers.DDPMPipeline.from_pretrained(folder)
    sched = diffusers.LCMScheduler.from_config(ddpm.scheduler.config)
    sched.set_timesteps(timesteps=ts.tolist())
    noise, g = noise_and_generator((3, 1, 16, 16))
    ref = noise.clone()
    with torch.no_grad():
        for t in sched.timesteps:
            ref = sched.step(ddpm.unet(ref, t).sample, t, ref, generator=g).prev_sample
    _, g = noise_and_generator((3, 1, 16, 16))
    x, nfe = pipe.generate(noise, "consistency", steps, generator=g,
                           opts=SampleOptions(spacing="trailing"))  # fmt: skip
    assert nfe == steps
    torch.testing.assert_close(x, ref, atol=1e-5, rtol=0)
    if steps > 1:  # the noise between steps is fresh: another generator, other samples
        other, _ = pipe.generate(noise, "consistency", steps,
                                 generator=torch.Generator().manual_seed(7))  # fmt: skip
        assert (other - ref).abs().max() > 1e-3
