"""The one declaration of every sampler: ``@sampler(...)`` on its function.

A sampler is declared where it is written::

    @sampler("my-ddim", family="ddpm", calls_per_step=1, stochastic=True,
             options=("spacing", "eta"), summary="my DDIM variant")
    def my_ddim(denoiser, x, timesteps, schedule, *, eta, generator, callback, start): ...

and everything else reads the registry: the CLI's choices and help, ``docs/cli.md``, which
options a sampler accepts, progress lengths, output names and the dispatch of
:meth:`~diffkit.methods.pipeline.Pipeline.integrate`. A new sampler is its own file in
``diffkit/samplers/`` plus its test.

``family`` says which calling convention the function follows:

* ``ddpm``: ``fn(denoiser, x, timesteps, schedule, *, start, callback, [generator], **opts)``
  over a descending DDPM timestep grid (:mod:`diffkit.samplers.ddim` is the model);
  ``generator`` is passed when ``stochastic``, and each name in ``options`` other than
  ``spacing`` as a keyword. Only DDPMs take these samplers.
* ``ode``: a fixed-step solver's one step ``fn(velocity, x, t, h) -> x`` (``calls_per_step``
  velocity evaluations), or, with ``calls_per_step=None``, an adaptive solver
  ``fn(velocity, x, t0, t1, *, rtol, atol, on_eval) -> (x, evaluations)``. Every model takes
  them: a flow directly, a DDPM through its probability-flow velocity.
* ``x0``: ``fn(denoise, renoise, x, steps, *, start, callback, [generator])`` over a grid
  of ``steps`` points that the model's family lays out (noise at 0): ``denoise(x, i)`` is
  the model's estimate of clean data from the state at point i, ``renoise(x0, i, z)`` clean
  data put back at point i with noise z (:mod:`diffkit.samplers.consistency`). Every model
  takes them.

The CLI must not import torch to list the samplers, so the declarations of the samplers in
this package are also read from their source (:func:`_declared`): the decorator's arguments
are literals. ``tests/samplers/test_registry.py`` checks that what the source declares is
what the imported modules register. Samplers registered from elsewhere (a plugin, a test)
join when their module is imported.
"""

from __future__ import annotations

import ast
import functools
import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

Family = Literal["ddpm", "ode", "x0"]
DEFAULT_ORDER = 1000
DEFAULT_STEPS = 50  # the steps of a sampler that declares none


@dataclass(frozen=True)
class SamplerSpec:
    """What a sampler is. ``calls_per_step`` is None for an adaptive solver, whose number of
    network evaluations is known only afterwards; ``options`` are the fields of
    :class:`~diffkit.methods.pipeline.SampleOptions` it reads; ``default_for`` the model
    families that sample with it when no sampler is named; ``order`` its place in listings;
    ``whole_grid`` that its steps default to every step of the model's training grid (T),
    as ancestral DDPM sampling's do, else ``steps`` the steps it takes when none are
    given (None: :data:`DEFAULT_STEPS`; a distilled flow's own k comes first). ``fn`` is
    None while its module is not imported yet."""

    name: str
    family: Family
    calls_per_step: int | None
    stochastic: bool = False
    options: frozenset[str] = frozenset()
    summary: str = ""
    default_for: frozenset[str] = frozenset()
    order: int = DEFAULT_ORDER
    whole_grid: bool = False
    module: str = ""
    fn: Callable | None = None
    steps: int | None = None

    def fits(self, model_family: str) -> bool:
        """Whether this sampler works on a model of ``model_family``: a DDPM takes every
        sampler (the ODE solvers through its probability-flow velocity), a flow the ODE
        solvers; both take the ``x0`` family's."""
        return self.family in ("ode", "x0") or self.family == model_family

    @property
    def adaptive(self) -> bool:
        return self.calls_per_step is None

    def tag(self, steps: int) -> str:
        """``ddim-50``; an adaptive solver's steps are not chosen, so just its name."""
        return self.name if self.adaptive else f"{self.name}-{steps}"


_LIVE: dict[str, SamplerSpec] = {}


def sampler(
    name: str,
    *,
    family: Family,
    calls_per_step: int | None,
    stochastic: bool = False,
    options: Iterable[str] = (),
    summary: str = "",
    default_for: Iterable[str] = (),
    order: int = DEFAULT_ORDER,
    whole_grid: bool = False,
    steps: int | None = None,
) -> Callable[[Callable], Callable]:
    """Register the decorated function as sampler ``name`` (see the module docstring for
    the calling convention of each ``family``); the function is returned unchanged."""
    if family not in get_args(Family):
        raise ValueError(f"sampler {name!r}: family must be 'ddpm', 'ode' or 'x0', not {family!r}")
    if family == "ddpm" and calls_per_step is None:
        raise ValueError(f"sampler {name!r}: a ddpm-family sampler has a fixed step count")

    def register(fn: Callable) -> Callable:
        _LIVE[name] = SamplerSpec(name, family, calls_per_step, stochastic,
                                  frozenset(options), summary, frozenset(default_for), order,
                                  whole_grid, fn.__module__, fn, steps)  # fmt: skip
        return fn

    return register


