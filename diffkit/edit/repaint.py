"""RePaint (Lugmayr et al. 2022, Algorithm 1 with the jump schedule of Sec. 4.2): inpainting
that lets the generated region catch up with the pasted one.

Plain replacement pastes the known region, noised to the next level, after every reverse
step; the unknown region then only sees the known region's *noised* values, and the two
disagree where the known region carries information. RePaint walks back: after every
``jump`` reverse steps it noises the state forward by ``jump`` levels with the forward
process, ``x_next_noisier = sqrt(abar' / abar) x + sqrt(1 - abar' / abar) z``, and redoes
them, ``resample - 1`` times per stop. ``resample = 1`` is plain replacement.

A pure function over a :data:`~diffkit.samplers.common.Denoiser` on a descending DDPM grid,
as :func:`~diffkit.samplers.ddpm.ddpm_sample`, with ancestral (fixed_small) steps.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from diffkit.samplers.common import Denoiser, prev_alpha_bars
from diffkit.schedules import DDPMSchedule
from diffkit.schedules.ddpm import posterior_coefficients


def jump_schedule(steps: int, jump: int, resample: int) -> list[int]:
    """The order of grid moves: +1 is a reverse step, -1 a forward (noising) step. After
    every ``jump`` reverse steps (not at the end) the walk goes back ``jump`` levels,
    ``resample - 1`` times at each such stop."""
    if jump < 1 or resample < 1:
        raise ValueError("RePaint's jump and resample counts must be at least 1")
    moves: list[int] = []
    level = 0
    back: dict[int, int] = {}
    while level < steps:
        moves.append(1)
        level += 1
        if level % jump == 0 and level < steps and back.get(level, 0) < resample - 1:
            back[level] = back.get(level, 0) + 1
            moves += [-1] * jump
            level -= jump
    return moves


@torch.no_grad()
def repaint_sample(
    model: Denoiser,
    x: Tensor,
    timesteps: Tensor,
    schedule: DDPMSchedule,
    known: Tensor,
    mask: Tensor,
    *,
    jump: int = 10,
    resample: int = 10,
    generator: torch.Generator | None = None,
    on_move: Callable[[], None] | None = None,
) -> Tensor:
    """From noise ``x`` (B, ...) at ``timesteps[0]`` to data: regenerate where ``mask`` is
    1, keep ``known`` (B, ...) where it is 0 (pasted exactly at the end). ``on_move()``
    after every move of :func:`jump_schedule` (progress)."""
    ab, ab_prev = prev_alpha_bars(schedule, timesteps)  # level i has abar ab[i]; S: 1
    levels = torch.cat([ab, ab.new_ones(1)]).tolist()  # (S + 1,) abar of each grid point
    ts = timesteps.tolist()
    m = mask.to(x.device, x.dtype)

    def randn() -> Tensor:
        return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)

    level = 0
    for move in jump_schedule(len(ts), jump, resample):
        if on_move is not None:
            on_move()
        if move < 0:  # (5) forward: level -> level - 1, q(x_noisier | x)
            ratio = levels[level - 1] / levels[level]
            x = ratio**0.5 * x + (1 - ratio) ** 0.5 * randn()
            level -= 1
            continue
        i = level  # (1) reverse step i: ts[i] -> the next grid point
        c0, ct, var, _ = posterior_coefficients(ab[i].item(), ab_prev[i].item())
        tt = torch.full((x.shape[0],), ts[i], device=x.device, dtype=torch.long)
        x0 = model(x, tt)[1]
        unknown = c0 * x0 + ct * x  # (2) the posterior mean, DDPM Eq. 7
        level += 1
        if level == len(ts):  # (3') clean data: the known region exactly
            return m * unknown + (1 - m) * known
        unknown = unknown + var**0.5 * randn()
        a = levels[level]  # (3) the known region noised to the new level
        x = m * unknown + (1 - m) * (a**0.5 * known + (1 - a) ** 0.5 * randn())  # (4)
    return x
