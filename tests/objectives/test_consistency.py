"""The consistency losses on Gaussian data, where both the teacher (the posterior mean a
diffusion model learns) and the consistency function are known in closed form."""

from __future__ import annotations

import pytest
import torch

from diffkit.objectives.consistency import (
    ConsistencyDistillation,
    ConsistencyTuning,
    DDPMLevels,
    FlowLevels,
)
from diffkit.schedules import make_schedule
from tests.samplers.test_consistency import MU, STD, GaussianDDPM, GaussianFlow

B = 4096


def family(name: str, exact: bool):
    """(levels, network): the consistency function (``exact``) or the teacher."""
    if name == "ddpm":
        sched = make_schedule("linear")
        return DDPMLevels(sched, "x0"), GaussianDDPM(sched, exact)
    return FlowLevels(), GaussianFlow(exact)


def data() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return MU + STD * torch.randn(B, 2, generator=g, dtype=torch.float64)


def cd_loss(name: str, student_exact: bool, teacher_steps: int) -> float:
    levels, student = family(name, student_exact)
    _, teacher = family(name, exact=False)
    loss = ConsistencyDistillation(levels, teacher=teacher, teacher_steps=teacher_steps)
    return float(loss(student, data(), None, torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("name", ["ddpm", "flow"])
def test_cd_loss_of_the_consistency_function_vanishes_as_the_teacher_grid_refines(name):
    """One first-order teacher step leaves a local error O(h^2): the exact consistency
    function's loss falls with the grid, the teacher's own denoiser's does not."""
    coarse, fine = cd_loss(name, True, 10), cd_loss(name, True, 160)
    assert fine < coarse / 8
    assert cd_loss(name, False, 160) > 5 * fine


def test_ect_gap_schedule():
    """r = t (1 - q^-(stage + 1) (1 + 8 sigmoid(-t))), clamped at 0 (clean data)."""
    loss = ConsistencyTuning(FlowLevels(), q=2.0, stage_steps=100)
    sigma = torch.tensor([0.01, 1.0, 10.0, 80.0], dtype=torch.float64)
    loss.begin_step(99)
    assert loss.stage == 0
    expected = (sigma * (1 - 0.5 * (1 + 8 * torch.sigmoid(-sigma)))).clamp(min=0)
    torch.testing.assert_close(loss.r_of(sigma), expected)
    assert loss.r_of(sigma)[0] == 0  # at first, small noise levels are plain denoising
    loss.begin_step(250)
    assert loss.stage == 2
    ratio = loss.r_of(sigma) / sigma
    assert torch.all(ratio > 0) and torch.all(ratio < 1) and ratio[-1] > 0.87


def test_ddpm_levels_keep_r_below_t_and_map_sigma_to_timesteps():
    levels = DDPMLevels(make_schedule("linear"), "eps")
    t = torch.tensor([0, 5, 500, 999])
    torch.testing.assert_close(levels.from_sigma(levels.sigma(t)), t)
    assert levels.from_sigma(torch.tensor([1e-4], dtype=torch.float64)).item() == -1
    r = levels.below(t, t.clone())
    assert torch.equal(r, t - 1) and levels.clean(r)[0]
    a, s = levels.coefficients(torch.tensor([-1]), 2, torch.float64)
    assert a.item() == 1 and s.item() == 0


def test_baked_guidance_steers_the_teacher_and_leaves_dropped_labels_unguided():
    """A class-conditional teacher: rows with a label step along ``D_u + w (D_c - D_u)``,
    rows dropped to the null class along ``D_u``."""

    class Shift(torch.nn.Module):  # x0-prediction: the label moves x0 by +1
        def forward(self, x, t, labels):
            return x * 0 + (labels < 2).to(x.dtype)[:, None]

    loss = ConsistencyDistillation(FlowLevels(), num_classes=2, teacher=Shift(), guidance=3.0)
    x = torch.zeros(3, 2, dtype=torch.float64)
    t = torch.zeros(3, dtype=torch.float64)
    y = torch.tensor([0, 1, 2])  # 2 is the null class
    # a flow network outputs a velocity: x0 = x + (1 - t) v = v at t = 0
    got = loss._teacher_x0(x, t, y)
    torch.testing.assert_close(got[:, 0], torch.tensor([3.0, 3.0, 0.0], dtype=torch.float64))
    loss.guidance = 1.0
    torch.testing.assert_close(loss._teacher_x0(x, t, y)[:, 0],
                               torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64))  # fmt: skip
