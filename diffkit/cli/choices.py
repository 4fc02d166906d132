"""Option types and help read from the sampler registry.

Typer evaluates a command's annotations (``from __future__ import annotations``) each time
it builds the command, so these are read then, and a sampler registered before the command
runs is offered too. The registry reads the samplers' source, so none of this imports torch.
"""

from __future__ import annotations

from typing import Any, Literal


def sampler_names(family: str | None = None) -> Any:
    """``Literal[...]`` of the registered samplers that fit ``family`` (None: all): Typer
    offers them as the option's choices."""
    from diffkit.samplers import registry

    return Literal[registry.names(family)]  # type: ignore[valid-type]


def family_defaults(family: str | None = None) -> str:
    """``<sampler> for DDPMs, <solver> for flows``: the default sampler of each family (or
    only that of ``family``)."""
    from diffkit.samplers import registry

    if family is not None:
        return registry.default(family)
    return f"{registry.default('ddpm')} for DDPMs, {registry.default('flow')} for flows"


def steps_help() -> str:
    """What a sampler's steps default to: T for ancestral sampling, the steps each other
    sampler declares, 50 for the rest."""
    from diffkit.samplers import registry

    own = ", ".join(f"{n} {s.steps}" for n, s in registry.specs().items() if s.steps)
    return (f"a distilled model's own (a reflow-distilled flow's k); else T for "
            f"{registry.ancestral()}, {own}, "
            f"{registry.DEFAULT_STEPS} otherwise")  # fmt: skip


def ddpm_samplers() -> list[str]:
    """The samplers only DDPMs take (the ddpm family), in listing order."""
    from diffkit.samplers import registry

    solvers = registry.names("flow")
    return [n for n in registry.names("ddpm") if n not in solvers]


def sampler_help() -> str:
    """The --sampler help of the commands that sample any model: the samplers of each
    family and each family's default."""
    from diffkit.samplers import registry

    solvers, jumps = registry.calling("ode"), registry.calling("x0")
    return (f"{' | '.join(ddpm_samplers())} (DDPM models), an ODE solver: {' | '.join(solvers)}, "
            f"or {' | '.join(jumps)} (any model; default: {family_defaults()}; a "
            "distilled student's own).")  # fmt: skip
