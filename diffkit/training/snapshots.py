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
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save
from torch import Tensor, nn

from diffkit.runs.layout import atomic_write_bytes

NAME = re.compile(r"step-(\d{7,})\.safetensors")


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


def list_snapshots(folder: Path) -> list[Snapshot]:
    """The snapshots in ``folder``, by step; a file that is not one raises ValueError."""
    out = []
    for path in sorted(folder.glob("step-*.safetensors")):
        if not NAME.fullmatch(path.name):
            continue
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            first, last = int(meta["diffkit.snapshot.first"]), int(meta["diffkit.snapshot.last"])
        except Exception as exc:  # unreadable, truncated or foreign
            raise ValueError(f"{path} is not a weight snapshot ({exc})") from None
        out.append(Snapshot(path, first, last))
    return sorted(out, key=lambda s: s.last)


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
    steps = snapshots[-1].last if steps is None else steps
    used = [s for s in snapshots if s.first <= steps]
    for a, b in itertools.pairwise(used):
        if b.first != a.last + 1:
            raise ValueError(f"the snapshots miss steps {a.last + 1}..{b.first - 1}")
    if used[-1].last != steps:
        raise ValueError(f"no snapshot ends at step {steps} (the last ends at {used[-1].last})")
    c = ema_coefficients(decay, warmup, steps)
    out: dict[str, Tensor] = {}
    for snap in used:
        weight = float(c[snap.first : snap.last + 1].sum())
        with safe_open(str(snap.path), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                t = f.get_tensor(name).to(torch.float64)
                out[name] = out[name] + weight * t if name in out else weight * t
    return {k: v.float() for k, v in out.items()}


def posthoc_checkpoint(source: Path, decay: float) -> Path:
    """Write ``checkpoints/ema-DECAY.safetensors`` for the run at ``source`` (its folder or a
    checkpoint inside it): the last checkpoint with its ``ema.*`` weights replaced by the
    post-hoc EMA of ``decay`` at that checkpoint's step (the run's own warm-up setting).
    Weights only, like ``best.safetensors``: it samples and evaluates, it does not resume.
    Raises ValueError when the run has no usable snapshots."""
    from diffkit.runs.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
    from diffkit.runs.layout import RunDir, run_folder_of

    run = RunDir(run_folder_of(source))
    if not run.last_checkpoint.is_file():
        raise ValueError(f"{run.path} has no checkpoints/last.safetensors")
    last = load_checkpoint(run.last_checkpoint)
    steps = int(last.train_state["position"]["step"])
    warmup = bool(last.config.get("train", {}).get("ema_warmup", True))
    if not run.snapshots.is_dir():
        raise ValueError(f"{run.path} has no snapshots/ (train with --snapshot-every-steps N "
                         "to choose the EMA afterwards)")  # fmt: skip
    weights = posthoc_ema(list_snapshots(run.snapshots), decay, warmup, steps)
    ema = last.section("ema")
    missing = sorted(set(weights) - set(ema))
    if missing:
        raise ValueError(f"the snapshots hold weights the checkpoint lacks: {missing[0]}")
    tensors = {k: v for k, v in last.tensors.items() if not k.startswith(("optim.", "ema."))}
    tensors |= {f"ema.{k}": weights[k].to(v.dtype) if k in weights else v for k, v in ema.items()}
    state = {"posthoc_ema": {"decay": decay, "warmup": warmup, "step": steps,
                             "epoch": last.train_state["position"]["epoch"]}}  # fmt: skip
    out = run.checkpoints / f"ema-{decay:g}.safetensors"
    save_checkpoint(out, Checkpoint(last.config, tensors, state))
    return out
