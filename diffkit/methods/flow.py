"""Rectified flows (pixel or latent, 1-RF, reflowed or distilled) at sampling time."""

from __future__ import annotations

from typing import ClassVar, get_args

from diffkit.config.run import FlowRunConfig, OdeSolverName
from diffkit.methods.pipeline import Pipeline
from diffkit.samplers.common import make_velocity
from diffkit.samplers.ode import solve
from diffkit.samplers.table import SAMPLERS
from diffkit.schedules.flow import flow_time_grid

MAX_FLOW_STEPS = 10_000


class FlowPipeline(Pipeline):
    """A trained rectified flow, sampled by integrating its velocity from noise (t = 0) to
    data (t = 1) with an ODE solver on a uniform grid of ``steps`` steps (default 50
    Euler steps; 1 for a one-step distilled model)."""

    SAMPLERS: ClassVar[tuple[str, ...]] = get_args(OdeSolverName)
    DEFAULT_SAMPLER: ClassVar[str] = "euler"
    config: FlowRunConfig

    def max_steps(self) -> int:
        return MAX_FLOW_STEPS

    def default_steps(self, sampler: str) -> int:
        reflow = self.config.reflow
        return reflow.distill_steps if reflow and reflow.distill_steps else 50

    def planned_nfe(self, sampler: str, steps: int) -> int | None:
        per_step = SAMPLERS[sampler].calls_per_step
        return None if per_step is None else per_step * steps

    def integrate(self, net, x, sampler, steps, opts, generator, on_step):
        times = flow_time_grid(steps)
        return solve(sampler, make_velocity(net), x, times, rtol=opts.rtol, atol=opts.atol,
                     on_step=on_step)  # fmt: skip
