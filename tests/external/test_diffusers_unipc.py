"""UniPC against diffusers' UniPCMultistepScheduler: the tiny randomly initialised DDPM of
tests/external/test_diffusers.py (no downloads), the same noise, a trailing grid."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from diffkit.methods.load import load_pipeline  # noqa: E402
from diffkit.methods.pipeline import SampleOptions  # noqa: E402
from tests.external.test_diffusers import folder, scheduler_reference  # noqa: E402, F401


@pytest.mark.parametrize("steps", [5, 10, 20])
def test_unipc_matches_diffusers_on_a_trailing_grid(folder: Path, steps: int):  # noqa: F811
    """diffusers' defaults but for the grid: order 2, data prediction, B(h) = e^h - 1, the
    corrector on every step, a first-order final step to sigma = 0. Trailing spacing, as for
    DPM-Solver++ (their "leading" grid has no t = 0). The model is evaluated at the
    predicted point in both, and the corrector reuses that evaluation."""
    noise, ref = scheduler_reference(
        folder, diffusers.UniPCMultistepScheduler, steps, solver_order=2, predict_x0=True,
        solver_type="bh2", lower_order_final=True, final_sigmas_type="zero",
        timestep_spacing="trailing", disable_corrector=[],
    )  # fmt: skip
    pipe = load_pipeline(folder)
    opts = SampleOptions(spacing="trailing", clip=False)
    x, nfe = pipe.generate(noise, "unipc", steps, opts=opts)
    assert nfe == steps
    torch.testing.assert_close(x, ref, atol=1e-5, rtol=0)
    # the corrector is what differs from DPM-Solver++(2M) (whose step is UniP-2's)
    dpm, _ = pipe.generate(noise, "dpm++2m", steps, opts=opts)
    assert (dpm - ref).abs().max() > 100 * (x - ref).abs().max()
