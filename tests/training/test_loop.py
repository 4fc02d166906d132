"""The training loop: exact resume, non-finite losses, interruption."""

import math
import os
import signal
from pathlib import Path

import pytest
import torch

from diffkit.config import PRESETS, DDPMRunConfig, Settings, TrainConfig, UNetConfig
from diffkit.config.resolve import resolve_run_config
from diffkit.data import ImageData, TensorBatches
from diffkit.methods.generative import train_generative
from diffkit.nn import build_model
from diffkit.runs import Checkpoint, CheckpointError, RunDir, load_checkpoint, read_metrics
from diffkit.training import train


def tiny_cfg(**train):
    flags = {
        "preset": "tiny",
        "data.limit": 192,
        "train.batch_size": 32,
        "train.epochs": 2,
        "train.sample_every": 0,
        "train.log_every": 1,
    }
    flags |= {f"train.{k}": v for k, v in train.items()}
    return resolve_run_config(DDPMRunConfig, flags, environ={})


def test_resume_equals_uninterrupted_run(data_dir: Path, tmp_path: Path):
    settings = Settings(data_dir=data_dir, runs_dir=tmp_path, download=False)
    full_run, full = train_generative(tiny_cfg(), settings)
    assert full.reason == "finished" and full.step == 12

    def ctrl_c_at_step_5(event):
        if event.kind == "log" and event.step == 5:
            os.kill(os.getpid(), signal.SIGINT)  # the loop stops at this step's end

    part_run, part = train_generative(tiny_cfg(), settings, on_event=ctrl_c_at_step_5)
    assert part.reason == "interrupted" and part.step == 5
    resumed_run, resumed = train_generative(tiny_cfg(), settings, resume=part_run)
    assert resumed_run == part_run and resumed.step == 12

    a = load_checkpoint(full_run.last_checkpoint)
    b = load_checkpoint(part_run.last_checkpoint)
    assert a.tensors.keys() == b.tensors.keys()
    for key in a.tensors:
        assert torch.equal(a.tensors[key], b.tensors[key]), key
    steps = [r["step"] for r in read_metrics(part_run.metrics)]
    assert steps == list(range(1, 13))


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path):
    cfg = TrainConfig(
        epochs=3, batch_size=8, log_every=1, sample_every=0, warmup_steps=0, keep_last_n=5
    )
    model = build_model(UNetConfig(**PRESETS["tiny"]["model"]))
    data = ImageData(torch.randint(0, 256, (32, 1, 28, 28), dtype=torch.uint8), None)
    batches = TensorBatches(data, 8, seed=0, device=torch.device("cpu"))
    calls = {"n": 0}

    def objective(net, x, y, g):
        calls["n"] += 1
        loss = net(x, torch.zeros(x.shape[0], dtype=torch.long)).pow(2).mean() + x.mean() ** 2
        return loss * float("nan") if calls["n"] > 6 else loss

    run = RunDir.create(tmp_path, "ddpm", "nan")
    result = train(
        model,
        objective,
        batches,
        cfg,
        device=torch.device("cpu"),
        autocast_dtype=None,
        run=run,
        run_config={"method": "ddpm"},
    )
    assert result.reason == "non_finite" and result.step == 7
    assert result.checkpoint == run.last_checkpoint
    ckpt = load_checkpoint(run.last_checkpoint)
    assert ckpt.train_state["position"]["step"] == 4  # end of epoch 1, before the NaN
    assert all(torch.isfinite(t).all() for t in ckpt.tensors.values())
    assert not run.epoch_checkpoint(2).exists()


def _synthetic(n: int = 32):
    data = ImageData(torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8), None)
    return TensorBatches(data, 8, seed=0, device=torch.device("cpu"))


