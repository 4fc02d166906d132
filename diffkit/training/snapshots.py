"""Post-hoc EMA: choose the averaging length after training, from saved weight snapshots.

An EMA is a fixed linear combination of the raw weights after each update. Writing
``s_n`` for the average after ``n`` updates, ``theta_t`` for the raw weights after ``t``
updates (``theta_0`` the initialisation, which is also ``s_0``) and ``d_n`` for the decay of
update ``n`` (see :class:`~diffkit.training.ema.EMA`, warm-up included)::

    s_T = c_0 theta_0 + sum_{t=1..T} c_t theta_t
    c_0 = prod_{n<T} d_n,        c_t = (1 - d_{t-1}) prod_{t<=n<T} d_n

and the ``c_t`` sum to one. Keeping every ``theta_t`` is too much, so training with
``train.snapshot_every_steps = k`` writes ``snapshots/step-NNNNNNN.safetensors``: the *mean*
of the raw weights over the steps since the previous snapshot (a box average, one running
sum on the device). The average of any other decay is then the combination of the
snapshots with, for each, the sum of its steps' ``c_t`` (:func:`posthoc_ema`). With ``k =
1`` this is the EMA itself, to round-off; with spans much shorter than the EMA's
half-life the error is second order in the span (a box mean in place of a slowly varying
weighting). Karras et al. 2024 (EDM2, Sec. 3) reconstruct power-function profiles by least
squares from two stored averages; the box means here are simpler, exact in the limit, and
serve the classical exponential EMA that diffkit trains with.

A snapshot is also flushed at every checkpoint, so a run resumed from its last checkpoint
covers every step once: the snapshots past the resume step are deleted at the resume.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import safe_open
from safetensors.torch import save
from torch import Tensor, nn

from diffkit.runs.layout import atomic_write_bytes

if TYPE_CHECKING:
    from diffkit.runs.checkpoint import CheckpointHeader, TensorSpec

NAME = re.compile(r"step-(\d{7,})\.safetensors")
MAX_STEP = 10**12
"""The largest step a snapshot or checkpoint may claim: past any real run (a million
steps a day for a thousand years), small enough that its arithmetic cannot overflow."""
_STEP = re.compile(r"0|[1-9]\d{0,12}")


def snapshot_path(folder: Path, step: int) -> Path:
    return folder / f"step-{step:07d}.safetensors"


class SnapshotWriter:
    """Accumulates the raw weights after each step; ``flush`` writes their mean."""

    def __init__(self, folder: Path, model: nn.Module, step: int) -> None:
        self.folder = folder
        self.params = [p for p in model.parameters()]
        self.names = [n for n, _ in model.named_parameters()]
        self.sum = [torch.zeros_like(p, dtype=torch.float32) for p in self.params]
        self.first = step + 1  # the first step the running sum will hold
        self.count = 0
        folder.mkdir(parents=True, exist_ok=True)
        prune_after(folder, step)
        if step == 0:  # theta_0: the initialisation, which the EMA starts from
            self._write(0, 0, [p.detach().float() for p in self.params])

    @torch.no_grad()
    def add(self) -> None:
        torch._foreach_add_(self.sum, [p.detach().float() for p in self.params])
        self.count += 1

    def flush(self) -> None:
        """Write the mean over the steps since the last flush (nothing if there were none)."""
        if not self.count:
            return
        last = self.first + self.count - 1
        self._write(self.first, last, [s / self.count for s in self.sum])
        for s in self.sum:
            s.zero_()
        self.first, self.count = last + 1, 0

    def _write(self, first: int, last: int, tensors: list[Tensor]) -> None:
        data = {n: t.cpu().contiguous() for n, t in zip(self.names, tensors, strict=True)}
        meta = {"diffkit.snapshot.first": str(first), "diffkit.snapshot.last": str(last)}
        atomic_write_bytes(snapshot_path(self.folder, last), save(data, metadata=meta))


@dataclass(frozen=True)
class Snapshot:
    path: Path
    first: int  # the mean covers the raw weights after steps first..last
    last: int


def list_snapshots(folder: Path, expected: Mapping[str, TensorSpec] | None = None,
                   exact: bool = True) -> list[Snapshot]:  # fmt: skip
    """The snapshots in ``folder``, by step. Each header is checked before a tensor is read:
    its metadata (``first`` and ``last``, 0 <= first <= last <= :data:`MAX_STEP`, ``last``
    the step its name says) and, given ``expected`` (name: (dtype, shape)), its tensors:
    exactly those, or (``exact`` False) some of them, the same in every snapshot. A file
    that is not a snapshot raises ValueError naming it and the first problem."""
    from diffkit.runs.checkpoint import CheckpointError, check_specs, read_header

    out = []
    for path in sorted(folder.glob("step-*.safetensors")):
        m = NAME.fullmatch(path.name)
        if not m:
            continue
        try:
            meta, specs = read_header(path)
            first, last = (_step(meta, f"diffkit.snapshot.{key}") for key in ("first", "last"))
            if first > last:
                raise ValueError(f"its steps {first}..{last} run backwards")
            if last != int(m.group(1)):
                raise ValueError(f"it ends at step {last}, its name says {int(m.group(1))}")
            if expected is not None:
                if not exact:  # the first snapshot's names, then exactly those every time
                    expected = {k: v for k, v in expected.items() if k in specs} or expected
                    exact = True
                check_specs(expected, specs, "its tensors do not match the model")
        except (CheckpointError, ValueError) as exc:  # unreadable, truncated or foreign
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ValueError(f"{path} is not a weight snapshot of this run: "
                             f"{reason.removeprefix(f'cannot read checkpoint {path}: ')}"
                             ) from None  # fmt: skip
        out.append(Snapshot(path, first, last))
    return sorted(out, key=lambda s: s.last)


def _step(meta: Mapping[str, str], key: str) -> int:
    value = meta.get(key)
    if value is None:
        raise ValueError(f"its metadata has no {key}")
    if not _STEP.fullmatch(value) or int(value) > MAX_STEP:
        raise ValueError(f"its {key} {value[:40]!r} is not a step from 0 to {MAX_STEP:.0e}")
    return int(value)


SpecsOf = Callable[["CheckpointHeader"], "tuple[dict[str, TensorSpec], bool]"]
"""What the snapshots of a run must hold, given its last checkpoint's header, and whether
exactly (see :func:`list_snapshots`)."""


def ema_specs(header: CheckpointHeader) -> tuple[dict[str, TensorSpec], bool]:
    """Some of the checkpoint's EMA tensors (its buffers are not averaged), each float32 of
    its EMA's shape: what any run's snapshots hold. A method that knows its network checks
    exactly instead (:func:`diffkit.methods.restore.snapshot_specs`)."""
    return {k: ("F32", shape) for k, (_, shape) in header.section("ema").items()}, False


def prune_after(folder: Path, step: int) -> None:
    """Delete the snapshots of steps past ``step`` (a resume from that step redoes them)."""
    for path in folder.glob("step-*.safetensors"):
        m = NAME.fullmatch(path.name)
        if m and int(m.group(1)) > step:
            path.unlink()


def ema_coefficients(decay: float, warmup: bool, steps: int) -> Tensor:
    """``c: (steps + 1,)`` float64 with ``s_steps = sum_t c_t theta_t`` (module docstring)."""
    n = torch.arange(steps, dtype=torch.float64)
    d = torch.full_like(n, decay)
    if warmup:  # EMA.decay_at: min(decay, (1 + n) / (10 + n)) at update n
        d = torch.minimum(d, (1 + n) / (10 + n))
    # tail[t] = prod_{t <= n < steps} d_n, for t = 0..steps (the empty product is 1)
    tail = torch.ones(steps + 1, dtype=torch.float64)
    if steps:
        tail[:-1] = torch.flip(torch.cumprod(torch.flip(d, (0,)), 0), (0,))
    c = torch.empty(steps + 1, dtype=torch.float64)
    c[0] = tail[0]
    c[1:] = (1 - d) * tail[1:]
    return c


def posthoc_ema(
    snapshots: list[Snapshot], decay: float, warmup: bool, steps: int | None = None
) -> dict[str, Tensor]:
    """The EMA of ``decay`` after ``steps`` updates (default: the last snapshot's step),
    from snapshots that cover steps 0..steps without gaps; float32 tensors by name."""
    if not snapshots or snapshots[0].first != 0:
        raise ValueError("the snapshots do not start at step 0 (the run was trained without "
                         "train.snapshot_every_steps, or they were deleted)")  # fmt: skip
    from diffkit.resources import check_memory

    steps = snapshots[-1].last if steps is None else steps
    used = [s for s in snapshots if s.first <= steps]
    for a, b in itertools.pairwise(used):
        if b.first != a.last + 1:
            raise ValueError(f"the snapshots miss steps {a.last + 1}..{b.first - 1}")
    if used[-1].last != steps:
        raise ValueError(f"no snapshot ends at step {steps} (the last ends at {used[-1].last})")
    # ema_coefficients holds a few float64 vectors of steps + 1 entries
    check_memory(6 * 8 * (steps + 1), f"the post-hoc EMA of {steps:,} steps")
    c = ema_coefficients(decay, warmup, steps)
    out: dict[str, Tensor] = {}
    for snap in used:
        weight = float(c[snap.first : snap.last + 1].sum())
        with safe_open(str(snap.path), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                t = f.get_tensor(name).to(torch.float64)
                out[name] = out[name] + weight * t if name in out else weight * t
    return {k: v.float() for k, v in out.items()}


def posthoc_checkpoint(source: Path, decay: float, specs: SpecsOf = ema_specs) -> Path:
    """Write ``checkpoints/ema-DECAY.safetensors`` for the run at ``source`` (its folder or a
    checkpoint inside it): the last checkpoint with its ``ema.*`` weights replaced by the
    post-hoc EMA of ``decay`` at that checkpoint's step (the run's own warm-up setting).
    Weights only, like ``best.safetensors``: it samples and evaluates, it does not resume.
    ``specs`` says what each snapshot must hold (checked before a tensor is read). Raises
    ValueError when the run has no usable snapshots."""
    from diffkit.runs.checkpoint import (
        Checkpoint,
        load_checkpoint,
        read_checkpoint_header,
        save_checkpoint,
    )
    from diffkit.runs.layout import RunDir, run_folder_of

    run = RunDir(run_folder_of(source))
    if not run.last_checkpoint.is_file():
        raise ValueError(f"{run.path} has no checkpoints/last.safetensors")
    header = read_checkpoint_header(run.last_checkpoint)  # checked before a tensor is read
    steps, epoch = _position(header)
    train = header.config.get("train")
    warmup = train.get("ema_warmup", True) if isinstance(train, dict) else True
    if not isinstance(warmup, bool):
        raise ValueError(f"{header.path}: train.ema_warmup is {warmup!r}, not true or false")
    if not run.snapshots.is_dir():
        raise ValueError(f"{run.path} has no snapshots/ (train with --snapshot-every-steps N "
                         "to choose the EMA afterwards)")  # fmt: skip
    snapshots = list_snapshots(run.snapshots, *specs(header))
    weights = posthoc_ema(snapshots, decay, warmup, steps)
    last = load_checkpoint(run.last_checkpoint)
    ema = last.section("ema")
    missing = sorted(set(weights) - set(ema))
    if missing:
        raise ValueError(f"the snapshots hold weights the checkpoint lacks: {missing[0]}")
    tensors = {k: v for k, v in last.tensors.items() if not k.startswith(("optim.", "ema."))}
    tensors |= {f"ema.{k}": weights[k].to(v.dtype) if k in weights else v for k, v in ema.items()}
    state = {"posthoc_ema": {"decay": decay, "warmup": warmup, "step": steps,
                             "epoch": epoch}}  # fmt: skip
    out = run.checkpoints / f"ema-{decay:g}.safetensors"
    save_checkpoint(out, Checkpoint(last.config, tensors, state))
    return out


def _position(header: CheckpointHeader) -> tuple[int, int]:
    """(step, epoch) of a last checkpoint's training state; ValueError naming the file."""
    position = header.train_state.get("position")
    if not isinstance(position, dict):
        raise ValueError(f"{header.path}: its training state has no position")
    for key in ("step", "epoch"):
        value = position.get(key)
        if type(value) is not int or not 0 <= value <= MAX_STEP:
            shown = "missing" if value is None else repr(value)[:40]
            raise ValueError(f"{header.path}: training state position.{key} is {shown}, "
                             f"not a count from 0 to {MAX_STEP:.0e}")  # fmt: skip
    return position["step"], position["epoch"]
