"""One training loop for every objective.

The loop never prints: it reports :class:`TrainEvent` objects through ``on_event``. It writes
the run folder only on rank 0. Randomness is re-seeded from ``(seed, rank, step)`` at every
step, so a resumed run draws exactly the numbers the uninterrupted one would have.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from diffkit.config.run import TrainConfig
from diffkit.data.loader import TensorBatches
from diffkit.nn.compile import CompiledNet, compiled
from diffkit.runs.checkpoint import (
    Checkpoint,
    CheckpointError,
    keep_numbered,
    load_checkpoint,
    save_checkpoint,
    tensor_spec,
)
from diffkit.runs.layout import OutputError, RunDir
from diffkit.runs.metrics import MetricsWriter
from diffkit.training.distributed import DistInfo, all_reduce_mean, stop_agreed
from diffkit.training.ema import EMA
from diffkit.training.estimate import Estimate, probe, wanted, warning_text
from diffkit.training.optim import lr_at, make_optimizer, set_lr
from diffkit.training.resume import check_resume
from diffkit.training.snapshots import SnapshotWriter

Objective = Callable[[nn.Module, Tensor, Tensor | None, torch.Generator], Tensor]
StopReason = Literal["finished", "nothing_to_do", "interrupted", "non_finite", "max_steps"]
"""``max_steps`` only in summaries written before max_steps set a run's length."""


def run_length(cfg: TrainConfig, batches_per_epoch: int) -> int:
    """Steps in a run: ``max_steps`` if set, else ``epochs`` passes over the data."""
    return cfg.max_steps if cfg.max_steps is not None else cfg.epochs * batches_per_epoch


@dataclass
class TrainEvent:
    """``kind`` is one of start, log, epoch, checkpoint, preview, eval, warning, stop (and
    a method's own ``data`` and ``features``, the evaluation's feature network, before
    start)."""

    kind: str
    step: int
    epoch: int
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainResult:
    reason: StopReason
    step: int
    epoch: int
    last_loss: float | None
    elapsed: float
    images_per_sec: float
    checkpoint: Path | None = None
    stop_signal: str | None = None
    """For ``interrupted``: the signal that asked for the stop (SIGINT or SIGTERM)."""
    """The run's last checkpoint on disk (written now or resumed from); None if there is
    none, e.g. a loss went non-finite before the first one, or not the main process."""
    compiled: bool | None = None
    """With ``compile_backend``: whether the network ran compiled to the end (False: it
    fell back to eager, see :class:`~diffkit.nn.compile.CompiledNet`); None without."""
    epochs_done: float = 0.0
    """Passes over the data so far, fractional (a run may stop mid-epoch)."""
    estimate: Estimate | None = None
    """The time the run was estimated to take before it started (CPU runs long enough to
    probe, see :mod:`diffkit.training.estimate`); None when not probed."""


@dataclass
class _Position:
    step: int = 0
    epoch: int = 0  # epochs completed
    batch: int = 0  # next batch within the current epoch
    elapsed: float = 0.0
    images: int = 0


