"""Option values shared by the configs and the CLI, as plain ``Literal`` types.

They live apart from the pydantic models so that the CLI can declare its options without
importing pydantic at start-up.
"""

from __future__ import annotations

from typing import Literal

OdeSolverName = Literal["euler", "midpoint", "heun", "rk4", "dopri5"]
SamplerName = Literal["ddpm", "ddim", "dpm++2m", "euler", "midpoint", "heun", "rk4", "dopri5"]
