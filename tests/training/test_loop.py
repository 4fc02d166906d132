"""The training loop: exact resume, non-finite losses, interruption."""

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

    part_run, part = train_generative(tiny_cfg(max_steps=5), settings)
    assert part.reason == "max_steps" and part.step == 5
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
