"""The sampler table is the one description of the samplers: the CLI's choices and the
solvers' step costs agree with it."""

from __future__ import annotations

from typing import get_args

import pytest

from diffkit.config.run import OdeSolverName, SamplerName
from diffkit.methods.ddpm import DDPMPipeline
from diffkit.methods.flow import FlowPipeline
from diffkit.samplers.ode import EVALS_PER_STEP
from diffkit.samplers.table import SAMPLERS, fixed_step, sampler_spec


def test_the_cli_choices_are_the_table():
    assert list(get_args(SamplerName)) == list(SAMPLERS)
    assert list(get_args(OdeSolverName)) == [n for n, s in SAMPLERS.items() if s.family == "ode"]
    assert tuple(SAMPLERS) == DDPMPipeline.SAMPLERS
    assert get_args(OdeSolverName) == FlowPipeline.SAMPLERS


def test_solver_costs_come_from_the_table():
    assert EVALS_PER_STEP == {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}
    assert [n for n, s in SAMPLERS.items() if s.adaptive] == ["dopri5"]
    assert fixed_step(["ddim", "dopri5", "rk4"]) == ["ddim", "rk4"]


def test_tags_and_lookup():
    assert sampler_spec("ddim").tag(50) == "ddim-50" and sampler_spec("dopri5").tag(50) == "dopri5"
    assert "rtol" in sampler_spec("dopri5").options and "eta" in sampler_spec("ddim").options
    with pytest.raises(ValueError, match="unknown sampler 'plms'"):
        sampler_spec("plms")