class _StopFlag:
    """SIGINT (Ctrl-C) or SIGTERM asks the loop to stop at the next step boundary (under
    DDP, at the next of the ranks' votes, see :func:`~diffkit.training.distributed.stop_agreed`);
    a second one aborts at once (KeyboardInterrupt)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.set = False
        self.signal: str | None = None  # the name of the first signal, e.g. "SIGTERM"

    @contextmanager
    def installed(self):
        def handler(signum, frame):
            if self.set:
                raise KeyboardInterrupt
            self.set = True
            self.signal = signal.Signals(signum).name

        try:
            previous = {sig: signal.signal(sig, handler) for sig in self.SIGNALS}
        except ValueError:  # not the main thread: leave signals alone
            yield self
            return
        try:
            yield self
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


class _LossWindow:
    """Losses summed on the device between log points (no per-step host sync)."""

    def __init__(self, device: torch.device) -> None:
        self.total = torch.zeros((), device=device)
        self.n, self.images, self.t0 = 0, 0, time.perf_counter()

    def add(self, loss: Tensor, images: int) -> None:
        self.total += loss.detach().float()
        self.n += 1
        self.images += images

    def flush(self, dist: DistInfo) -> tuple[float, float] | None:
        """(mean loss over all ranks, images/s) since the last flush; None if empty."""
        if self.n == 0:
            return None
        mean = all_reduce_mean(self.total / self.n, dist).item()
        now = time.perf_counter()
        ips = self.images / max(now - self.t0, 1e-9)
        self.total.zero_()
        self.n, self.images, self.t0 = 0, 0, now
        return mean, ips


class _BestKeeper:
    """Writes ``best.safetensors`` (weights only) whenever the FID improves. The best value
    so far is read back from that file, so it survives a resume."""

    def __init__(
        self, run: RunDir, run_config: dict[str, Any], extra: dict[str, Tensor] | None = None
    ) -> None:
        self.path, self.run_config, self.extra = run.best_checkpoint, run_config, extra or {}
        self.value = math.inf
        if self.path.is_file():
            try:
                state = load_checkpoint(self.path, prefixes=()).train_state
                self.value = float(state["best"]["fid"])
            except (CheckpointError, KeyError, TypeError, ValueError):
                pass  # unreadable: the next evaluation replaces it

    def offer(self, fid: float, model: nn.Module, ema: nn.Module, pos: _Position) -> bool:
        if not fid < self.value:
            return False
        self.value = fid
        tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
        tensors |= {f"ema.{k}": v for k, v in ema.state_dict().items()} | self.extra
        state = {"best": {"fid": fid, "epoch": pos.epoch, "step": pos.step}}
        save_checkpoint(self.path, Checkpoint(self.run_config, tensors, state))
        return True


def _due(every: int, count: int) -> bool:
    """Whether something done every ``every`` epochs or steps (0 = never) is due at ``count``."""
    return bool(every) and count % every == 0


def _micro_batches(x: Tensor, y: Tensor | None, k: int) -> list[tuple[Tensor, Tensor | None]]:
    """A batch ``x: (B, ...)`` (and its labels ``y: (B,)``) as ``k`` equal micro-batches
    of ``B / k`` rows, views in order. Equal sizes make the mean of their losses the
    batch's loss; the config refuses a batch size that ``k`` does not divide, and so does
    this, for a caller whose batches are not ``cfg.batch_size``."""
    if x.shape[0] % k:
        raise ValueError(f"a batch of {x.shape[0]} does not split into {k} equal micro-batches")
    xs = x.chunk(k)
    return list(zip(xs, y.chunk(k) if y is not None else [None] * k, strict=True))


def _step_seed(seed: int, rank: int, step: int) -> int:
    return (seed * 1_000_003 + rank * 7_919 + step) % (2**63)


def _optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, Tensor]:
    out = {}
    for i, state in opt.state_dict()["state"].items():
        for key, value in state.items():
            out[f"optim.{i}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return out


def _restore(
    resume: Checkpoint,
    model: nn.Module,
    ema: EMA,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    cfg: TrainConfig,
    *,
    world: int,
    batches: int,
) -> _Position:
    """Apply a resume checkpoint. It is checked again here, against the real model (shapes
    only, so cheap), for callers that did not validate it first."""
    specs = {k: tensor_spec(v) for k, v in resume.tensors.items()}
    state = check_resume(specs, resume.train_state, model, cfg, world=world, batches=batches,
                         source="the resume checkpoint")  # fmt: skip
    model.load_state_dict(resume.section("model"))
    ema.shadow.load_state_dict(resume.section("ema"))
    _load_optimizer(optimizer, resume)
    if state.scaler is not None:
        scaler.load_state_dict(state.scaler_dict())
    return _Position(**state.position.model_dump())


def _load_optimizer(opt: torch.optim.Optimizer, ckpt: Checkpoint) -> None:
    state: dict[int, dict[str, Tensor]] = {}
    for key, value in ckpt.section("optim").items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    sd = opt.state_dict()
    sd["state"] = state
    opt.load_state_dict(sd)


def train(
    model: nn.Module,
    objective: Objective,
    batches: TensorBatches,
    cfg: TrainConfig,
    *,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    run: RunDir | None,
    run_config: dict[str, Any],
    dist: DistInfo = DistInfo(),
    resume: Checkpoint | None = None,
    preview: Callable[[nn.Module, str], Path | None] | None = None,
    evaluate: Callable[[nn.Module, int], dict[str, Any]] | None = None,
    on_event: Callable[[TrainEvent], None] = lambda e: None,
    extra_tensors: dict[str, Tensor] | None = None,
    compile_backend: str | None = None,
    estimate: bool | str = True,
) -> TrainResult:
    """Train ``model`` in place; returns why and where it stopped.

    ``extra_tensors`` (e.g. ``vae.*``, the autoencoder of a latent model) are written into
    every checkpoint unchanged, so each file is enough to sample from.

    On rank 0, ``preview(ema_model, tag)`` runs every ``cfg.sample_every`` epochs and every
    ``cfg.sample_every_steps`` steps, and at the run's last step (``tag`` names the grid:
    ``epoch-NNNN`` at an epoch's end, ``step-NNNNNNN`` within one; the
    grid it returns, if any, is the ``preview`` event's ``image``) and
    ``evaluate(ema_model, epoch) -> {"fid": ..., ...}`` likewise by ``cfg.eval_every`` and
    ``cfg.eval_every_steps``; its
    scores go to metrics.jsonl (``"event": "eval"``) and, with ``cfg.keep_best``, the weights
    with the lowest FID so far to ``checkpoints/best.safetensors``.

    With ``cfg.grad_accum`` K > 1 each batch is run as K micro-batches whose gradients are
    summed before the one optimizer step: a step is still one batch of ``cfg.batch_size``
    (the LR schedule, positions, checkpoints and images/s do not change), and the logged
    loss is the batch's.

    With ``compile_backend`` (e.g. ``"inductor"``) the network's forward runs through
    ``torch.compile`` for the training steps (previews and evaluations stay eager); the
    weights, and so the checkpoints, are those of ``model`` itself. A compiler failure
    falls back to eager with a ``warning`` event.

    Before a long run on a CPU, a short probe on a copy of the model estimates its time
    (:mod:`diffkit.training.estimate`; training is bit-identical with and without it): an
    ``estimate`` event carries it, :attr:`TrainResult.estimate` keeps it, and one
    ``warning`` event says so when it is far beyond an hour. ``estimate`` False (or
    ``DIFFKIT_NO_ESTIMATE=1``) switches it off; a string is added to the warning (e.g. the
    preset that fits).
    """
    hooks = _Hooks(preview, evaluate, on_event, extra_tensors or {})
    where = _Where(device, autocast_dtype, run, run_config, dist, compile_backend, estimate)
    return Trainer(model, objective, batches, cfg, where, hooks, resume).run()


@dataclass(frozen=True)
class _Where:
    """Where a run trains and writes: device and precision, its folder (None: nowhere),
    the config stored in every checkpoint, the process group, the compiler backend."""

    device: torch.device
    autocast_dtype: torch.dtype | None
    run: RunDir | None
    run_config: dict[str, Any]
    dist: DistInfo
    compile_backend: str | None
    estimate: bool | str = True


@dataclass(frozen=True)
class _Hooks:
    """What a recipe plugs in: ``preview(ema_model, tag)``, ``evaluate(ema_model, epoch)``,
    the event sink, and tensors written unchanged into every checkpoint."""

    preview: Callable[[nn.Module, str], Path | None] | None
    evaluate: Callable[[nn.Module, int], dict[str, Any]] | None
    on_event: Callable[[TrainEvent], None]
    extra: dict[str, Tensor]


class Trainer:
    """The training loop, one method per named step: :meth:`data` (the batches left in
    the epoch), :meth:`step` (one optimizer step), :meth:`observe` (previews and
    evaluations where due), :meth:`checkpoint` and the stop checks of :meth:`_epoch`.
    :func:`train` builds one and runs it; see its docstring for what each option does."""

    def __init__(self, model: nn.Module, objective: Objective, batches: TensorBatches,
                 cfg: TrainConfig, where: _Where, hooks: _Hooks,
                 resume: Checkpoint | None = None) -> None:  # fmt: skip
        self.model, self.objective, self.batches, self.cfg = model, objective, batches, cfg
        self.where, self.hooks, dist = where, hooks, where.dist
        model.to(where.device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        self.optimizer = make_optimizer(model, cfg)
        self.ema = EMA(model, cfg.ema_decay, cfg.ema_warmup)
        fp16 = where.autocast_dtype == torch.float16
        self.scaler = torch.amp.GradScaler(where.device.type, enabled=fp16)
        self.pos = _Position()
        if resume is not None:
            self.pos = _restore(resume, model, self.ema, self.optimizer, self.scaler, cfg,
                                world=dist.world, batches=len(batches))  # fmt: skip
        self.ddp = DistributedDataParallel(model) if dist.enabled else None
        self.net = compiled(model if self.ddp is None else self.ddp, where.compile_backend,
                            lambda message: self.emit("warning", {"message": message}))  # fmt: skip
        self.generator = torch.Generator(where.device)
        # The run's length, and so the span of the LR schedule: max_steps when given (a run
        # may then end mid-epoch, or go on past cfg.epochs), else every batch of cfg.epochs.
        self.total = run_length(cfg, len(batches))
        run, main = where.run, dist.is_main
        self.metrics = MetricsWriter(run.metrics) if run is not None and main else None
        on_disk = run.last_checkpoint if run is not None and main else None
        self.saved = on_disk if on_disk is not None and on_disk.is_file() else None
        # Post-hoc EMA (training/snapshots.py): the mean raw weights every N steps and at
        # each checkpoint, so a resume from the last checkpoint misses no step.
        self.snapshots = None
        if cfg.snapshot_every_steps and run is not None and main:
            self.snapshots = SnapshotWriter(run.snapshots, model, self.pos.step)
        self.best = (_BestKeeper(run, where.run_config, hooks.extra)
                     if cfg.keep_best and run is not None else None)  # fmt: skip
        self.previews_on = bool(cfg.sample_every or cfg.sample_every_steps)
        self.evals_on = bool(cfg.eval_every or cfg.eval_every_steps)
        self.seen = {"preview": -1, "eval": -1}  # the step each was last made at: never twice
        self.last_loss: float | None = None
        self.estimate: Estimate | None = None

    def emit(self, kind: str, data: dict[str, Any] | None = None) -> None:
        self.hooks.on_event(TrainEvent(kind, self.pos.step, self.pos.epoch, data or {}))

    def run(self) -> TrainResult:
        """Train to the run's length, a stop signal or a non-finite loss."""
        pos, batches = self.pos, self.batches
        if pos.step >= self.total:  # a resumed run that already ran its length
            self.emit("stop", {"reason": "nothing_to_do"})
            return TrainResult("nothing_to_do", pos.step, pos.epoch, None, pos.elapsed, 0.0,
                               self.saved, None, None, pos.step / len(batches))  # fmt: skip
        self.estimate_time()
        self.emit("start", {"total_steps": self.total})
        self.reason: StopReason = "finished"
        self.window = _LossWindow(self.where.device)
        self.clock = time.perf_counter() - pos.elapsed
        self.net.train()
        dtype = self.where.autocast_dtype
        self.autocast = torch.autocast(self.where.device.type, dtype=dtype) if dtype else (
            nullcontext())  # fmt: skip
        self.lr = lr_at(pos.step, self.cfg, self.total)  # the latest step's LR, for the log
        flag = _StopFlag()
        with flag.installed() as stop:
            mid_epoch_end = False
            while pos.step < self.total and self.reason == "finished" and not mid_epoch_end:
                mid_epoch_end = self._epoch(stop)
            self._finish(mid_epoch_end)
        if self.metrics is not None:
            self.metrics.close()
        self.emit("stop", {"reason": self.reason})
        ips = pos.images / max(pos.elapsed, 1e-9)
        ran_compiled = self.net.active if isinstance(self.net, CompiledNet) else None
        return TrainResult(self.reason, pos.step, pos.epoch, self.last_loss, pos.elapsed, ips,
                           self.saved, flag.signal, ran_compiled,
                           pos.step / len(batches), self.estimate)  # fmt: skip

    def estimate_time(self, seconds_per_image: float | None = None) -> Estimate | None:
        """Probe the steps left (:mod:`diffkit.training.estimate`) where worth it: an
        ``estimate`` event, and a ``warning`` event when the run would be far beyond an
        hour on a CPU. ``seconds_per_image`` replaces the measurement (for tests)."""
        where, left = self.where, self.total - self.pos.step
        if where.estimate is False or not where.dist.is_main:
            return None
        if seconds_per_image is None:
            if not wanted(where.device, left, where.dist.enabled):
                return None
            first = next(iter(self.data()), None)
            if first is None:
                return None
            x, y = first
            seconds_per_image, spent = probe(
                self.model, self.objective, lambda m: make_optimizer(m, self.cfg), x, y,
                device=where.device, autocast_dtype=where.autocast_dtype,
                channels_last=self.cfg.channels_last,
            )  # fmt: skip
        else:
            spent = 0.0
        self.estimate = est = Estimate(where.device.type, left, self.cfg.batch_size,
                                       seconds_per_image, spent)  # fmt: skip
        self.emit("estimate", est.as_dict())
        note = where.estimate if isinstance(where.estimate, str) else None
        text = warning_text(est, note)
        if text is not None:
            self.emit("warning", {"message": text, "estimate": est.as_dict()})
        return est

    def data(self):
        """The batches ``(x, y)`` left in the current epoch, from the position's batch."""
        return self.batches.epoch(self.pos.epoch, start=self.pos.batch)

    def _epoch(self, stop: _StopFlag) -> bool:
        """The rest of one epoch, step by step; True if max_steps ended the run in it."""
        pos, cfg, n = self.pos, self.cfg, len(self.batches)
        for x, y in self.data():
            if pos.step >= self.total:  # max_steps ends the run within this epoch
                return True
            loss = self.step(x, y)
            pos.batch += 1
            pos.images += x.shape[0] * self.where.dist.world
            self.window.add(loss, x.shape[0] * self.where.dist.world)
            at_log = pos.step % cfg.log_every == 0 or pos.batch == n
            if at_log and not self._log():
                self.reason = "non_finite"
                return False
            if _due(cfg.checkpoint_every_steps, pos.step) and pos.batch < n:
                self.checkpoint("step")  # an epoch's last step gets the epoch's file
            if (cfg.sample_every_steps or cfg.eval_every_steps) and pos.batch < n:
                self.observe(_due(cfg.sample_every_steps, pos.step),
                             _due(cfg.eval_every_steps, pos.step))  # fmt: skip
            if stop_agreed(stop.set, pos.step, self.where.dist, self.where.device):
                self.reason = "interrupted"
                return False
        pos.epoch += 1
        pos.batch = 0
        pos.elapsed = time.perf_counter() - self.clock
        self._end_of_epoch()
        return False

    def step(self, x: Tensor, y: Tensor | None) -> Tensor:
        """One optimizer step on the batch ``x`` (labels ``y``), seeded by its position;
        the EMA and the post-hoc snapshots follow. Returns the batch's loss."""
        cfg, pos = self.cfg, self.pos
        seed = _step_seed(cfg.seed, self.where.dist.rank, pos.step)
        torch.manual_seed(seed)
        self.generator.manual_seed(seed)
        if cfg.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        self.lr = lr_at(pos.step, cfg, self.total)
        set_lr(self.optimizer, self.lr)
        begin = getattr(self.objective, "begin_step", None)
        if begin is not None:  # an objective with a schedule or target of its own (distill)
            begin(pos.step, self.ema.shadow)
        try:
            loss = self._forward_backward(x, y)
        except Exception as exc:
            if not (isinstance(self.net, CompiledNet) and self.net.active):
                raise
            # e.g. the backward graph, compiled lazily: the same step again, eager
            loss = self.net.retry_eagerly(exc, partial(self._forward_backward, x, y, seed))
        if cfg.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.ema.update(self.model, pos.step)
        pos.step += 1
        if self.snapshots is not None:
            self.snapshots.add()
            if pos.step % cfg.snapshot_every_steps == 0:
                self.snapshots.flush()
        return loss

    def _forward_backward(self, x: Tensor, y: Tensor | None, reseed: int | None = None):
        """The step's gradients, summed over ``cfg.grad_accum`` micro-batches (each loss
        divided by their number, so the sum is the whole batch's gradient); returns the
        batch's loss, their mean. The objective draws its random numbers per micro-batch,
        one after the other from the step's generator."""
        if reseed is not None:  # a retried step draws the numbers of the failed attempt
            torch.manual_seed(reseed)
            self.generator.manual_seed(reseed)
        self.optimizer.zero_grad(set_to_none=True)
        parts = _micro_batches(x, y, self.cfg.grad_accum)
        losses = []
        for i, (xi, yi) in enumerate(parts):
            # DDP all-reduces in the backward of the last micro-batch only. no_sync covers
            # the forward too: that is where DDP decides whether the next backward reduces.
            last = i == len(parts) - 1
            with self.ddp.no_sync() if self.ddp is not None and not last else nullcontext():
                with self.autocast:
                    loss = self.objective(self.net, xi, yi, self.generator)
                self.scaler.scale(loss / len(parts) if len(parts) > 1 else loss).backward()
            losses.append(loss.detach())
        return losses[0] if len(losses) == 1 else torch.stack(losses).mean()

    def _log(self) -> bool:
        """Write a metrics record for the loss window; False if its loss is not finite."""
        flushed = self.window.flush(self.where.dist)
        if flushed is None:
            return True
        mean, ips = flushed
        if not math.isfinite(mean):
            return False
        pos = self.pos
        pos.elapsed = time.perf_counter() - self.clock
        record = {
            "step": pos.step, "epoch": pos.epoch + pos.batch / len(self.batches), "loss": mean,
            "lr": self.lr, "img_per_sec": ips, "elapsed": pos.elapsed,
        }  # fmt: skip
        self.last_loss = mean
        if self.metrics is not None:
            self.metrics.write(record)
        self.emit("log", record)
        return True

    def _end_of_epoch(self) -> None:
        cfg, pos = self.cfg, self.pos
        self.checkpoint("epoch")
        self.emit("epoch", {"loss": self.last_loss})
        last = pos.step >= self.total  # the run's end: a preview and an evaluation if on
        # An epoch's last step may also be due by steps: made here, named by the epoch.
        at_step = _due(cfg.sample_every_steps, pos.step), _due(cfg.eval_every_steps, pos.step)
        previews = _due(cfg.sample_every, pos.epoch) or at_step[0] or (last and self.previews_on)
        evaluates = _due(cfg.eval_every, pos.epoch) or at_step[1] or (last and self.evals_on)
        self.observe(previews, evaluates)

    def _finish(self, mid_epoch_end: bool) -> None:
        """After the last step: a run that stopped mid-epoch logs, checkpoints and, at its
        end, makes its last preview and evaluation."""
        reason = self.reason
        stopped_mid_epoch = reason == "interrupted" or (reason == "finished" and mid_epoch_end)
        if stopped_mid_epoch and not self._log():
            self.reason = reason = "non_finite"
        self.pos.elapsed = time.perf_counter() - self.clock
        if reason in ("finished", "interrupted") and stopped_mid_epoch:
            self.checkpoint(None)
            if reason == "finished":  # the run's end: its last preview and evaluation
                self.observe(self.previews_on, self.evals_on)

    def observe(self, previews: bool, evaluates: bool) -> None:
        """The preview grid and the evaluation, where due (rank 0 only)."""
        if not self.where.dist.is_main:
            return
        pos, hooks = self.pos, self.hooks
        if hooks.preview and previews and self.seen["preview"] < pos.step:
            self.seen["preview"] = pos.step
            # Mid-epoch (by steps, or a run's end) a grid is named by its step, so it never
            # replaces the grid of the epoch before.
            tag = f"step-{pos.step:07d}" if pos.batch else f"epoch-{pos.epoch:04d}"
            grid = hooks.preview(self.ema.shadow, tag)
            self.emit("preview", {"image": str(grid)} if grid is not None else {})
        if hooks.evaluate and evaluates and self.seen["eval"] < pos.step:
            self.seen["eval"] = pos.step
            scores = hooks.evaluate(self.ema.shadow, pos.epoch)
            record = {"event": "eval", "step": pos.step, "epoch": pos.epoch, **scores}
            if self.metrics is not None:
                self.metrics.write(record)
            if self.best is not None and self.best.offer(scores["fid"], self.model,
                                                         self.ema.shadow, pos):  # fmt: skip
                record["best"] = True
            self.emit("eval", record)

    def checkpoint(self, numbered: Literal["epoch", "step"] | None) -> None:
        """``last.safetensors``, written atomically on rank 0 (a failed write keeps the old
        file), and for ``numbered`` a copy named by the epoch or the step, the numbered
        ones pruned to the newest ``keep_last_n``."""
        run = self.where.run
        if run is None or not self.where.dist.is_main:
            return
        if self.snapshots is not None:
            self.snapshots.flush()
        pos = self.pos
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors |= {f"ema.{k}": v for k, v in self.ema.shadow.state_dict().items()}
        tensors |= _optimizer_tensors(self.optimizer) | self.hooks.extra
        state = {"position": pos.__dict__, "world_size": self.where.dist.world,
                 "scaler": self.scaler.state_dict()}  # fmt: skip
        ckpt = Checkpoint(self.where.run_config, tensors, state)
        try:
            save_checkpoint(run.last_checkpoint, ckpt)
            self.saved = run.last_checkpoint
            if numbered is not None and self.cfg.keep_last_n > 0:
                name = run.epoch_checkpoint(pos.epoch) if numbered == "epoch" else (
                    run.step_checkpoint(pos.step))  # fmt: skip
                keep_numbered(run, run.last_checkpoint, name, self.cfg.keep_last_n)
        except OSError as exc:  # e.g. a full disk: the atomic write kept the old file
            kept = f"{self.saved} is intact" if self.saved is not None else (
                "no checkpoint was written")  # fmt: skip
            raise OutputError(exc.errno, f"cannot write a checkpoint at step {pos.step} in "
                              f"{run.checkpoints} ({exc.strerror or exc}); {kept}",
                              str(run.checkpoints)) from None  # fmt: skip
        self.emit("checkpoint", {"path": str(run.last_checkpoint)})
