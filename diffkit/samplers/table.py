"""What each sampler is, in one table; code asks it instead of comparing sampler names.

``family`` says which models a sampler fits: ``ddpm`` samplers step a discrete DDPM grid
and need a DDPM; ``ode`` solvers integrate a velocity field, a flow's own or a DDPM's
probability-flow velocity. ``calls_per_step`` is None for an adaptive solver, whose
number of network evaluations is known only afterwards. ``options`` are the fields of
:class:`~diffkit.methods.pipeline.SampleOptions` the sampler reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class SamplerSpec:
    name: str
    family: Literal["ddpm", "ode"]
    calls_per_step: int | None
    stochastic: bool
    options: frozenset[str] = frozenset()

    def fits(self, model_family: str) -> bool:
        """Whether this sampler works on a model of ``model_family``: a DDPM takes every
        sampler (the ODE solvers through its probability-flow velocity), a flow the ODE
        solvers."""
        return self.family == "ode" or self.family == model_family

    @property
    def adaptive(self) -> bool:
        return self.calls_per_step is None

    def tag(self, steps: int) -> str:
        """``ddim-50``; an adaptive solver's steps are not chosen, so just ``dopri5``."""
        return self.name if self.adaptive else f"{self.name}-{steps}"


_GRID = frozenset({"spacing"})
SAMPLERS: dict[str, SamplerSpec] = {
    s.name: s
    for s in (
        SamplerSpec("ddpm", "ddpm", 1, True, _GRID | {"variance"}),
        SamplerSpec("ddim", "ddpm", 1, True, _GRID | {"eta"}),  # stochastic when eta > 0
        SamplerSpec("dpm++2m", "ddpm", 1, False, _GRID),
        SamplerSpec("euler", "ode", 1, False),
        SamplerSpec("midpoint", "ode", 2, False),
        SamplerSpec("heun", "ode", 2, False),
        SamplerSpec("rk4", "ode", 4, False),
        SamplerSpec("dopri5", "ode", None, False, frozenset({"rtol", "atol"})),
    )
}


def sampler_spec(name: str) -> SamplerSpec:
    try:
        return SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}") from None


def family_samplers(model_family: str) -> tuple[str, ...]:
    """The samplers that fit a model family (see :meth:`SamplerSpec.fits`), in table order."""
    return tuple(n for n, s in SAMPLERS.items() if s.fits(model_family))


def fixed_step(names: tuple[str, ...] | list[str]) -> list[str]:
    """The samplers among ``names`` whose number of steps is chosen (not adaptive)."""
    return [n for n in names if not SAMPLERS[n].adaptive]
