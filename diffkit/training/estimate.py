"""How long a run will take, measured before it starts.

:func:`probe` times a few real training steps (forward, backward, optimizer) of a deep copy
of the model with its own optimizer, on a slice of the run's first batch, after one
warm-up step. The random state (``torch.manual_seed``'s, the CPU and the CUDA generators)
is saved before and restored after, and the data is not touched, so training is
bit-identical with and without it. :func:`estimate` multiplies the measured time per image
by the images the run has left; :func:`warning_text` is the one line shown when a CPU run
would take far beyond an hour.

Switched off by ``DIFFKIT_NO_ESTIMATE=1`` (or ``train(..., estimate=False)``); skipped on
a GPU and for runs too short to matter.
"""

from __future__ import annotations

import copy
import json
import os
import re
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

WARN_SECONDS = 2 * 3600.0
"""A CPU run whose estimate is above this gets the warning."""
MIN_STEPS = 200
"""Runs with fewer steps left are not probed (tests, smoke runs, ``--max-steps`` trials)."""
PROBE_IMAGES = 8
"""The probe's batch: the first rows of the run's first batch (all of it if smaller)."""
PROBE_SECONDS = 1.0
"""The timed steps stop once they have taken this long (at least one, at most 3)."""

_SUMMARY = Path(__file__).resolve().parents[2] / "benchmarks/results/16.3-ttq-small-full.json"
_SMALL_ROW = {"ddpm": "the preset now", "rf": "`train rf --preset small`"}


@dataclass(frozen=True)
class Estimate:
    """The probe's measurement and what it makes of the run."""

    device: str
    steps: int
    """Steps the run has left."""
    batch_size: int
    seconds_per_image: float
    """Measured: the mean time of the timed probe steps over the probe's batch."""
    probe_seconds: float
    """What the probe itself took, warm-up included."""

    @property
    def images_per_sec(self) -> float:
        return 1.0 / max(self.seconds_per_image, 1e-12)

    @property
    def seconds(self) -> float:
        """The run's estimated training time: steps x batch size x seconds per image."""
        return self.steps * self.batch_size * self.seconds_per_image

    def as_dict(self) -> dict:
        return asdict(self) | {"seconds": self.seconds, "images_per_sec": self.images_per_sec}


def disabled() -> bool:
    """Whether ``DIFFKIT_NO_ESTIMATE`` switches the estimate off (any value but 0/empty)."""
    return os.environ.get("DIFFKIT_NO_ESTIMATE", "").strip() not in ("", "0")


def wanted(device: torch.device, steps: int, distributed: bool = False) -> bool:
    """Whether a run of ``steps`` steps left on ``device`` is worth a probe: on a CPU, not
    switched off, one process, and long enough that it could be far beyond an hour."""
    return not disabled() and device.type == "cpu" and not distributed and steps >= MIN_STEPS


def rng_kept():
    """Restore the CPU generator (``torch.manual_seed``'s state) and, where CUDA is in
    use, every CUDA device's, afterwards: torch's own ``fork_rng``."""
    cuda = range(torch.cuda.device_count()) if torch.cuda.is_initialized() else []
    return torch.random.fork_rng(devices=cuda)


def probe(
    model: nn.Module,
    objective: Callable[[nn.Module, Tensor, Tensor | None, torch.Generator], Tensor],
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    x: Tensor,
    y: Tensor | None,
    *,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    max_steps: int = 3,
    budget: float = PROBE_SECONDS,
) -> tuple[float, float]:
    """(seconds per image, the probe's own seconds): one warm-up step, then up to
    ``max_steps`` timed steps (fewer once ``budget`` seconds are spent) of a deep copy of
    ``model`` with its own optimizer on ``x`` (labels ``y``). ``model`` and the random
    state are as before."""
    start = time.perf_counter()
    n = min(PROBE_IMAGES, x.shape[0])
    x, y = x[:n], (y[:n] if y is not None else None)
    if channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else None
    with rng_kept():
        net = copy.deepcopy(model)
        net.train()
        opt = make_optimizer(net)
        gen = torch.Generator(device).manual_seed(0)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            with autocast if autocast is not None else nullcontext():
                loss = objective(net, x, y, gen)
            loss.backward()
            opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        step()  # warm-up: first-call allocations and kernel choices
        times: list[float] = []
        while len(times) < max_steps and (not times or sum(times) < budget):
            t = time.perf_counter()
            step()
            times.append(time.perf_counter() - t)
    return sum(times) / len(times) / n, time.perf_counter() - start


def small_preset_note(method: str | None, summary: Path = _SUMMARY) -> str | None:
    """What to say about the ``small`` preset for ``method`` (ddpm, rf): its measured
    training time on a 2-core CPU, read from the benchmark summary the docs quote, else that
    it is sized for a CPU; None for a method without one."""
    if method not in _SMALL_ROW:
        return None
    fallback = "`--preset small` is sized for a CPU"
    try:
        table = json.loads(summary.read_text())["tables"][0]
        col = table["columns"].index("training")
        row = next(r for r in table["rows"] if _SMALL_ROW[method] in r[0])
        seconds = float(re.fullmatch(r"\s*([\d.]+)\s*s\s*", row[col]).group(1))  # type: ignore[union-attr]
    except (OSError, ValueError, KeyError, IndexError, StopIteration, AttributeError, TypeError):
        return fallback
    return f"`--preset small` trains in about {duration(seconds)} on a 2-core CPU"


def duration(seconds: float) -> str:
    """``95 h``, ``3.5 h``, ``11 min``, ``40 s``."""
    if seconds >= 10 * 3600:
        return f"{seconds / 3600:.0f} h"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def warning_text(est: Estimate, note: str | None = None) -> str | None:
    """The one warning line for a CPU run far beyond an hour, else None."""
    if est.device != "cpu" or est.seconds <= WARN_SECONDS:
        return None
    text = (f"this run would take about {duration(est.seconds)} on this CPU "
            f"({est.images_per_sec:.3g} img/s measured)")  # fmt: skip
    return f"{text}; {note}" if note else text
