"""DPM-Solver++(3M) against diffusers' DPMSolverMultistepScheduler(solver_order=3) on a tiny
randomly initialised DDPM (no downloads)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from diffkit.methods.load import load_pipeline  # noqa: E402
from diffkit.methods.pipeline import SampleOptions  # noqa: E402
from tests.external.test_diffusers import folder, scheduler_reference  # noqa: E402, F401


@pytest.mark.parametrize("steps", [5, 10, 20])
def test_dpm_solver_3m_matches_diffusers_on_a_trailing_grid(folder: Path, steps: int):  # noqa: F811
    """On trailing spacing, which both define alike (as for dpm++2m). 5 and 10 steps take
    the second-to-last step at second order (lower_order_final, under 15 steps), 20 at
    third."""
    noise, ref = scheduler_reference(
        folder, diffusers.DPMSolverMultistepScheduler, steps, algorithm_type="dpmsolver++",
        solver_order=3, final_sigmas_type="zero", timestep_spacing="trailing",
        lower_order_final=True,
    )  # fmt: skip
    pipe = load_pipeline(folder)
    opts = SampleOptions(spacing="trailing", clip=False)
    x, nfe = pipe.generate(noise, "dpm++3m", steps, opts=opts)
    assert nfe == steps
    torch.testing.assert_close(x, ref, atol=1e-5, rtol=0)
    two, _ = pipe.generate(noise, "dpm++2m", steps, opts=opts)
    assert (two - ref).abs().max() > 1e-4  # the comparison tells 3M from 2M