@functools.cache
def _declared() -> tuple[SamplerSpec, ...]:
    """The ``@sampler(...)`` declarations in this package's source, without importing it
    (and torch): each decorator's literal arguments, its module, no function."""
    found = []
    for path in sorted(Path(__file__).parent.glob("*.py")):
        text = path.read_text()
        if path.name == "registry.py" or "\n@sampler(" not in text:
            continue  # parse only the files that declare samplers (start-up time)
        tree = ast.parse(text)
        for node in tree.body:
            for deco in getattr(node, "decorator_list", ()):
                if isinstance(deco, ast.Call) and getattr(deco.func, "id", None) == "sampler":
                    kw = {k.arg: ast.literal_eval(k.value) for k in deco.keywords}
                    name = ast.literal_eval(deco.args[0])
                    found.append(SamplerSpec(
                        name, kw["family"], kw["calls_per_step"], kw.get("stochastic", False),
                        frozenset(kw.get("options", ())), kw.get("summary", ""),
                        frozenset(kw.get("default_for", ())), kw.get("order", DEFAULT_ORDER),
                        kw.get("whole_grid", False), f"{__package__}.{path.stem}",
                        None, kw.get("steps"),
                    ))  # fmt: skip
    return tuple(found)


def specs() -> dict[str, SamplerSpec]:
    """Every sampler, in listing order (``order``, then declaration order): the package's
    declarations, each replaced by its registration once its module is imported, and the
    samplers registered from elsewhere."""
    merged = {s.name: _LIVE.get(s.name, s) for s in _declared()}
    merged |= {n: s for n, s in _LIVE.items() if n not in merged}
    return {s.name: s for s in sorted(merged.values(), key=lambda s: s.order)}


def names(family: str | None = None) -> tuple[str, ...]:
    """The samplers that fit a model ``family`` (:meth:`SamplerSpec.fits`; None: all)."""
    return tuple(n for n, s in specs().items() if family is None or s.fits(family))


def calling(family: Family) -> tuple[str, ...]:
    """The samplers of one calling convention (``ode``: the ODE solvers), in listing order."""
    return tuple(n for n, s in specs().items() if s.family == family)


def default(model_family: str) -> str:
    """The sampler a model of ``model_family`` uses when none is named."""
    picked = [n for n, s in specs().items() if model_family in s.default_for]
    if len(picked) != 1:
        raise LookupError(f"{len(picked)} samplers are the default for {model_family} models")
    return picked[0]


def declared_steps(name: str) -> int:
    """The steps sampler ``name`` takes when none are given: its ``steps``, else
    :data:`DEFAULT_STEPS`."""
    spec = specs().get(name)
    return spec.steps if spec is not None and spec.steps else DEFAULT_STEPS


def ancestral() -> str:
    """The DDPM family's sampler that walks the whole training grid (ancestral sampling):
    what text models sample with, as their own pipelines do, and what a DDPM's steps
    default to T for."""
    picked = [n for n, s in specs().items() if s.whole_grid]
    if len(picked) != 1:
        raise LookupError(f"{len(picked)} samplers walk the whole grid")
    return picked[0]


def sampler_spec(name: str) -> SamplerSpec:
    """The spec of sampler ``name``, without loading its function; ValueError if unknown."""
    try:
        return specs()[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(specs())}") from None


def load(name: str) -> SamplerSpec:
    """The spec of sampler ``name`` with its function, importing its module if needed."""
    spec = sampler_spec(name)
    if spec.fn is None:
        importlib.import_module(spec.module)
        spec = _LIVE.get(name, spec)
    if spec.fn is None:
        raise LookupError(f"{spec.module} declares sampler {name!r} but did not register it")
    return spec


def fixed_step(samplers: Iterable[str]) -> list[str]:
    """The samplers among ``samplers`` whose number of steps is chosen (not adaptive)."""
    return [n for n in samplers if not sampler_spec(n).adaptive]


def unregister(name: str) -> None:
    """Forget a sampler registered from outside this package (tests, plugins)."""
    if name in {s.name for s in _declared()}:
        raise ValueError(f"{name!r} is one of diffkit's own samplers")
    _LIVE.pop(name, None)


__all__ = ["SamplerSpec", "ancestral", "calling", "default", "fixed_step", "load", "names",
           "sampler", "sampler_spec", "specs", "unregister"]  # fmt: skip