def test_step_checkpoints_keep_the_newest_and_bound_a_crash(tmp_path: Path):
    """Every 3 steps ``last`` and a step file; epoch ends their own file; the newest 3
    numbered kept. A crash at step 8 leaves ``last`` at step 6, not at epoch 1's step 4."""
    cfg = TrainConfig(epochs=3, batch_size=8, log_every=1, sample_every=0, warmup_steps=0,
                      keep_last_n=3, checkpoint_every_steps=3)  # fmt: skip
    model = build_model(UNetConfig(**PRESETS["tiny"]["model"]))

    def loss(net, x, y, g):
        return net(x, torch.zeros(x.shape[0], dtype=torch.long)).pow(2).mean()

    run = RunDir.create(tmp_path, "ddpm", "steps")
    result = train(model, loss, _synthetic(), cfg, device=torch.device("cpu"),
                   autocast_dtype=None, run=run, run_config={"method": "ddpm"})  # fmt: skip
    assert result.reason == "finished" and result.step == 12
    names = sorted(p.name for p in run.checkpoints.glob("*.safetensors"))
    # numbered: step 3, epoch 1 (4), step 6, epoch 2 (8), step 9, epoch 3 (12): newest 3
    assert names == ["epoch-0002.safetensors", "epoch-0003.safetensors",
                     "last.safetensors", "step-0000009.safetensors"]  # fmt: skip
    step = load_checkpoint(run.step_checkpoint(9)).train_state["position"]["step"]
    assert step == 9

    calls = {"n": 0}

    def crashes_at_step_8(net, x, y, g):
        calls["n"] += 1
        if calls["n"] == 8:
            raise RuntimeError("the machine went away")
        return loss(net, x, y, g)

    crashed = RunDir.create(tmp_path, "ddpm", "crash")
    model = build_model(UNetConfig(**PRESETS["tiny"]["model"]))
    with pytest.raises(RuntimeError):
        train(model, crashes_at_step_8, _synthetic(), cfg, device=torch.device("cpu"),
              autocast_dtype=None, run=crashed, run_config={"method": "ddpm"})  # fmt: skip
    ckpt = load_checkpoint(crashed.last_checkpoint)
    assert ckpt.train_state["position"]["step"] == 6


def test_result_says_whether_a_checkpoint_exists(tmp_path: Path):
    """A loss that is non-finite from the first step leaves no checkpoint to speak of."""
    cfg = TrainConfig(epochs=2, batch_size=8, log_every=1, sample_every=0, warmup_steps=0)
    model = build_model(UNetConfig(**PRESETS["tiny"]["model"]))
    data = ImageData(torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8), None)
    batches = TensorBatches(data, 8, seed=0, device=torch.device("cpu"))

    def objective(net, x, y, g):
        return net(x, torch.zeros(x.shape[0], dtype=torch.long)).mean() * float("nan")

    run = RunDir.create(tmp_path, "ddpm", "nan")
    result = train(model, objective, batches, cfg, device=torch.device("cpu"),
                   autocast_dtype=None, run=run, run_config={})  # fmt: skip
    assert result.reason == "non_finite" and result.checkpoint is None
    assert not run.last_checkpoint.exists()


def test_train_checks_a_resume_checkpoint_before_writing(tmp_path: Path):
    """Direct callers of train() get the same one-line CheckpointError, before metrics."""
    cfg = TrainConfig(epochs=1, batch_size=8, sample_every=0)
    model = build_model(UNetConfig(**PRESETS["tiny"]["model"]))
    data = ImageData(torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8), None)
    batches = TensorBatches(data, 8, seed=0, device=torch.device("cpu"))
    position = {"step": 1, "epoch": 0, "batch": 1, "elapsed": 0.5, "images": 8}
    tensors = {
        f"{p}.{k}": v.clone() for k, v in model.state_dict().items() for p in ("model", "ema")
    }
    tensors.pop(next(iter(tensors)))
    run = RunDir.create(tmp_path, "ddpm", "bad")
    with pytest.raises(CheckpointError, match="is missing"):
        train(model, lambda *a: torch.zeros(()), batches, cfg, device=torch.device("cpu"),
              autocast_dtype=None, run=run, run_config={},
              resume=Checkpoint({}, tensors, {"position": position}))  # fmt: skip
    assert not run.metrics.exists()


