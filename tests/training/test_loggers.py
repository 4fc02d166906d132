"""The --logger backends: what each writes for a tiny run, resume, and failing loggers."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from diffkit.config import TrainConfig
from diffkit.data import ImageData, TensorBatches
from diffkit.errors import DependencyError
from diffkit.runs import RunDir, load_checkpoint, read_metrics
from diffkit.runs.layout import write_json
from diffkit.runs.plots import save_grid
from diffkit.training import train
from diffkit.training.loggers import (
    BACKENDS,
    CSV_COLUMNS,
    CsvLogger,
    Logger,
    RunLoggers,
    check_installed,
    parse_loggers,
)

CONFIG = {"method": "test", "train": {"lr": 0.01}}


def tiny_run(tmp_path: Path, loggers: RunLoggers, *, max_steps: int | None = None,
             resume: RunDir | None = None) -> tuple[RunDir, object]:  # fmt: skip
    """Train a 1x1 conv for two epochs of four steps, with a preview and an evaluation at
    the end of every epoch, reporting to ``loggers``."""
    torch.manual_seed(0)
    model = nn.Conv2d(1, 1, 1)
    cfg = TrainConfig(epochs=2, batch_size=8, log_every=2, sample_every=1, eval_every=1,
                      warmup_steps=0, max_steps=max_steps)  # fmt: skip
    images = torch.randint(0, 256, (32, 1, 8, 8), generator=torch.Generator().manual_seed(1))
    batches = TensorBatches(ImageData(images.to(torch.uint8), None), 8, seed=0,
                            device=torch.device("cpu"))  # fmt: skip
    run = resume or RunDir.create(tmp_path, "test", "run")
    write_json(run.config, CONFIG)

    def preview(ema: nn.Module, tag: str) -> Path:
        path = run.samples / f"{tag}.png"
        save_grid(torch.zeros(4, 1, 8, 8), path, nrow=2)
        return path

    def evaluate(ema: nn.Module, epoch: int) -> dict:
        return {"fid": 10.0 / epoch, "kid": 0.5, "eval_n": 16, "feature_sha256": "abc"}

    loggers.open(run)
    ckpt = load_checkpoint(run.last_checkpoint) if resume is not None else None
    result = train(model, lambda net, x, y, g: net(x).pow(2).mean(), batches, cfg,
                   device=torch.device("cpu"), autocast_dtype=None, run=run,
                   run_config=CONFIG, resume=ckpt, preview=preview, evaluate=evaluate,
                   on_event=loggers)  # fmt: skip
    return run, result


def csv_rows(run: RunDir) -> list[dict[str, str]]:
    with (run.path / "metrics.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
        return list(reader)


def test_parse_loggers_takes_repeats_and_comma_lists():
    assert parse_loggers(["csv,tensorboard", "csv", " WandB ", "none"]) == (
        "csv", "tensorboard", "wandb",
    )  # fmt: skip
    assert parse_loggers([]) == ()
    with pytest.raises(ValueError, match="unknown logger 'mlflow'"):
        parse_loggers(["csv,mlflow"])


def test_a_missing_package_names_the_pip_command(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    check_installed(["csv"])  # needs nothing
    with pytest.raises(DependencyError, match=r"pip install -e '\.\[tensorboard\]'"):
        check_installed(["csv", "tensorboard"])


def test_csv_logger_writes_one_row_per_log_and_eval_event(tmp_path: Path):
    run, result = tiny_run(tmp_path, RunLoggers(["csv"]))
    assert result.reason == "finished" and result.step == 8
    rows = csv_rows(run)
    train_rows = [r for r in rows if r["event"] == "train"]
    logged = [r for r in read_metrics(run.metrics) if "loss" in r]
    assert [int(r["step"]) for r in train_rows] == [r["step"] for r in logged] == [2, 4, 6, 8]
    for row, record in zip(train_rows, logged, strict=True):
        for key in ("loss", "lr", "img_per_sec", "epoch"):
            assert float(row[key]) == record[key]  # full precision
        assert row["fid"] == ""
    evals = [r for r in rows if r["event"] == "eval"]
    assert [(int(r["step"]), float(r["fid"]), r["eval_n"]) for r in evals] == [
        (4, 10.0, "16"), (8, 5.0, "16"),
    ]  # fmt: skip
    assert evals[0]["loss"] == "" and evals[0]["epoch"] == "1"


def test_csv_logger_appends_on_resume_from_the_checkpoint_step(tmp_path: Path):
    run, part = tiny_run(tmp_path, RunLoggers(["csv"]), max_steps=5)
    assert part.step == 5
    # Rows past the checkpoint (e.g. logged just before a crash) are dropped on resume.
    with (run.path / "metrics.csv").open("a", newline="") as f:
        csv.DictWriter(f, CSV_COLUMNS).writerow({"event": "train", "step": 7, "loss": 9})
    tiny_run(tmp_path, RunLoggers(["csv"]), resume=run)
    steps = [(r["event"], int(r["step"])) for r in csv_rows(run)]
    # max_steps=5 is that run's length, so it ends with an evaluation at step 5
    assert steps == [("train", 2), ("train", 4), ("eval", 4), ("train", 5), ("eval", 5),
                     ("train", 6), ("train", 8), ("eval", 8)]  # fmt: skip


def test_tensorboard_logger_writes_scalars_and_previews(tmp_path: Path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, _ = tiny_run(tmp_path, RunLoggers(["tensorboard"]))
    assert list((run.path / "tb").glob("events.out.tfevents.*"))
    events = EventAccumulator(str(run.path / "tb"), size_guidance={"images": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [2, 4, 6, 8]
    assert [e.value for e in events.Scalars("eval/fid")] == [10.0, 5.0]
    assert [e.step for e in events.Images("preview")] == [4, 8]
    assert "eval/feature_sha256" not in events.Tags()["scalars"]  # strings are not scalars


@pytest.fixture
def wandb_env(monkeypatch, tmp_path: Path) -> None:
    """No W&B setting of the developer's applies, and nothing is written outside tmp."""
    for key in ("WANDB_MODE", "WANDB_PROJECT", "WANDB_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    for key in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(key, str(tmp_path / "wandb-home"))


def test_wandb_logger_records_an_offline_run_in_the_run_folder(tmp_path: Path, wandb_env):
    pytest.importorskip("wandb")
    run, result = tiny_run(tmp_path, RunLoggers(["wandb"]))
    assert result.reason == "finished"
    offline = list((run.path / "wandb").glob("offline-run-*"))
    run_id = (run.path / "wandb" / "diffkit-run-id").read_text()
    assert len(offline) == 1 and offline[0].name.endswith(run_id)
    assert list(offline[0].glob("*.wandb"))


class FakeWandb:
    """Just enough of the wandb module to see what the logger asks of it."""

    def __init__(self) -> None:
        self.init_args: list[dict] = []
        self.logged: list[dict] = []
        self.finished = 0
        self.Settings = lambda **kw: kw
        self.Image = lambda path: SimpleNamespace(path=path)

    def init(self, **kwargs):
        self.init_args.append(kwargs)
        return SimpleNamespace(define_metric=lambda *a, **k: None, log=self.logged.append,
                               finish=self._finish)  # fmt: skip

    def _finish(self) -> None:
        self.finished += 1


def test_wandb_logger_is_offline_unless_told_and_records_the_config(
    tmp_path: Path, monkeypatch, wandb_env
):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    run, _ = tiny_run(tmp_path, RunLoggers(["wandb"]))
    args = fake.init_args[0]
    assert args["mode"] == "offline" and args["config"] == CONFIG
    assert args["dir"] == str(run.path) and args["project"] == "diffkit"
    assert [r["step"] for r in fake.logged if "train/loss" in r] == [2, 4, 6, 8]
    assert [r["eval/fid"] for r in fake.logged if "eval/fid" in r] == [10.0, 5.0]
    assert [r["preview"].path for r in fake.logged if "preview" in r] == [
        str(run.samples / "epoch-0001.png"), str(run.samples / "epoch-0002.png"),
    ]  # fmt: skip
    assert fake.finished == 1

    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_PROJECT", "mine")
    RunLoggers(["wandb"]).backends["wandb"](run, CONFIG, 3)  # a resume of the same run
    assert fake.init_args[1]["mode"] == "online" and fake.init_args[1]["project"] is None
    assert fake.init_args[1]["id"] == args["id"] and fake.init_args[1]["resume"] == "allow"


class Broken(Logger):
    """Fails at its second scalar write."""

    name = "broken"
    calls = 0

    def scalars(self, group, step, values):
        Broken.calls += 1
        if Broken.calls == 2:
            raise OSError(28, "No space left on device")


class WontStart(Logger):
    def __init__(self, run, config, step):
        raise RuntimeError("cannot connect")


def test_a_failing_logger_is_dropped_with_one_warning_and_training_finishes(tmp_path: Path):
    warned: list[str] = []
    backends = dict(BACKENDS) | {"broken": Broken, "nostart": WontStart}
    loggers = RunLoggers(["broken", "nostart", "csv"], warn=warned.append, backends=backends)
    run, result = tiny_run(tmp_path, loggers)
    assert result.reason == "finished" and result.step == 8
    assert Broken.calls == 2  # never called again after it failed
    assert len(warned) == 2
    assert "logger nostart could not start (RuntimeError: cannot connect)" in warned[0]
    assert "logger broken failed (OSError" in warned[1] and "training goes on" in warned[1]
    assert len(csv_rows(run)) == 6  # the others carry on


def test_loggers_do_nothing_until_a_run_folder_is_opened(tmp_path: Path):
    """Processes other than rank 0 never open their loggers, so they write nothing."""
    from diffkit.training import TrainEvent

    loggers = RunLoggers(["csv"])
    for kind in ("start", "log", "stop"):
        loggers(TrainEvent(kind, 1, 0, {"loss": 1.0}))
    assert not loggers.active and not list(tmp_path.iterdir())
    assert isinstance(BACKENDS["csv"], type) and issubclass(CsvLogger, Logger)