def test_stop_flag_records_which_signal_asked(monkeypatch):
    """SIGTERM stops the loop like Ctrl-C, and the CLI exits 143 for it (130 for SIGINT)."""
    import os
    import signal

    from diffkit.cli.shared import stop_code as _stop_code
    from diffkit.training.loop import TrainResult, _StopFlag

    flag = _StopFlag()
    with flag.installed():
        os.kill(os.getpid(), signal.SIGTERM)
    assert flag.set and flag.signal == "SIGTERM"
    result = TrainResult("interrupted", 1, 0, None, 0.0, 0.0, stop_signal=flag.signal)
    assert _stop_code(result) == 143
    assert _stop_code(TrainResult("interrupted", 1, 0, None, 0.0, 0.0, stop_signal="SIGINT")) == 130


def test_max_steps_sets_the_run_length_and_the_lr_schedule(data_dir: Path, tmp_path: Path):
    """192 images in batches of 32: 6 a epoch. max_steps=9 runs past the one epoch asked
    for, ends mid-epoch with a checkpoint and a last preview, and its cosine LR reaches
    its final value at step 9, not at epochs x batches."""
    settings = Settings(data_dir=data_dir, runs_dir=tmp_path, download=False)
    previews = []
    cfg = tiny_cfg(epochs=1, max_steps=9, warmup_steps=0, sample_every=1, preview_n=4,
                   preview_steps=2)  # fmt: skip
    run, result = train_generative(cfg, settings, on_event=lambda e: previews.append(e.step)
                                   if e.kind == "preview" else None)  # fmt: skip
    assert result.reason == "finished" and result.step == 9
    assert result.epochs_done == pytest.approx(1.5)
    assert previews == [6, 9]  # after epoch 1, and at the run's end
    records = [r for r in read_metrics(run.metrics) if "lr" in r]
    lr = {r["step"]: r["lr"] for r in records}
    f = cfg.train.lr_final_factor  # step 9 runs at position 8 of a 9-step cosine
    assert lr[9] == pytest.approx(
        cfg.train.lr * (f + (1 - f) * (1 + math.cos(math.pi * 8 / 9)) / 2)
    )
    state = load_checkpoint(run.last_checkpoint).train_state["position"]
    assert (state["step"], state["epoch"], state["batch"]) == (9, 1, 3)


def test_resuming_a_finished_run_has_nothing_to_do(data_dir: Path, tmp_path: Path):
    from diffkit.errors import NothingToDo

    settings = Settings(data_dir=data_dir, runs_dir=tmp_path, download=False)
    run, _ = train_generative(tiny_cfg(max_steps=4), settings)
    before = {p.name: p.read_bytes() for p in run.path.rglob("*") if p.is_file()}
    with pytest.raises(NothingToDo, match="already ran its 4 steps"):
        train_generative(tiny_cfg(max_steps=4), settings, resume=run)
    after = {p.name: p.read_bytes() for p in run.path.rglob("*") if p.is_file()}
    assert after == before  # not a byte changed: the summary still says finished


def test_step_based_previews_are_named_by_step(data_dir: Path, tmp_path: Path):
    """6 batches an epoch, 8 steps, a preview every 3 steps: at 3, 6 (the epoch's end,
    once), and the run's end at 8 is off the 3-step grid but still gets one."""
    settings = Settings(data_dir=data_dir, runs_dir=tmp_path, download=False)
    seen = []
    cfg = tiny_cfg(max_steps=8, sample_every=0, sample_every_steps=3, preview_n=4,
                   preview_steps=2)  # fmt: skip
    run, _ = train_generative(cfg, settings, on_event=lambda e: seen.append(
        (e.step, Path(e.data["image"]).name)) if e.kind == "preview" else None)  # fmt: skip
    assert seen == [(3, "step-0000003.png"), (6, "epoch-0001.png"), (8, "step-0000008.png")]
    assert sorted(p.name for p in run.samples.glob("*.png")) == sorted(n for _, n in seen)
